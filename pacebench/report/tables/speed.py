"""`pacebench report --table speed`: the rows `pacebench bench` stored (no runs), one per measured method."""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd

from pacebench.errors import PacebenchError
from pacebench.report.select import TableEntry
from pacebench.report.tables.base import TableData, gatherer
from pacebench.report.tables.cells import NAN

SPEED_FORMATS = {
    "ms/step": ".1f",
    "images/s": ".0f",
    "GFLOP/step": ".1f",
    "time ratio": ".2f",
    "FLOP ratio": ".2f",
    "time/FLOP": ".2f",
    "peak MiB": ".0f",
    "MFU %": ".1f",
    "batch": "d",
    "px": "d",
}
SETUP = ("when", "device", "backbone", "precision", "batch", "px")  # what a measurement ran on (bench prints it)


class Rows(Protocol):
    def speed(self) -> list[dict[str, Any]]: ...


@gatherer("speed")
def speed_table(
    store: Rows, entry: TableEntry | None = None, suite: str | None = None, dataset: str | None = None
) -> TableData:
    rows = store.speed()
    if not rows:
        raise PacebenchError("no speed measurements stored; run `pacebench bench` first")
    frame = pd.DataFrame(
        [
            {
                "when": r["created_at"].strftime("%Y-%m-%d %H:%M"),
                "device": r["device_name"],
                "backbone": r["backbone"],
                "precision": r["precision"]
                + (" compiled" if r["compile"] else "")
                + ("" if r.get("paths", "fast") == "fast" else f", {r['paths']} paths"),
                "batch": r["batch"],
                "px": r["image_size"],
                "method": r["method"],
                "ms/step": r["ms_per_step"],
                "images/s": r["images_per_s"],
                "GFLOP/step": r["gflop_per_step"],
                "time ratio": r["time_ratio"],
                "FLOP ratio": r["flop_ratio"],
                "time/FLOP": r["time_ratio"] / r["flop_ratio"],
                "peak MiB": NAN if r["peak_mib"] is None else r["peak_mib"],
                "MFU %": NAN if r["mfu"] is None else 100 * r["mfu"],
            }
            for r in rows
        ]
    )
    versions = sorted({f"torch {r['versions'].get('torch', '?')}, timm {r['versions'].get('timm', '?')}" for r in rows})
    notes = [
        "ratios are to the first method of the same measurement (the baseline); time/FLOP = time ratio / FLOP "
        "ratio, 1.0 when a method costs exactly what its FLOPs predict",
        "peak memory and MFU are measured on CUDA only; MFU = counted FLOPs/s over the GPU's dense peak",
        f"versions: {'; '.join(versions)}",
    ]
    return TableData(
        "Training-step speed (`pacebench bench`)",
        frame,
        notes,
        formats=SPEED_FORMATS,
        headline=("device", "method", "ms/step", "images/s", "time ratio", "FLOP ratio", "time/FLOP"),
    )
