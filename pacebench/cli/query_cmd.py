"""`pacebench runs`, `methods`, `suites`, `inspect`: look at what is stored, registered and configured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pacebench.choices import Phase, Schedule, Status
from pacebench.cli.common import DataOption, DbOption, console, db_url
from pacebench.plan.spec import DEFAULT_ADAPTER
from pacebench.plan.suites import all_suites
from pacebench.settings import builtin_suites_dir
from pacebench.settings import data_root as default_root
from pacebench.terminal import Column, Fit


def runs(
    suite: Annotated[str | None, typer.Option("--suite")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    method: Annotated[str | None, typer.Option("--method")] = None,
    status: Annotated[Status | None, typer.Option("--status")] = None,
    phase: Annotated[Phase | None, typer.Option("--phase")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Show the newest N.")] = 50,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            "-w",
            help="Also key, suite, config, params, device and the data "
            "copy's fingerprint (each run as a list of its fields where they do not fit "
            "the terminal).",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """List runs with their status and headline metrics."""
    from pacebench.store import Store  # lazy: sqlalchemy

    store = Store(db_url(db), readonly=True)
    records = store.runs(suite=suite, dataset=dataset, method=method, status=status, phase=phase)
    names = ["id", "dataset", "method", "adapter", "seed", "phase", "status", "train", "val", "test"]
    if wide:
        names[1:1] = ["key", "suite"]
        names += ["config", "params", "device", "data copy"]
    numbers = {"id", "seed", "train", "val", "test", "params"}
    columns = [Column(n, numeric=n in numbers, headline=n != "train") for n in names]
    rows = []
    for r in records[-limit:]:
        m = r.metrics or {}
        error = f": {r.error.splitlines()[0][:60]}" if r.error else ""
        row = {
            "id": str(r.id),
            "key": r.key,
            "suite": r.suite,
            "dataset": _dataset_label(r),
            "method": r.method,
            "adapter": r.adapter,
            "config": _config(r.method_config),
            "seed": str(r.seed),
            "phase": r.phase,
            "status": r.status + error,
            "train": _num(m.get("train_acc")),
            "val": _num(m.get("val_acc")),
            "test": _num(m.get("test_acc")),
            "params": f"{r.trainable_params or 0:,}",
            "device": r.device or "",
            "data copy": r.data_fingerprint or "–",
        }
        rows.append([row[n] for n in names])
    console.print(Fit(columns, rows, title=f"{len(records)} runs in {store.display_url}", wide=wide))


def methods() -> None:
    """List the registered methods (tags, paper row, description) and their hyperparameters: default, the
    search grid `ablate` uses, and what each means; then the adapter kinds for `--adapters` and `-t adapter=KIND`."""
    from pacebench.core.adapters import ADAPTERS  # lazy: torch
    from pacebench.core.methods import METHODS  # lazy: torch

    table, params = [], []
    for name, cls in METHODS.items():
        table.append([name, ", ".join(sorted(cls.tags)), cls.paper_row or "", cls.description])
        grid = cls.search_grid()
        for hp_name, default, text in cls.hyperparameters():
            params.append([name, hp_name, str(default), ", ".join(map(str, grid.get(hp_name, []))), text])
    console.print(
        Fit(
            [Column(h) for h in ("method", "tags", "paper row", "description")],
            table,
            title="methods (tags: table6 = `pacebench ablate`, efficiency = `ablate --efficiency`)",
        )
    )
    console.print(
        Fit(
            [Column(h) for h in ("method", "--hp NAME", "default", "search grid", "meaning")],
            params,
            title="hyperparameters",
        )
    )
    kinds = []
    for name, kind in ADAPTERS.items():
        size = f"{kind.size} ({kind.default_size})" if kind.size else "nothing"
        options = ", ".join(f"{k}={v}" for k, v in kind.defaults.items())
        kinds.append([name, size, options, "yes" if kind.mergeable else "no", kind.description])
    console.print(
        Fit(
            [
                Column("adapter kind (--adapters)"),
                Column("rank sets (default)"),
                Column("options (default)", headline=False),
                Column("merges"),
                Column("what it adds"),
            ],
            kinds,
            title="adapters (docs/adapters.md)",
        )
    )


def suites(
    data_root: DataOption = None,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide",
            "-w",
            help="Also each dataset's group and folder (each dataset as a "
            "list of its fields where they do not fit the terminal).",
        ),
    ] = False,
) -> None:
    """List the suites, their datasets, and whether each dataset's folder is found under the data root."""
    from pacebench.data import READERS  # lazy: torch

    root = data_root or default_root()
    builtin, files = builtin_suites_dir(), []
    for suite in all_suites().values():
        mine = suite.path is not None and suite.path.parent != builtin
        origin = (
            "yours, replaces the built-in"
            if mine and (builtin / f"{suite.name}.toml").is_file()
            else "yours"
            if mine
            else "built in"
        )
        files.append([suite.name, str(len(suite.datasets)), f"{suite.path} ({origin})"])
    console.print(Fit([Column("suite"), Column("datasets", numeric=True), Column("file")], files, title="suite files"))
    rows = []
    for suite in all_suites().values():
        for ds in suite.datasets.values():
            folder = Path(suite.data_dir) / ds.folder
            needs_files = READERS.get(suite.reader).needs_files
            found = "found" if (root / folder).is_dir() else "missing" if needs_files else "built in"
            rows.append([suite.name, ds.name, str(ds.classes), ds.group, str(folder), found])
    columns = [
        Column("suite"),
        Column("dataset"),
        Column("classes", numeric=True),
        Column("group", headline=False),
        Column("folder", headline=False),
        Column("data"),
    ]
    console.print(Fit(columns, rows, title=f"suites (folders under the data root {root})", wide=wide))


def inspect(
    backbone: Annotated[str, typer.Option("--backbone", help="Named backbone or timm architecture.")] = "vit_b16_in21k",
    adapter: Annotated[str, typer.Option("--adapter", help="Adapter kind (`pacebench methods`).")] = DEFAULT_ADAPTER,
    rank: Annotated[int | None, typer.Option("--rank", help="The kind's size (default: its own).")] = None,
    classes: Annotated[int, typer.Option("--classes")] = 100,
    sigma: Annotated[float, typer.Option("--sigma")] = 1.2,
    schedule: Annotated[Schedule, typer.Option("--schedule")] = Schedule.code,
    image_size: Annotated[int, typer.Option("--image-size")] = 224,
) -> None:
    """Trainable parameter count and the σ schedule of a set-up, without weights or data; for ViT-B/16, the kind's
    count at its source's setting beside the "Params (M)" its source prints."""
    from pacebench.core.footprint import counts_printed_for, describe, printed_counts  # lazy: torch, timm

    info = describe(backbone, adapter, rank, classes, sigma, schedule, image_size)
    size = f"{info.size} = {info.rank}" if info.size else "no size"
    console.print(f"[bold]{backbone}[/] ({info.family}, {info.depth} blocks) + {adapter} ({size}), {classes} classes")
    console.print(
        f"  trainable parameters: adapters {info.adapter:,} + head {info.head:,} = "
        f"[bold]{info.adapter + info.head:,}[/] ({(info.adapter + info.head) / 1e6:.2f} M)"
    )
    printed = printed_counts(adapter) if counts_printed_for(backbone) else []
    if printed:
        console.print(
            f"  printed for {adapter} on ViT-B/16, VTAB-1k, counted here at the source's setting:", soft_wrap=True
        )
    for p in printed:
        setting = {"": "its defaults", "vtab": "each dataset's size (vtab suite)"}.get(p.rank, f"rank {p.rank}")
        head = " with the mean VTAB-1k head" if p.head == "vtab-mean" else ""
        verdict = "reproduced" if p.reproduced else "[bold]NOT reproduced[/]"
        console.print(
            f"    {p.printed} M printed ({escape(p.source)}); counted {p.counted_m} M ({p.counted:,.0f}) at "
            f"{setting}{head}: {verdict}. {escape(p.note)}",
            soft_wrap=True,
            highlight=False,
        )
    rows = [
        ["head" if position == info.depth else f"block {position}", f"{s:.4g}", str(layers)]
        for position, (s, layers) in enumerate(zip(info.sigmas, info.layers, strict=True))
    ]
    console.print(
        Fit(
            [Column("position"), Column("σ", numeric=True), Column("noisy modules", numeric=True)],
            rows,
            title=f"σ schedule '{schedule}', σ = {sigma}",
        )
    )


def register(app: typer.Typer) -> None:
    for command in (runs, methods, suites, inspect):
        app.command()(command)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _config(config: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


def _dataset_label(r) -> str:  # type: ignore[no-untyped-def]
    return " ".join([r.dataset, *(f"{k}={v}" for k, v in sorted(r.data_options.items()))])
