"""What `pacebench run` shows while workers train (the plan and one line per worker) and `pacebench status`.

Everything is read from the database, so the same view works for a worker in this process, one process per GPU,
or a Slurm job array on other machines. While the database is away the live view says so in one line and keeps
refreshing (it never waits for the database, and never raises: it runs in rich's refresh thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pacebench.choices import Phase, Status
from pacebench.data.base import phase_line
from pacebench.errors import one_line
from pacebench.plan.spec import PHASES
from pacebench.plan.suites import load_suite
from pacebench.settings import WorkerSettings
from pacebench.store import Storage, WorkerRecord
from pacebench.store.base import utcnow, worker_alive
from pacebench.terminal import Column, Fit

ORDER = (Status.done, Status.running, Status.queued, Status.failed)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return str(timedelta(seconds=round(seconds)))


def counts_line(counts: Any) -> str:
    total = sum(counts.values())
    parts = [f"{counts.get(s, 0)} {s}" for s in ORDER if counts.get(s, 0) or s in (Status.done, Status.queued)]
    return f"{total} runs: " + ", ".join(parts)


WORKER_COLUMNS = [
    Column("worker"),
    Column("device", headline=False),
    Column("state"),
    Column("run"),
    Column("epoch", numeric=True),
    Column("loss", numeric=True, headline=False),
    Column("heartbeat", headline=False),
    Column("run ETA", numeric=True),
]


def workers_table(workers: list[WorkerRecord], lease_s: float) -> Fit:
    """One line per worker: its run, epoch, loss, heartbeat age and the run's ETA."""
    now = utcnow()
    rows = []
    for w in workers:
        age = (now - w.heartbeat_at).total_seconds()
        alive = w.state == "stopped" or worker_alive(w, now, lease_s)
        state = (
            Text(w.state)
            if alive
            else Text(f"silent {age:.0f}s" if age >= lease_s else "gone (its process ended)", style="red")
        )
        info = w.info or {}
        training = w.state == "training" and w.run_id is not None
        epochs: int = info.get("epochs") or 0
        epoch = w.epoch
        eta = (epochs - epoch - 1) * info["epoch_s"] if training and epoch is not None and "epoch_s" in info else None
        rows.append(
            [
                w.name,
                w.device,
                state,
                info.get("label", "") if training else "",
                f"{epoch + 1}/{epochs}" if training and epoch is not None else "",
                _fmt(info.get("loss"), 3) if training else "",
                f"{age:.0f}s ago",
                _duration(eta),
            ]
        )
    return Fit(WORKER_COLUMNS, rows, hidden="a wider terminal shows them")


class SweepDisplay:
    """A live view of one plan: a bar over its runs and one line per worker; refreshed from the database."""

    def __init__(self, console: Console, store: Storage, keys: list[str]) -> None:
        self.console, self.store, self.keys = console, store.without_retries(), keys
        self.since = utcnow() - timedelta(seconds=1)
        settings = WorkerSettings.from_env()
        self.lease_s, self.grace_s = settings.lease_s, settings.db_grace_s
        self.last: Any = None  # the last view the database gave
        self.away_since: Any = None  # when the database stopped answering the view
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=1, transient=True)

    def render(self) -> Any:
        """The view, or while the database is away the last one with a line saying so: never raises."""
        try:
            counts = self.store.status_counts(self.keys)
            finished = counts.get(Status.done, 0) + counts.get(Status.failed, 0)
            bar = ProgressBar(total=max(len(self.keys), 1), completed=finished, width=40)
            workers = self.store.workers(active_since=self.since)
            self.last = Group(_grid(bar, counts_line(counts)), workers_table(workers, self.lease_s))
            self.away_since = None
            return self.last
        except Exception as exc:  # whatever the database says, the view goes on
            self.away_since = self.away_since or utcnow()
            away = (utcnow() - self.away_since).total_seconds()
            line = (
                f"[yellow]database unreachable for {away:.0f}s ({one_line(exc)[:120]}); the workers wait for it "
                f"up to {self.grace_s:g}s[/]"
            )
            return line if self.last is None else Group(self.last, line)

    def __enter__(self) -> SweepDisplay:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)
        self.console.print(self.render())  # the final state, also where the console is not a terminal


def _grid(bar: ProgressBar, text: str) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_row(bar, text)
    return grid


class ConsoleReporter:
    """Shows a plan as it executes (`execution.sweep.Reporter`): the plan's header (and, on a dry run, every run),
    a live view while workers train, each run's outcome, and phase 1's choices."""

    def __init__(self, console: Console, where: str, dry_run: bool = False) -> None:
        self.console, self.where, self.dry_run = console, where, dry_run
        self.bar: Progress | None = None

    def planned(self, specs: list[Any], keys: list[str], done: set[str], store: Storage, origin: str) -> None:
        self.console.print(
            f"[bold]{len(specs)} runs[/] ({len(done)} already done) on {self.where} -> {store.display_url}"
        )
        several = len({s.suite for s in specs}) > 1
        for suite, phase in sorted({(s.suite, s.phase) for s in specs}):
            note = " (settings given directly, not tuned)" if origin == "direct" and phase == Phase.final else ""
            where = f"{suite} " if several else ""
            self.console.print(f"  {where}{phase_line(load_suite(suite), phase)}{note}")
        if self.dry_run:
            for spec, key in zip(specs, keys, strict=True):
                self.console.print(f"  {'done ' if key in done else 'todo '} {key}  {spec.label()}")

    def watching(self, store: Storage, keys: list[str]) -> SweepDisplay:
        return SweepDisplay(self.console, store, keys)

    def finished(self, result: Any) -> None:
        print_outcomes(self.console, result)

    def pretraining(self, done: int, epochs: int) -> None:
        """A bar on a terminal, a line every 10 epochs elsewhere (a log file, CI)."""
        if self.console.is_terminal:
            if self.bar is None:
                self.bar = Progress(
                    TextColumn("pre-training the demo backbone (once)"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("epochs"),
                    console=self.console,
                )
                self.bar.start()
                self.bar.add_task("pretrain", total=epochs)
            self.bar.update(self.bar.task_ids[0], completed=done)
            if done == epochs:
                self.bar.stop()
                self.bar = None
        elif done == 1 or done % 10 == 0 or done == epochs:
            self.console.print(f"pre-training the demo backbone (once): epoch {done}/{epochs}")

    def queued(self, result: Any, then: str | None) -> None:
        waiting = sum(r.status in (Status.queued, Status.running) for r in result.runs)
        self.console.print(
            f"queued: {waiting} run(s) wait for workers ({len(result.runs) - waiting} done or failed)"
            "; start `pacebench worker --db URL` on any machine that reaches the database"
        )
        if then:
            self.console.print(then)

    def searching(self) -> None:
        self.console.print(
            f"[bold]{PHASES[Phase.tune]}[/]: grid search, scored on held-out data (test data is never read)"
        )

    def chosen(self, excluded: list[str], best: Mapping[Any, Any], fixed: int) -> None:
        for point in excluded:
            self.console.print(f"[yellow]excluded[/] {point}")
        self.console.print(f"[bold]{PHASES[Phase.final]}[/]: {len(best)} chosen setting(s) and {fixed} fixed run(s)")
        for c in best.values():
            self.console.print(
                f"  {c.dataset} {c.method}: {c.method_config} (val {c.val_acc:.2f} over "
                f"{len(c.seeds)} seed(s), best of {c.candidates})"
            )


def print_outcomes(console: Console, result: Any) -> None:
    """One line per run of the plan: what became of it (with its adapter kind when the plan trains several)."""
    several = len({r.adapter for r in result.runs}) > 1
    for r in result.runs:
        status = "skipped-done" if r.key in result.done_before else r.status
        metrics = r.metrics or {}
        score = metrics.get("test_acc") if r.phase == "final" else metrics.get("val_acc")
        style = {Status.done: "green", Status.failed: "red", "skipped-done": "dim"}.get(status, "yellow")
        detail = (
            f"{'test' if r.phase == Phase.final else 'val'} {_fmt(score)}"
            if r.status == Status.done
            else (r.error or "").splitlines()[0]
            if r.error
            else r.worker or ""
        )
        adapter = f" {r.adapter}" if several else ""
        console.print(f"[{style}]{status:>15}[/] {r.key} {r.dataset}{adapter} {r.method} seed {r.seed}: {detail}")


def status_view(store: Storage, suite: str | None, phase: str | None) -> Group:
    """Counts, workers with their heartbeats, failures, and an ETA from measured epoch times."""
    counts = store.status_counts(suite=suite, phase=phase)
    lease = WorkerSettings.from_env().lease_s
    now = utcnow()
    workers = store.workers(active_since=now - timedelta(hours=1))
    alive = [w for w in workers if worker_alive(w, now, lease)]
    epoch_s = store.mean_epoch_seconds(suite=suite, phase=phase)
    remaining = sum((r.hparams.get("epochs", 0) for r in store.runs(suite=suite, phase=phase, status=Status.queued)), 0)
    running = store.runs(suite=suite, phase=phase, status=Status.running)
    by_run = {w.run_id: w for w in alive}
    for r in running:
        w = by_run.get(r.id)
        remaining += r.hparams.get("epochs", 0) - ((w.epoch or 0) + 1 if w and w.epoch is not None else 0)
    eta = remaining * epoch_s / max(len(alive), 1) if epoch_s is not None and remaining else None
    scope = " ".join(x for x in (suite, phase) if x) or "all suites"
    lines: list[Any] = [
        f"[bold]{scope}[/]: {counts_line(counts)}",
        f"{len(alive)} live worker(s); ETA {_duration(eta) if eta else '–'}"
        + (f" ({remaining} epochs left at {epoch_s:.2f}s each)" if eta else ""),
    ]
    if workers:
        lines.append(workers_table(workers, lease))
    failed = store.runs(suite=suite, phase=phase, status=Status.failed)
    for r in failed[-10:]:
        lines.append(
            f"[red]failed[/] {r.key} {r.dataset} {r.method} seed {r.seed} after {r.attempts} attempt(s): "
            f"{(r.error or '').splitlines()[0][:100] if r.error else ''}"
        )
    return Group(*lines)
