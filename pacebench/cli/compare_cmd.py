"""`pacebench compare A B`: is the difference real? Per data set and over the suite, with intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pacebench.choices import Format, Phase
from pacebench.cli.common import DbOption, console, db_url, split_list, writing
from pacebench.errors import UsageError


def compare(
    a: Annotated[
        str, typer.Argument(help="Method A, on one adapter kind (pace@lora) or at named values (pace:lam=0.5).")
    ],
    b: Annotated[str, typer.Argument(help="Method B, the one A is measured against (e.g. baseline).")],
    suite: Annotated[str | None, typer.Option("--suite", help="Restrict to one suite.")] = None,
    datasets: Annotated[str | None, typer.Option("--datasets", "-d", help="Comma-separated datasets.")] = None,
    phase: Annotated[Phase, typer.Option("--phase", help="final (test) or tune (val).")] = Phase.final,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.rich,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of printing.")] = None,
    delta: Annotated[float, typer.Option("--delta", help="The difference (points) 'seeds for Δ' is sized for.")] = 0.5,
    boot: Annotated[int, typer.Option("--boot", help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the resampling.")] = 0,
    db: DbOption = None,
) -> None:
    """Whether A's difference to B is real, per data set and over the suite.

    Per data set: the two means, Δ with its 95% interval, p (raw and Holm-adjusted), the verdict, and the seeds a
    difference of --delta would need. Over the suite: mean and IQM of Δ with stratified intervals, P(A > B), and
    wins / ties / losses.

    Runs are paired example by example where their per-example predictions are stored, else compared at the seed
    level (labelled so); docs/statistics.md explains each number and when it is the wrong tool."""
    from pacebench.report.compare import compare as run_compare  # lazy: pandas, scipy, sqlalchemy, the registries
    from pacebench.report.compare import parse_side
    from pacebench.report.render import render
    from pacebench.report.select import Reads
    from pacebench.report.tables.compare import as_tables
    from pacebench.store import Store

    if not (0 < delta < float("inf")) or boot < 100:  # `not (...)`: NaN fails every comparison
        raise UsageError(f"--delta must be a finite number > 0 and --boot at least 100, got {delta} and {boot}")
    if out is not None and fmt == Format.rich:
        raise UsageError("--out writes a file: add --format md, csv, latex or html")
    store = Store(db_url(db), readonly=True)
    names = split_list(datasets)
    read = Reads(suites=None if suite is None else (suite,))
    runs = [r for r in read.runs(store, suite, phase=phase) if names is None or r.dataset in names]
    tables = as_tables(run_compare(runs, store.predictions, parse_side(a), parse_side(b), phase, delta, boot, seed))
    if fmt == Format.rich:
        for table in tables:
            console.print(render(table, fmt))
        return
    text = "\n\n".join(str(render(table, fmt)) for table in tables)
    if out is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    with writing(out):
        out.write_text(text + "\n")
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command()(compare)
