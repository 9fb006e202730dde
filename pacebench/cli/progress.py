"""Rich progress for `pacebench run`: one bar for the plan, one for the epochs of the run in flight."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pacebench.scheduler import Hooks, Outcome


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "–" if value is None else f"{value:{spec}}"


class RichHooks(Hooks):
    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.console = console
        self.plan_task: Any = None
        self.run_task: Any = None

    def __enter__(self) -> RichHooks:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def _plan(self, total: int) -> None:
        if self.plan_task is None:
            self.plan_task = self.progress.add_task("runs", total=total, info="")

    def run_started(self, spec: Any, index: int, total: int) -> None:
        self._plan(total)
        if self.run_task is not None:
            self.progress.remove_task(self.run_task)
        self.run_task = self.progress.add_task(f"{spec.dataset} {spec.method} s{spec.seed}", total=spec.train.epochs,
                                               info="")

    def epoch_done(self, spec: Any, epoch: int, record: Any) -> None:
        info = f"loss {_fmt(record.loss, '.3f')} train {_fmt(record.train_acc)}"
        if record.evals:
            info += " " + " ".join(f"{k} {v:.2f}" for k, v in record.evals.items())
        self.progress.update(self.run_task, completed=epoch + 1, info=info)

    def run_finished(self, outcome: Outcome) -> None:
        r = outcome.record
        if self.plan_task is not None:
            self.progress.advance(self.plan_task)
        metrics = r.metrics or {}
        score = metrics.get("test_acc") if r.phase == "final" else metrics.get("val_acc")
        style = {"done": "green", "failed": "red"}.get(outcome.status, "dim")
        first_error_line = (r.error or "").splitlines()[0] if r.error else ""
        detail = f"{'test' if r.phase == 'final' else 'val'} {_fmt(score)}" if outcome.status == "done" else (
            first_error_line or outcome.status.replace("-", " "))
        self.console.print(f"[{style}]{outcome.status:>15}[/] {r.key} {r.dataset} {r.method} seed {r.seed}: {detail}")
