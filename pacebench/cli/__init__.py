"""The `pacebench` command line: a thin Typer layer; command bodies parse options and forward.

Heavy imports (torch, timm, pandas, matplotlib) happen inside commands so `pacebench --help` answers at once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from pacebench.cli import (
    bench_cmd,
    compare_cmd,
    data_cmd,
    db_cmd,
    export_cmd,
    query_cmd,
    report_cmd,
    run_cmd,
    sweep_cmd,
)
from pacebench.cli.common import Group
from pacebench.settings import SUITES_ENV

app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="PACE and its baselines and ablations over the paper's benchmark suites, every run kept in a database.",
)
for module in (run_cmd, sweep_cmd, query_cmd, report_cmd, compare_cmd, export_cmd, bench_cmd):
    module.register(app)
app.add_typer(data_cmd.app, name="data")
app.add_typer(db_cmd.app, name="db")


@app.callback()
def _root(
    suites: Annotated[
        Path | None,
        typer.Option(
            "--suites",
            envvar=SUITES_ENV,
            show_default=False,
            file_okay=False,
            help="A folder of your own suite files: they add to the built-in suites, and one with a built-in's name "
            "replaces it.",
        ),
    ] = None,
) -> None:
    """PACE and its baselines and ablations over the paper's benchmark suites, every run kept in a database."""
    if suites is not None:
        os.environ[SUITES_ENV] = str(suites)  # worker processes and Slurm tasks inherit it


class _Lines(logging.Formatter):
    """A warning as one `warning:` line; a note (a database back after an outage) as its own line."""

    def format(self, record: logging.LogRecord) -> str:
        return ("warning: " if record.levelno >= logging.WARNING else "") + record.getMessage()


def main() -> None:
    """The console entry point: pacebench's own warnings (a rebuilt cache, ...) print as one `warning:` line."""
    handler = logging.StreamHandler()
    handler.setFormatter(_Lines())
    logger = logging.getLogger("pacebench")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    app()
