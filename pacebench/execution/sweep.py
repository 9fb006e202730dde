"""Executing a plan: the one path `run`, `ablate`, `tune` and `sweep` all take.

A `Plan` holds phase-1 grid points (trained on train, scored on val) and phase-2 runs (train+val -> test). Phase 1
runs first; `plan.protocol.select_best` picks each (dataset, method)'s setting from its validation accuracy alone,
and phase 2 trains those choices for every seed together with the plan's fixed phase-2 runs. Each phase writes its
runs into the database as queued rows (each holding its full spec), then starts workers that claim and train them;
the database, not the process that planned, is the record of what ran. What the user sees goes through a `Reporter`
(the CLI's prints it), so this module decides and the CLI only shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pacebench.choices import Mode, Status
from pacebench.data.check import require_data
from pacebench.data.fingerprint import dataset_fingerprint
from pacebench.errors import DataError, PacebenchError, UsageError
from pacebench.execution.launch import run_workers
from pacebench.execution.options import WorkerOptions
from pacebench.plan import protocol
from pacebench.plan.planner import pretrainable, weights_sha256
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec
from pacebench.plan.suites import load_suite
from pacebench.settings import results_dir
from pacebench.store import RunRecord, Storage
from pacebench.training.pretrain import pretrain_demo_backbone


@dataclass(frozen=True)
class SweepResult:
    runs: list[RunRecord]  # every run of the phase, as it stands at the end
    done_before: set[str]  # keys that were done before it started
    held: list[RunRecord]  # runs that live workers elsewhere held when it started
    live: set[str] = field(default_factory=set)  # keys of runs still held at the end by workers that are alive

    def status(self, status: str) -> list[RunRecord]:
        return [r for r in self.runs if r.status == status]


class Incomplete(PacebenchError):
    """A phase ended with runs that are not done: failed, stopped, or held by live workers elsewhere (exit 1)."""


class Reporter(Protocol):
    """What the user is shown while a plan executes (the CLI prints; tests may record)."""

    def planned(self, specs: list[RunSpec], keys: list[str], done: set[str], store: Storage, origin: str) -> None:
        """Before a phase starts (also on a dry run): its runs, which are done, where they will train."""

    def watching(self, store: Storage, keys: list[str]) -> AbstractContextManager[Any]:
        """Entered while the workers train the phase's runs."""

    def finished(self, result: SweepResult) -> None:
        """After a phase: what became of each run."""

    def pretraining(self, done: int, epochs: int) -> None:
        """The demo backbone is being pre-trained (its first run only): `done` of `epochs` epochs."""

    def queued(self, result: SweepResult, then: str | None) -> None:
        """A phase queued for workers elsewhere (`Mode.enqueue`); `then` says what is left to do, if anything."""

    def searching(self) -> None:
        """Phase 1 begins."""

    def chosen(self, excluded: list[str], best: Mapping[protocol.Key, protocol.Choice], fixed: int) -> None:
        """Phase 1 is over: the settings left out, the settings chosen, and how many fixed runs join phase 2."""


def preflight(specs: list[RunSpec], data_root: Path) -> None:
    """The cheap half of `pacebench data check`: a missing data set fails now, not after hours."""
    seen = set()
    for spec in specs:
        key = (spec.suite, spec.dataset, spec.phase, tuple(sorted(spec.data_options.items())))
        if key not in seen:
            seen.add(key)
            suite = load_suite(spec.suite)
            require_data(suite, suite.dataset(spec.dataset), data_root, spec.phase, spec.data_options)


def materialise(
    specs: list[RunSpec], device_type: str, threads: int = 1, progress: Callable[[int, int], None] | None = None
) -> list[RunSpec]:
    """What must be settled before run keys are final: precision 'auto' becomes bf16 on CUDA and fp32 elsewhere,
    and a demo backbone planned before it existed is pre-trained now (with `threads`, reporting to `progress`) and
    its hash filled in."""
    out = []
    for spec in specs:
        spec = spec.with_(train=spec.train.for_device(device_type))
        if not spec.weights_sha256 and pretrainable(spec.backbone, None):
            pretrain_demo_backbone(threads=threads, progress=progress)
            weights_sha256.cache_clear()
            spec = spec.with_(weights_sha256=weights_sha256(spec.backbone, None))
        out.append(spec)
    return out


def with_fingerprints(specs: list[RunSpec], data_root: Path, strict: bool = True) -> list[RunSpec]:
    """Each spec with the fingerprint of the data copy under `data_root` it trains on (`data.fingerprint`, memoised
    in the cache folder): part of its key, so runs on another copy are never taken for done, averaged or paired with
    these. `strict` False (a dry run): where the data is not here, the spec keeps none."""
    found: dict[tuple[str, str], str] = {}
    out = []
    for spec in specs:
        where = (spec.suite, spec.dataset)
        if where not in found:
            suite = load_suite(spec.suite)
            try:
                found[where] = dataset_fingerprint(
                    suite, suite.dataset(spec.dataset), data_root, results_dir() / "cache"
                )
            except DataError:
                if strict:
                    raise
                found[where] = ""
        out.append(spec.with_(data_fingerprint=found[where]))
    return out


def execute(
    specs: list[RunSpec],
    store: Storage,
    opts: WorkerOptions,
    origin: str = "direct",
    wait: bool = False,
    display: Any = None,
    device_type: str | None = None,
) -> SweepResult:
    """Queues `specs`, planned for `device_type` (only workers on that kind of device train them), and runs
    workers until every run is done, failed, or held by a live worker elsewhere (with `wait`, until those finish
    too). `display(keys)` is entered while the workers run."""
    keys = list(dict.fromkeys(run_key(s) for s in specs))
    done_before = {r.key for r in store.runs(key=keys, status=Status.done)}
    preflight([s for s, k in zip(specs, map(run_key, specs), strict=True) if k not in done_before], opts.data_root)
    store.enqueue(specs, origin, device_type)
    held = store.held_by_live_workers(keys)
    if display is None:
        run_workers(store, keys, opts, wait)
    else:
        with display(keys):
            run_workers(store, keys, opts, wait)
    live = {r.key for r in store.held_by_live_workers(keys)}  # a dead worker's run is unfinished, not held
    return SweepResult(store.runs(key=keys), done_before, held, live)


def incomplete(result: SweepResult, tolerate_failures: bool) -> str | None:
    """Why a phase did not end well, as one line (None when every run is done, or only failures were tolerated)."""
    unfinished = [r for r in result.runs if r.status in (Status.queued, Status.running)]
    held = [r for r in unfinished if r.key in result.live]
    problems = []
    if held:
        workers = ", ".join(sorted({r.worker or "?" for r in held}))
        problems.append(
            f"{len(held)} run(s) are held by live workers ({workers}); rerun with --wait to wait for "
            "them, or see `pacebench status`"
        )
    if len(unfinished) > len(held):
        problems.append(
            f"{len(unfinished) - len(held)} run(s) not finished (the workers stopped; worker processes "
            f"log to {results_dir() / 'logs'}); rerun to continue them from their checkpoints"
        )
    if not unfinished and result.status(Status.failed) and not tolerate_failures:
        problems.append(f"{len(result.status(Status.failed))} run(s) failed; see `pacebench runs --status failed`")
    return "; ".join(problems) or None


def run_phase(
    specs: list[RunSpec],
    store: Storage,
    opts: WorkerOptions,
    reporter: Reporter,
    origin: str,
    device_type: str,
    wait: bool = False,
    mode: Mode = Mode.train,
    tolerate_failures: bool = False,
) -> SweepResult | None:
    """One phase: settle the specs, show the plan, then train it and show the outcome (`Mode.train`), or queue it
    for workers elsewhere (`Mode.enqueue`: the runs as they stand). None on a dry run."""
    if mode != Mode.dry_run:  # pre-trains the demo backbone if a run needs it and it is not there yet
        specs = materialise(specs, device_type, opts.threads, reporter.pretraining)
        preflight(specs, opts.data_root)  # a missing data set says so before its fingerprint is read
    specs = with_fingerprints(specs, opts.data_root, strict=mode != Mode.dry_run)
    keys = [run_key(s) for s in specs]
    done = {r.key for r in store.runs(key=keys, status=Status.done)}
    reporter.planned(specs, keys, done, store, origin)
    if mode == Mode.dry_run:
        return None
    if mode == Mode.enqueue:
        preflight([s for s, k in zip(specs, keys, strict=True) if k not in done], opts.data_root)
        store.enqueue(specs, origin, device_type)  # only workers on that kind of device train them
        return SweepResult(store.runs(key=list(dict.fromkeys(keys))), done, [])
    result = execute(
        specs,
        store,
        opts,
        origin=origin,
        wait=wait,
        display=lambda keys: reporter.watching(store, keys),
        device_type=device_type,
    )
    reporter.finished(result)
    problem = incomplete(result, tolerate_failures)
    if problem:
        raise Incomplete(problem)
    return result


def execute_plan(
    plan: protocol.Plan,
    store: Storage,
    opts: WorkerOptions,
    reporter: Reporter,
    device_type: str,
    wait: bool = False,
    mode: Mode = Mode.train,
) -> SweepResult | None:
    """Phase 1 (if the plan searches anything), then phase 2; the last phase's result once trained (None on a dry
    run or when the plan was only queued).

    A grid point whose run failed all its attempts is left out of the choice and named; phase 1 with no grid point
    left is an error. With `Mode.enqueue`, phase 2 is queued once phase 1's runs are all finished: the same command,
    run again after the workers drained phase 1, queues it.
    """
    best: dict[protocol.Key, protocol.Choice] = {}
    if plan.search:
        reporter.searching()
        result = run_phase(plan.search, store, opts, reporter, "tune", device_type, wait, mode, tolerate_failures=True)
        if result is None:
            return None
        if mode == Mode.enqueue and any(r.status not in (Status.done, Status.failed) for r in result.runs):
            reporter.queued(
                result,
                "phase 2 is chosen from phase 1's results: run this command again once the "
                "workers have finished phase 1, and it queues phase 2",
            )
            return None
        best = protocol.select_best(result.runs)
        if not best:
            raise UsageError("every grid point failed all its attempts; see `pacebench runs --status failed`")
        reporter.chosen(protocol.excluded_points(result.runs), best, len(plan.runs))
    result = run_phase(
        protocol.final_specs(best, plan.seeds) + plan.runs, store, opts, reporter, plan.origin, device_type, wait, mode
    )
    if mode == Mode.enqueue and result is not None:
        reporter.queued(result, None)
        return None
    return result
