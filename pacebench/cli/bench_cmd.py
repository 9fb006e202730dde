"""`pacebench bench`: training-step speed of each method on a randomly initialised backbone, kept in the database."""

from __future__ import annotations

from typing import Annotated

import typer

from pacebench.cli.common import DbOption, console, db_url, split_list
from pacebench.plan.spec import DEFAULT_ADAPTER


def register(app: typer.Typer) -> None:
    @app.command()
    def bench(
        backbone: Annotated[
            str, typer.Option("--backbone", help="timm architecture (random init, no weights).")
        ] = "vit_base_patch16_224",
        adapter: Annotated[
            str,
            typer.Option(
                "--adapter",
                help="Adapter kind, or several comma-separated (each measured with every method; `pacebench methods`).",
            ),
        ] = DEFAULT_ADAPTER,
        rank: Annotated[int | None, typer.Option("--rank", help="The kind's size (default: each kind's own).")] = None,
        batch: Annotated[int, typer.Option("--batch", help="Real images per step.")] = 64,
        image_size: Annotated[int, typer.Option("--image-size", help="Image side in pixels.")] = 224,
        patch_size: Annotated[
            int | None, typer.Option("--patch-size", help="Patch size (default: the architecture's).")
        ] = None,
        classes: Annotated[int, typer.Option("--classes", help="Classes of the head.")] = 100,
        device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
        precision: Annotated[
            str, typer.Option("--precision", help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16.")
        ] = "auto",
        methods: Annotated[
            str,
            typer.Option(
                "--methods",
                "-m",
                help="Comma-separated methods; the baseline is always measured first, as the reference.",
            ),
        ] = "baseline,pace",
        compile_: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile every block.")] = False,
        paths: Annotated[
            str,
            typer.Option(
                "--paths",
                help="Training fast paths: fast (all, what runs use) | "
                "two-products (no per-sample weights) | plain (none).",
            ),
        ] = "fast",
        warmup: Annotated[int, typer.Option("--warmup", help="Untimed rounds first.")] = 2,
        steps: Annotated[int, typer.Option("--steps", help="Timed rounds (the median is reported).")] = 6,
        threads: Annotated[int, typer.Option("--threads", help="CPU: torch intra-op threads.")] = 1,
        store: Annotated[bool, typer.Option("--store/--no-store", help="Keep the rows in the database.")] = True,
        profile: Annotated[
            int,
            typer.Option(
                "--profile",
                help="Also print torch.profiler's N costliest operators of one step of each method (0: none).",
            ),
        ] = 0,
        db: DbOption = None,
    ) -> None:
        """Time one training step of each method (interleaved rounds, median), count its FLOPs, and store the rows;
        with several adapter kinds, each kind is measured in turn (its methods interleaved, the baseline first).

        `pacebench report --table speed` renders every stored measurement.
        """
        from pacebench.bench import (  # lazy: torch, timm
            as_records,
            bench_config,
            build_steps,
            device_name,
            profile_tables,
            run,
        )
        from pacebench.execution.devices import resolve_device
        from pacebench.report.render import render
        from pacebench.report.tables.speed import SETUP, speed_table
        from pacebench.store import MemoryStore, Store
        from pacebench.training.loop import resolve_precision  # lazy: torch

        resolved = resolve_device(device)
        names = ["baseline"] + [m for m in split_list(methods) or [] if m != "baseline"]
        configs = [
            bench_config(
                backbone=backbone,
                adapter=kind,
                rank=rank,
                batch=batch,
                image_size=image_size,
                patch_size=patch_size,
                classes=classes,
                device=str(resolved),
                precision=resolve_precision(precision, resolved),
                methods=tuple(names),
                compile=compile_,
                paths=paths,
                warmup=warmup,
                steps=steps,
                threads=threads,
            )
            for kind in split_list(adapter) or []
        ]  # every kind checked before any is measured
        target = Store(db_url(db)) if store else None
        for cfg in configs:
            setting = (
                cfg.precision + (", compiled" if compile_ else "") + ("" if paths == "fast" else f", {paths} paths")
            )
            console.print(
                f"{backbone} {cfg.adapter_label}, batch {batch}, {image_size}px, {setting} on "
                f"{device_name(resolved)}: {warmup} warm-up + {steps} timed rounds, methods interleaved"
            )
            built = build_steps(cfg)
            records = as_records(cfg, run(cfg, built))
            if target is not None:
                target.add_speed(records)
            measured = MemoryStore()  # this measurement alone, rendered by the same table as the stored ones
            measured.add_speed(records)
            table = speed_table(measured)
            table.frame = table.frame.drop(columns=list(SETUP))  # printed above
            console.print(render(table, "rich"))
            for method, text in (profile_tables(cfg, built, profile) if profile > 0 else {}).items():
                console.print(f"\n[bold]{method}[/bold]: one step, operators by their own time")
                console.print(text, markup=False, highlight=False, soft_wrap=True)
