"""`pacebench export` and `pacebench export-model`: runs, epochs and trained models out of the database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pacebench.choices import Phase, Status
from pacebench.cli.common import DbOption, console, db_url, writing
from pacebench.errors import UsageError
from pacebench.settings import WEIGHTS_ENV


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        fmt: Annotated[str, typer.Option("--format", "-f", help="csv | parquet | json")] = "csv",
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Folder to write runs.FMT, epochs.FMT and predictions.FMT into.")
        ] = Path("results/export"),
        suite: Annotated[str | None, typer.Option("--suite")] = None,
        dataset: Annotated[str | None, typer.Option("--dataset")] = None,
        method: Annotated[str | None, typer.Option("--method")] = None,
        phase: Annotated[Phase | None, typer.Option("--phase", help="tune | final")] = None,
        status: Annotated[Status | None, typer.Option("--status", help="queued | running | done | failed")] = None,
        db: DbOption = None,
    ) -> None:
        """Write every matching run (hyperparameters, metrics, provenance), its epochs and its per-example predictions
        as flat tables."""
        from pacebench.results import export as write  # lazy: pandas and SQLAlchemy

        if out.exists() and not out.is_dir():
            raise UsageError(
                f"--out {out} is a file; export writes runs.{fmt}, epochs.{fmt} and "
                f"predictions.{fmt} into a folder: name a folder"
            )
        with writing(out):
            paths = write(db_url(db), out, fmt, suite=suite, dataset=dataset, method=method, phase=phase, status=status)
        for path in paths:
            console.print(f"wrote {path}")

    @app.command("export-model")
    def export_model(
        run: Annotated[str, typer.Argument(help="Run id or key (`pacebench runs`).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="The .safetensors file to write.")] = Path(
            "model.safetensors"
        ),
        weights: Annotated[
            Path | None,
            typer.Option(
                "--weights", help="The pre-trained file the run started from, if not the backbone's standard one."
            ),
        ] = None,
        weights_dir: Annotated[
            Path | None,
            typer.Option("--weights-dir", envvar=WEIGHTS_ENV, help="Folder of the named backbones' standard files."),
        ] = None,
        db: DbOption = None,
    ) -> None:
        """Write a finished run as a plain timm checkpoint: adapters folded into the backbone (Eq. 13), head kept."""
        from pacebench.export_model import export_model as write  # lazy: torch
        from pacebench.store import Store

        if weights_dir is not None:
            os.environ[WEIGHTS_ENV] = str(weights_dir)
        with writing(out):
            path = write(Store(db_url(db), readonly=True), run, out, weights)
        console.print(f"wrote {path}: load it with timm.create_model(...) and load_state_dict (see the README)")
