"""`pacebench report` and `pacebench plot`: the paper's tables and figures, made from the database."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pacebench.choices import Format, GradKind, Phase, Split, Status
from pacebench.cli.common import DbOption, RegistryHelp, console, db_url, err_console, split_list, writing
from pacebench.errors import UsageError
from pacebench.plan.suites import all_suites
from pacebench.report import select
from pacebench.settings import results_dir

if TYPE_CHECKING:
    from pacebench.store import Storage


def report(
    table: Annotated[str, typer.Option("--table", "-t", help="Table (number/name): {tables}.")] = "demo",
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.rich,
    every: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every table that has runs and every figure whose runs exist, "
            "as one self-contained page (with --format html --out FILE).",
        ),
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of printing.")] = None,
    suite: Annotated[str | None, typer.Option("--suite", help="Restrict to one suite.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Restrict to one dataset.")] = None,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            "-w",
            help="Every column in the terminal (transposed where they do not fit), not only the headline ones.",
        ),
    ] = False,
    ci: Annotated[
        bool,
        typer.Option(
            "--ci",
            help="Each measured mean as mean ± the half-width of its 95% interval "
            "over seeds; paper rows say how many of their numbers lie inside it.",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Print or write one of the paper's tables from phase-2 (train+val -> test) runs, paper values beside.

    In a terminal the table is laid out for its width: where not every column fits, the table's headline columns,
    with a line naming those hidden; `--wide` shows them all. md, latex, csv and html always hold every column.
    """
    from pacebench.report.render import render_table  # lazy: pandas
    from pacebench.store import Store  # lazy: sqlalchemy

    if every and (fmt != Format.html or out is None):
        raise UsageError("--all writes one HTML page: add --format html --out report.html")
    store = Store(db_url(db), readonly=True)
    if every and out is not None:
        _write_page(store, out)
        return
    rendered = render_table(table, store, fmt, suite=suite, dataset=dataset, wide=wide, ci=ci)
    _coverage_note(store, table, suite, dataset)
    if out is None:
        if isinstance(rendered, str):
            typer.echo(rendered, nl=not rendered.endswith("\n"))  # no rich wrapping or markup in md/latex/csv
        else:
            console.print(rendered)
        return
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rendered if isinstance(rendered, str) else _plain(rendered))
    console.print(f"wrote {out}")


def plot(
    figure: Annotated[str, typer.Argument(help="Figure: {figures}.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Figure file: .png, .pdf or .svg (.png is added to a "
            "name without one), or a folder (default results/FIGURE.png).",
        ),
    ] = None,
    suite: Annotated[str | None, typer.Option("--suite", help="Restrict to one suite.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Restrict to one dataset.")] = None,
    backbone: Annotated[
        str | None, typer.Option("--backbone", help="Restrict to one backbone (Fig. 3: swin_b_in22k).")
    ] = None,
    shots: Annotated[int | None, typer.Option("--shots", help="Few-shot: which shots.")] = None,
    split_seed: Annotated[int | None, typer.Option("--split-seed", help="Few-shot: which split seed.")] = None,
    phase: Annotated[
        Phase | None,
        typer.Option(
            "--phase", help="final or tune runs (default: the figure's own: tune for lambda-sweep and sensitivity)."
        ),
    ] = None,
    kind: Annotated[
        GradKind,
        typer.Option(
            "--kind",
            help="Gradient norm of the task loss (CE of the clean model: "
            "the paper's) or of the whole objective at each optimizer step.",
        ),
    ] = GradKind.task,
    on: Annotated[
        Split | None,
        typer.Option("--on", help="Held-out split (val in tune, test in final: the paper's) or train split."),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="compare: A,B (default pace,baseline; "
            "`pace:lam=0.5` names a setting); ranks: the methods to rank "
            "(default: all on every data set).",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Draw one of the paper's figures (per-epoch curves: mean over seeds, band for the spread), or the evidence
    ones: `compare` (Δ per data set with its 95% interval) and `ranks` (the critical-difference diagram)."""
    from pacebench.report.figures import plot as draw_figure  # lazy: pandas, matplotlib
    from pacebench.store import Store  # lazy: sqlalchemy

    options = {k: v for k, v in {"shots": shots, "split_seed": split_seed}.items() if v is not None}
    store, out = Store(db_url(db), readonly=True), out or results_dir() / f"{figure}.png"
    with writing(out):
        path = draw_figure(
            figure,
            store,
            out,
            suite=suite,
            dataset=dataset,
            phase=phase,
            options=options or None,
            backbone=backbone,
            kind=kind,
            on=on,
            methods=split_list(methods),
        )
    console.print(f"wrote {path}")


def _write_page(store: Storage, out: Path) -> None:
    """`report --all`: every table with runs and every figure whose runs exist, as one self-contained HTML page."""
    from pacebench.report.page import build_page  # lazy: pandas, matplotlib

    page = build_page(store)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    console.print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    for command in (report, plot):
        app.command(cls=RegistryHelp)(command)


def _coverage_note(store: Storage, table: str, suite: str | None, dataset: str | None) -> None:
    """On stderr (so md/csv output stays clean): how many phase-2 runs of the table's suite are not done."""
    from pacebench.cli.progress import counts_line  # lazy: sqlalchemy

    entry = select.tables().get(table)
    name = suite or entry.suite or entry.name
    if name not in all_suites():
        return
    counts = store.status_counts(suite=name, dataset=dataset, phase=Phase.final)
    missing = sum(n for status, n in counts.items() if status != Status.done)
    if missing:
        err_console.print(
            f"[yellow]{missing} run(s) of this table are missing or failed[/] ({counts_line(counts)}); "
            "see `pacebench status`"
        )


def _plain(renderable: object) -> str:
    capture = Console(width=200, record=True, file=io.StringIO())
    capture.print(renderable)
    return capture.export_text()
