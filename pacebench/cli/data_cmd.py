"""`pacebench data ...`: check that the benchmark data sets lie on disk as the readers expect.

torch and the readers are imported inside the command, so that `pacebench --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from pacebench.plan.suites import all_suites, load_suite
from pacebench.settings import data_root, results_dir
from pacebench.terminal import Column, Fit

app = typer.Typer(help="Check data sets on disk.", no_args_is_help=True)

STATUS_STYLE = {"found": "green", "missing": "yellow", "broken": "red"}


@app.callback()
def _group() -> None:
    """Check data sets on disk."""  # keeps `check` a named sub-command even while it is the only one


@app.command()
def check(
    suite: Annotated[str | None, typer.Argument(help="Suite to check (default: every suite).")] = None,
    root: Annotated[
        Path | None, typer.Option("--data-root", "--root", help="Data root (default: $PACEBENCH_DATA or ./data).")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Also decode every image (slow).")] = False,
) -> None:
    """Check that every list, split file and image the readers need is present, with labels in range, and print
    each data set's fingerprint (one string that tells two copies apart; the first one reads every file once)."""
    from pacebench.data.check import check_suite  # lazy: torch (the readers)
    from pacebench.data.fingerprint import dataset_fingerprint

    root = root or data_root()
    suites = [load_suite(suite)] if suite else list(all_suites().values())
    results = [(s, result) for s in suites for result in check_suite(s, root, full)]
    rows: list[list[str | Text]] = []
    for s, r in results:
        first = r.problems[0] + (f" (+{len(r.problems) - 1} more)" if len(r.problems) > 1 else "") if r.problems else ""
        sizes = " ".join(f"{name}={n}" for name, n in r.sizes.items()) or "-"
        found = r.status == "found"
        fingerprint = dataset_fingerprint(s, s.dataset(r.dataset), root, results_dir() / "cache") if found else "-"
        rows.append([r.suite, r.dataset, Text(r.status, style=STATUS_STYLE[r.status]), fingerprint, sizes, first])
    columns = [
        Column("suite"),
        Column("dataset"),
        Column("status"),
        Column("fingerprint"),
        Column("sizes"),
        Column("first problem", headline=False),
    ]  # never cut: the path in it is what to fix
    console = Console()
    console.print(Fit(columns, rows, title=f"Data under {root}", hidden="each problem is listed in full below"))
    for _, r in results:
        for note in r.notes:
            console.print(f"{r.suite}/{r.dataset}: {note}", markup=False, soft_wrap=True)
    problems = [(r, p) for _, r in results for p in r.problems]
    for r, problem in problems:
        console.print(f"{r.suite}/{r.dataset}: {problem}", markup=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
