"""The `pacebench` command line: a thin Typer layer; command bodies parse options and forward.

Heavy imports (torch, timm, pandas, matplotlib) happen inside commands so `pacebench --help` answers at once.
"""

from __future__ import annotations

import typer

from pacebench.cli import bench_cmd, data_cmd, db_cmd, query_cmd, report_cmd, run_cmd
from pacebench.cli.common import Group

app = typer.Typer(
    cls=Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="PACE and its baselines and ablations over the paper's benchmark suites, every run kept in a database.",
)
for module in (run_cmd, query_cmd, report_cmd, bench_cmd):
    module.register(app)
app.add_typer(data_cmd.app, name="data")
app.add_typer(db_cmd.app, name="db")


def main() -> None:
    app()
