"""`pacebench runs`, `methods`, `suites`, `inspect`: look at what is stored, registered and configured."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from pacebench.choices import Phase, Schedule, Status
from pacebench.cli.common import DataOption, DbOption, console, db_url


def runs(
    suite: Annotated[str | None, typer.Option("--suite")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    method: Annotated[str | None, typer.Option("--method")] = None,
    status: Annotated[Status | None, typer.Option("--status")] = None,
    phase: Annotated[Phase | None, typer.Option("--phase")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Show the newest N.")] = 50,
    wide: Annotated[bool, typer.Option("--wide", "-w", help="Also key, suite, config, params, device.")]
    = False,
    db: DbOption = None,
) -> None:
    """List runs with their status and headline metrics."""
    from pacebench.store import Store

    store = Store(db_url(db), readonly=True)
    records = store.runs(suite=suite, dataset=dataset, method=method, status=status, phase=phase)
    columns = ["id", "dataset", "method", "seed", "phase", "status", "train", "val", "test"]
    if wide:
        columns[1:1] = ["key", "suite"]
        columns += ["config", "params", "device"]
    table = Table(*columns, title=f"{len(records)} runs in {store.display_url}")
    for r in records[-limit:]:
        m = r.metrics or {}
        error = f": {r.error.splitlines()[0][:60]}" if r.error else ""
        row = {"id": str(r.id), "key": r.key, "suite": r.suite, "dataset": _dataset_label(r), "method": r.method,
               "config": _config(r.method_config), "seed": str(r.seed), "phase": r.phase,
               "status": r.status + error, "train": _num(m.get("train_acc")), "val": _num(m.get("val_acc")),
               "test": _num(m.get("test_acc")), "params": f"{r.trainable_params or 0:,}", "device": r.device or ""}
        table.add_row(*(row[c] for c in columns))
    console.print(table)

def methods() -> None:
    """List the registered methods (tags, paper row, description) and their hyperparameters: default, the
    search grid `ablate` uses, and what each means; then the adapter kinds for `-t adapter=KIND`."""
    from pacebench.core.adapters import DESCRIPTIONS
    from pacebench.core.methods import METHODS

    table = Table("method", "tags", "paper row", "description", title="methods (tags: table6 = `pacebench "
                  "ablate`, efficiency = `ablate --efficiency`)")
    params = Table("method", "--hp NAME", "default", "search grid", "meaning", title="hyperparameters")
    for name, cls in METHODS.items():
        table.add_row(name, ", ".join(sorted(cls.tags)), cls.paper_row or "", cls.description)
        grid = cls.search_grid()
        for hp_name, default, text in cls.hyperparameters():
            params.add_row(name, hp_name, str(default), ", ".join(map(str, grid.get(hp_name, []))), text)
    console.print(table)
    console.print(params)
    kinds = Table("adapter kind (-t adapter=KIND)", "what it adds", title="adapters")
    for kind, text in DESCRIPTIONS.items():
        kinds.add_row(kind, text)
    console.print(kinds)

def suites(data_root: DataOption = None) -> None:
    """List the suites, their datasets, and whether each dataset's folder is found under the data root."""
    from pacebench.data import READERS
    from pacebench.plan.suites import all_suites
    from pacebench.settings import data_root as default_root

    root = data_root or default_root()
    table = Table("suite", "dataset", "classes", "group", "folder", "data", title=f"suites (data root {root})")
    for suite in all_suites().values():
        for ds in suite.datasets.values():
            folder = root / suite.data_dir / ds.folder
            needs_files = READERS.get(suite.reader).needs_files
            found = "found" if folder.is_dir() else "missing" if needs_files else "built in"
            table.add_row(suite.name, ds.name, str(ds.classes), ds.group, str(folder), found)
    console.print(table)

def inspect(
    backbone: Annotated[str, typer.Option("--backbone", help="Named backbone or timm architecture.")]
    = "vit_b16_in21k",
    adapter: Annotated[str, typer.Option("--adapter")] = "lora_mul+vpt_add",
    rank: Annotated[int, typer.Option("--rank")] = 10,
    classes: Annotated[int, typer.Option("--classes")] = 100,
    sigma: Annotated[float, typer.Option("--sigma")] = 1.2,
    schedule: Annotated[Schedule, typer.Option("--schedule")] = Schedule.code,
    image_size: Annotated[int, typer.Option("--image-size")] = 224,
) -> None:
    """Trainable parameter count and the σ schedule of a set-up, without weights or data."""
    from pacebench.core.footprint import describe

    info = describe(backbone, adapter, rank, classes, sigma, schedule, image_size)
    console.print(f"[bold]{backbone}[/] ({info.family}, {info.depth} blocks) + {adapter} rank {rank}, "
                  f"{classes} classes")
    console.print(f"  trainable parameters: adapters {info.adapter:,} + head {info.head:,} = "
                  f"[bold]{info.adapter + info.head:,}[/] ({(info.adapter + info.head) / 1e6:.2f} M)")
    table = Table("position", "σ", "adapted Linear layers", title=f"σ schedule '{schedule}', σ = {sigma}")
    for position, (s, layers) in enumerate(zip(info.sigmas, info.layers, strict=True)):
        name = "head" if position == info.depth else f"block {position}"
        table.add_row(name, f"{s:.4g}", str(layers))
    console.print(table)


def register(app: typer.Typer) -> None:
    for command in (runs, methods, suites, inspect):
        app.command()(command)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _config(config: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


def _dataset_label(r) -> str:  # type: ignore[no-untyped-def]
    return r.dataset + ("" if not r.data_options else " " + json.dumps(r.data_options, separators=(",", ":")))
