"""A worker: claims queued runs from the database one at a time and trains them, until nothing is left.

This is what `pacebench worker` runs, what `pacebench run` starts once per GPU (or `--jobs` times on a CPU), and
what each task of a Slurm job array runs. While a run trains, a heartbeat thread refreshes its claim every few
seconds (also during evaluation and checkpointing, which can take longer than an epoch). The first SIGTERM or
SIGINT asks the run to stop at the next step: its newest checkpoint is saved and the run goes back to the queue,
so a rerun (or a resubmitted Slurm task) continues where it stopped. A second one exits at once.

A failure of the store is never the run's: while the database is away every store call waits for it (up to
PACEBENCH_DB_GRACE_S, see store/database.py), and a `StoreError` (still away after that, a full disk, a deleted
file) stops the worker with that one line, the run neither failed nor counted, left to the next worker or rerun.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch

from pacebench.choices import Status
from pacebench.data.fingerprint import dataset_fingerprint
from pacebench.errors import DataError, PacebenchError, one_line
from pacebench.execution.devices import resolve_device
from pacebench.execution.options import WorkerOptions
from pacebench.execution.provenance import git_commit, versions
from pacebench.execution.signals import stop_on_signals
from pacebench.plan.runkey import spec_of
from pacebench.plan.spec import RunSpec
from pacebench.plan.suites import load_suite
from pacebench.settings import WorkerSettings, results_dir
from pacebench.store import Claimant, ClaimLost, EpochRecord, RunRecord, Storage, StoreError
from pacebench.store.records import PARAMETER_COUNTS
from pacebench.training import Environment, train_run
from pacebench.training.checkpoint import Control, Stopped, unreadable

log = logging.getLogger(__name__)


def check_data(spec: RunSpec, env: Environment) -> None:
    """Refuses to train a run on another copy of its data than it was planned on (a worker of a cluster whose data
    root holds other files): its results would be stored under a fingerprint they do not belong to."""
    if not spec.data_fingerprint:
        return
    suite = load_suite(spec.suite)
    here = dataset_fingerprint(suite, suite.dataset(spec.dataset), env.data_root, env.cache_dir)
    if here != spec.data_fingerprint:
        raise DataError(
            f"{spec.suite}/{spec.dataset} under {env.data_root} has fingerprint {here}, but this run was "
            f"planned on {spec.data_fingerprint}: point --data-root at the copy it was planned on "
            "(`pacebench data check` prints each copy's fingerprint)"
        )


class Heartbeat(threading.Thread):
    """Refreshes the claim every `interval` seconds; sets `lost` when the run was taken over meanwhile, and keeps
    in `broken` the `StoreError` that ended it when the database stayed away past its grace."""

    def __init__(self, store: Storage, run_id: int, claim: str, worker: str, interval: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.store, self.run_id, self.claim, self.worker, self.interval = store, run_id, claim, worker, interval
        self.lost, self.done = threading.Event(), threading.Event()
        self.broken: StoreError | None = None

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                if not self.store.beat(self.run_id, self.claim):
                    self.lost.set()
                    return
                self.store.worker_update(self.worker)
            except StoreError as exc:  # the store waited out what it could: the run stops, the worker with it
                self.broken = exc
                self.lost.set()
                return
            except Exception:  # anything else: the next beat tries again; the lease allows several misses
                continue


class RunControl(Control):
    """Resumes from the stored checkpoint, keeps the newest epoch-boundary state in memory, writes it every
    `every` epochs, and stops the run when the worker is asked to stop or loses its claim."""

    def __init__(
        self,
        store: Storage,
        run: RunRecord,
        claim: str,
        every: int,
        stop: threading.Event,
        lost: threading.Event,
        resume: tuple[int, bytes] | None,
    ) -> None:
        self.store, self.run, self.claim, self.every, self.stop, self.lost = store, run, claim, every, stop, lost
        self.resume = resume[1] if resume else None
        self.saved = resume[0] if resume else -1
        self.latest: tuple[int, bytes] | None = None

    def should_stop(self) -> bool:
        return self.stop.is_set() or self.lost.is_set()

    def epoch_done(self, epoch: int, capture: Callable[[], bytes]) -> None:
        if epoch + 1 == self.run.hparams["epochs"]:
            return  # the run finishes now; its weights are kept with the run instead
        self.latest = (epoch, capture())
        if (epoch + 1) % self.every == 0:
            self.save()

    def save(self) -> None:
        if self.latest is not None and self.latest[0] > self.saved:
            self.store.save_checkpoint(self.run.id, self.claim, *self.latest)
            self.saved = self.latest[0]


class Worker:
    """Drains the queue (the runs of `keys`, or all queued runs) on one device."""

    def __init__(
        self, store: Storage, env: Environment, settings: WorkerSettings | None = None, keys: list[str] | None = None
    ) -> None:
        self.store, self.env, self.keys = store, env, keys
        self.settings = settings or WorkerSettings.from_env()
        self.who = Claimant(self.settings.lease_s, device_type=env.device.type)
        self.stop = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.broken = False  # the store failed: what is left to write is tried once, without waiting for it

    def work(self, wait: bool = False) -> Counter[str]:
        """Trains runs until none is claimable. With `wait`, also waits for runs of `keys` that other live
        workers hold (and takes them over if their holders vanish). Returns how each attempt ended; a
        `StoreError` ends the worker (after giving back what it can)."""
        self.store.worker_started(self.who, str(self.env.device))
        try:
            give_back_unreleased(self.store)
            with stop_on_signals(self.stop):
                while not self.stop.is_set():
                    run = self.store.claim_next(self.who, self.keys, self.settings.max_attempts)
                    if run is not None:
                        self.outcomes[self.train(run)] += 1
                    elif wait and self._unfinished():
                        self.store.worker_update(self.who.name, state="waiting", run_id=None)
                        self.stop.wait(self.settings.poll_s)
                    else:
                        break
        except StoreError:
            self.broken = True
            raise
        finally:
            self._quietly(lambda store: store.worker_update(self.who.name, state="stopped", run_id=None))
        return self.outcomes

    def _quietly(self, write: Callable[[Storage], Any]) -> None:
        """A closing write (a release, the worker row's state) that must not hide the error in flight, nor wait out
        the grace a second time once the store has failed."""
        with suppress(StoreError):
            write(self.store.without_retries() if self.broken else self.store)

    def _unfinished(self) -> bool:
        """Runs of `keys` another worker holds, or queued ones this worker could claim (others are planned for
        another kind of device, and no waiting here trains them)."""
        mine = (None, self.env.device.type)
        return any(
            r.status == Status.running or r.planned_device in mine
            for r in self.store.runs(key=self.keys, status=[Status.queued, Status.running])
        )

    def train(self, run: RunRecord) -> str:
        """One claimed run, start (or resume) to finish; returns done, retry, failed, stopped or lost."""
        claim = run.claim
        assert claim is not None
        beat = Heartbeat(self.store, run.id, claim, self.who.name, self.settings.heartbeat_s)
        beat.start()
        try:
            return self._attempt(run, claim, beat)
        except StoreError:  # not the run's fault: given back (not counted) now, or by the next worker (a note)
            self.broken = True
            note = unreleased_note(self.store.url, run.id, claim)
            note.parent.mkdir(parents=True, exist_ok=True)
            note.touch()

            def give_back(store: Storage) -> None:
                store.release(run.id, claim)
                note.unlink()  # the store answered: released, or no longer this worker's to release

            self._quietly(give_back)
            raise
        finally:
            beat.done.set()
            self._quietly(lambda store: store.worker_update(self.who.name, state="idle", run_id=None))

    def _attempt(self, run: RunRecord, claim: str, beat: Heartbeat) -> str:
        control: RunControl | None = None
        try:
            spec = spec_of(run)
            check_data(spec, self.env)
            resume = self.store.resume_point(run.id, claim)
            if resume is not None and (why := unreadable(resume[1])) is not None:
                self.store.drop_checkpoint(run.id, claim)
                log.warning(
                    f"run {run.id} ({spec.label()}): its checkpoint after epoch {resume[0] + 1} "
                    f"cannot be read ({why}); dropped it, the run starts again from epoch 0"
                )
                resume = None
            control = RunControl(self.store, run, claim, self.settings.checkpoint_every, self.stop, beat.lost, resume)
            self.store.set_run_facts(
                run.id, claim, device=str(self.env.device), versions=versions(), git_commit=git_commit()
            )
            self.store.worker_update(
                self.who.name,
                state="training",
                run_id=run.id,
                epoch=resume[0] if resume else None,
                info={"label": spec.label(), "epochs": spec.train.epochs},
            )
            result = train_run(
                spec, self.env, self._on_epoch(run, claim), lambda facts: self._facts(run.id, claim, facts), control
            )
            self.store.finish_claimed(run.id, claim, result.metrics, result.weights, result.predictions)
            return "done"
        except Stopped:
            if beat.broken is not None:
                raise beat.broken from None
            if beat.lost.is_set():
                return "lost"
            assert control is not None
            control.save()
            self.store.release(run.id, claim)
            return "stopped"
        except ClaimLost:
            return "lost"
        except StoreError:
            raise
        except PacebenchError as exc:  # bad data, missing weights: the same next time, and likely for the next run
            self.store.fail_claimed(run.id, claim, one_line(exc), self.settings.max_attempts, retry=False)
            raise  # so this worker stops with the error as one line
        except Exception as exc:  # a bug or a divergence: kept with the run; retried up to max_attempts
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
            status = self.store.fail_claimed(run.id, claim, error, self.settings.max_attempts)
            return "retry" if status == "queued" else status

    def _on_epoch(self, run: RunRecord, claim: str) -> Callable[[int, EpochRecord], None]:
        start = time.perf_counter()
        first: list[int] = []

        def on_epoch(epoch: int, record: EpochRecord) -> None:
            self.store.write_epoch(run.id, claim, record)
            first[:] = first or [epoch]
            per_epoch = (time.perf_counter() - start) / (epoch - first[0] + 1)
            self.store.worker_update(
                self.who.name,
                epoch=epoch,
                info={
                    "label": f"{run.dataset} {run.method} s{run.seed}",
                    "epochs": run.hparams["epochs"],
                    "loss": record.loss,
                    "epoch_s": per_epoch,
                },
            )

        return on_epoch

    def _facts(self, run_id: int, claim: str, facts: dict[str, Any]) -> None:
        """Keeps what the trainer reports once the model is built: the parameter counts in their columns, the rest
        (σ per depth position, attention kernel, ...) in the run's `setup`."""
        self.store.set_run_facts(
            run_id,
            claim,
            **{k: v for k, v in facts.items() if k in PARAMETER_COUNTS},
            setup={k: v for k, v in facts.items() if k not in PARAMETER_COUNTS},
        )


def unreleased_note(url: str, run_id: int, claim: str) -> Path:
    """The note a worker leaves when the database went away for good while it held a run: the run was not the
    problem, so the next worker on that database releases the claim first and takes the run over without counting
    an attempt. Notes are kept per database (a hash of its URL, password and all, which no file shows)."""
    return _notes(url) / f"{run_id}-{claim}"


def _notes(url: str) -> Path:
    return results_dir() / "unreleased" / hashlib.sha256(url.encode()).hexdigest()[:16]


def give_back_unreleased(store: Storage) -> None:
    """Releases the claims of the notes left in this results folder (a fenced write: a claim that was taken over or
    finished meanwhile is left as it is) and removes the notes."""
    for note in sorted(_notes(store.url).glob("*-*")):
        run_id, claim = note.name.split("-", 1)
        if run_id.isdigit():
            store.release(int(run_id), claim)
        note.unlink(missing_ok=True)


def described(outcomes: Counter[str]) -> str:
    """How a worker's attempts ended, for its last line ("2 done, 1 failed")."""
    return ", ".join(f"{n} {k}" for k, n in outcomes.items()) or "nothing to do"


def ended_badly(outcomes: Counter[str]) -> bool:
    """A run failed or the worker was stopped: what a shell loop or Slurm's accounting must see as a failure."""
    return bool(outcomes.get("failed") or outcomes.get("stopped"))


def environment(opts: WorkerOptions, device: str) -> Environment:
    """The training environment of one worker in this process (sets torch's CPU threads)."""
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        torch.set_num_threads(opts.threads)
    return Environment(
        device=resolved,
        data_root=opts.data_root,
        weights=opts.weights,
        num_workers=opts.loader_workers,
        weights_dir=opts.weights_dir,
        compile=opts.compile,
        cache_dir=results_dir() / "cache",
        diagnostics=opts.diagnostics,
    )
