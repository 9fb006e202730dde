"""`pacebench report --all --format html`: one self-contained page with every table that has runs (the speed table:
`pacebench bench` rows) and every figure whose runs exist, figures embedded as data URIs (no other file to carry),
paper numbers beside measured ones (the tables' own paper rows, greyed), and the provenance of the runs behind each
table: the runs `report.select` says it reads.

Which figures: every registered figure, for every data set (suite, dataset, data options) that has finished runs;
a figure whose gather finds nothing to draw for a data set is left out, never drawn empty.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from pacebench.choices import Status
from pacebench.errors import PacebenchError
from pacebench.plan.spec import DEFAULT_METHODS
from pacebench.report.figures import gather_figure, render_figure, title_of
from pacebench.report.labels import data_label, weights_key
from pacebench.report.render import to_html
from pacebench.report.select import FIGURES, tables
from pacebench.report.tables import TableData, gather
from pacebench.store import RunRecord, Storage

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1250px; margin: 2em auto; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
nav ul { columns: 2; } section { margin: 2.5em 0; border-top: 1px solid #ddd; padding-top: 0.5em; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; display: block; overflow-x: auto; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; min-width: 3.5em; } section caption { display: none; }
th { background: #f4f4f4; position: sticky; top: 0; } .num { text-align: right; font-variant-numeric: tabular-nums; }
tr.paper td { color: #777; font-style: italic; background: #fafafa; }
ul.notes, .provenance { font-size: 12px; color: #555; } .provenance { background: #f8f8f8; padding: 0.5em 1em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #444; }
"""


@dataclass
class Section:
    anchor: str
    heading: str
    body: str


def provenance(runs: list[RunRecord]) -> str:
    """One paragraph: how many runs, on which weights, from which code and library versions, on which devices."""

    def counted(values: list[Any]) -> str:
        return ", ".join(f"{v} ({n})" if len(values) > 1 else str(v) for v, n in Counter(values).most_common())

    finished = sorted(r.finished_at for r in runs if r.finished_at)
    span = f"{finished[0]:%Y-%m-%d %H:%M} to {finished[-1]:%Y-%m-%d %H:%M} UTC" if finished else "–"
    items = {
        "runs": f"{len(runs)} finished phase-2 runs; methods: {counted([r.method for r in runs])}",
        "weights": counted([weights_key(r) for r in runs]),
        "data copies": counted([f"{r.suite}/{r.dataset} {r.data_fingerprint or 'not recorded'}" for r in runs]),
        "git commit": counted([(r.git_commit or "unknown")[:10] for r in runs]),
        "versions": counted(
            [" ".join(f"{k} {v}" for k, v in sorted(r.versions.items()) if v) or "unknown" for r in runs]
        ),
        "devices": counted([r.device or "unknown" for r in runs]),
        "finished": span,
    }
    rows = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in items.items())
    return f'<div class="provenance"><b>Provenance</b><ul>{rows}</ul></div>'


def _has_measured(data: TableData) -> bool:
    """Whether the table shows any measured number: a "measured" row, or a value in a "measured ..." column (the
    parameter counts print counted and paper values even without runs)."""
    frame = data.frame
    if frame.empty:
        return False
    if "source" in frame.columns:
        return bool((frame["source"] == "measured").any())
    measured = [c for c in frame.columns if str(c).startswith("measured")]
    return not measured or bool(frame[measured].notna().any().any())


def table_sections(store: Storage) -> list[Section]:
    sections = []
    for name, entry in tables().items():
        if name != entry.name:
            continue  # an alias
        runs: list[RunRecord] | None = None
        if entry.reads is not None:
            runs = entry.reads.runs(store)
            if not runs or (entry.reads.sweep and {r.method for r in runs} <= set(DEFAULT_METHODS)):
                continue  # no runs; or a table of a method group holding only the default methods (the summary's)
        try:
            data = gather(name, store)
        except PacebenchError:
            continue
        if _has_measured(data):
            sections.append(Section(f"table-{name}", data.title, to_html(data) + (provenance(runs) if runs else "")))
    return sections


def figure_sections(store: Storage) -> list[Section]:
    """Each figure once per data set it can draw (a suite-wide figure once per suite), none drawn empty."""
    runs = store.runs(status=Status.done)
    datas = {data_label(r): r for r in runs}
    suites = {r.suite: r for r in runs}
    sections: list[Section] = []
    seen: set[str] = set()
    for name in FIGURES.names():
        entry = FIGURES.get(name)
        for label, run in sorted((suites if entry.suite_wide else datas).items()):
            filters: dict[str, Any] = (
                {"suite": run.suite} if entry.suite_wide else {"suite": run.suite, "dataset": run.dataset}
            )
            if not entry.spans_options and not entry.suite_wide:
                filters["options"] = dict(run.data_options) or None
            try:
                frame = gather_figure(name, store, **filters)
            except PacebenchError:
                continue
            title = title_of(name, frame)
            if title in seen:
                continue
            seen.add(title)
            png = base64.b64encode(render_figure(name, frame)).decode()
            made = " ".join(f"--{k} {v}" for k, v in filters.items() if k in ("suite", "dataset"))
            notes = "".join(f" {escape(note)}." for note in frame.attrs.get("notes", []))
            body = (
                f'<figure><img alt="{escape(title)}" src="data:image/png;base64,{png}">'
                f"<figcaption>{escape(entry.caption)}{notes} Made by `pacebench plot {escape(name)} "
                f"{escape(made)}`.</figcaption></figure>"
            )
            sections.append(Section(f"figure-{name}-{len(sections)}", f"{entry.title}: {label}", body))
    return sections


def build_page(store: Storage) -> str:
    """The whole report as one HTML string."""
    shown, figures = table_sections(store), figure_sections(store)
    if not shown and not figures:
        raise PacebenchError(f"{store.display_url} holds no finished runs to report; run `pacebench run demo` first")

    def toc(items: list[Section]) -> str:
        return "".join(f'<li><a href="#{s.anchor}">{escape(s.heading)}</a></li>' for s in items) or "<li>none</li>"

    body = "".join(
        f'<section id="{s.anchor}"><h2>{escape(s.heading)}</h2>{s.body}</section>' for s in [*shown, *figures]
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>pacebench report</title>'
        f"<style>{STYLE}</style></head><body>\n<h1>pacebench report</h1>"
        f'<p class="meta">{escape(store.display_url)}, made {now}. Measured rows in black; the paper\'s numbers '
        "in grey italics beside them. Every number comes from the runs in this database.</p>"
        f"<nav><h3>Tables</h3><ul>{toc(shown)}</ul><h3>Figures</h3><ul>{toc(figures)}</ul></nav>\n"
        f"{body}\n</body></html>\n"
    )
