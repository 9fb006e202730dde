"""Tables and figures from the results database: a pure gather step (store -> data) and a render step each.

    tables.py   tables(): name -> gather(store, *, suite, dataset) -> TableData (title, DataFrame, notes); the
                paper tables come from the suite files, the rest from @table functions
    render.py   TableData -> rich Table, Markdown, LaTeX (booktabs) or CSV
    figures.py  FIGURES: name -> gather(store, **filters) -> DataFrame, and a matplotlib draw step
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pacebench.report.figures import FIGURES, plot
from pacebench.report.render import FORMATS, render
from pacebench.report.tables import TableData, gather, table_names, tables
from pacebench.store import Storage
from pacebench.text import report as _text_tables  # noqa: F401, E402  (registers glue, gsm8k)


def render_table(name: str, store: Storage, fmt: str = "rich", suite: str | None = None,
                 dataset: str | None = None) -> Any:
    """Gathers table `name` (or an alias) and renders it: a str for "md", "latex", "csv"; a rich renderable for
    "rich"."""
    return render(gather(name, store, suite=suite, dataset=dataset), fmt)


def draw_figure(name: str, store: Storage, out: Path, **filters: Any) -> Path:
    """Same as `figures.plot`: writes figure `name` (PNG, PDF or SVG by the suffix of `out`) and returns its path."""
    return plot(name, store, out, **filters)


__all__ = ["FIGURES", "FORMATS", "TableData", "draw_figure", "gather", "plot", "render", "render_table",
           "table_names",
           "tables"]
