"""The report's tables, each a pure gather step: store -> `TableData` (a title, a DataFrame, notes); nothing draws.

Every table reads what `report.select` declares for it (finished phase-2 runs, as a rule: trained on train+val,
scored on test), through the one cell aggregator (`cells`), and never averages runs made on different weight files,
data sets or settings. Frames hold numbers (NaN where nothing was measured; the renderers print "–"); a column named
in `TableData.pm` has its standard deviation over seeds (ddof=1) in a sibling column, rendered as "mean ± std".

    paper.py    the suite files' tables (Tables 1-4, the slides' GLUE and GSM-8K) by layout, Table 5, parameters
    summary.py  the per-method summaries: the demo's table and Table 6 (the ablations)
    speed.py    `pacebench bench`'s measurements
"""

from __future__ import annotations

from pacebench.plan.protocol import excluded_points
from pacebench.report.select import tables
from pacebench.report.tables import speed, summary  # noqa: F401  (registration of the code's gather steps)
from pacebench.report.tables.base import GATHERS, TableData, finish
from pacebench.report.tables.paper import paper_table
from pacebench.store import Storage


def gather(
    name: str, store: Storage, suite: str | None = None, dataset: str | None = None, ci: bool = False
) -> TableData:
    """The table `name` (or an alias: "1", "vtab", "table1", ...) gathered from `store`, with what it left out;
    with `ci`, each measured mean with its 95% interval over seeds (`base.intervals`)."""
    entry = tables().get(name)
    step = paper_table if entry.paper is not None else GATHERS.get(entry.name)
    data = finish(step(store, entry, suite=suite, dataset=dataset), ci)
    if entry.reads is None:
        return data
    outdated = entry.reads.outdated(store, suite, dataset)
    if outdated:
        data.notes.append(
            f"{len(outdated)} finished run(s) made before a pacebench change that alters their "
            "results are left out; run them again (their settings now give new run keys)"
        )
    copies = entry.reads.other_copies(store, suite, dataset)
    if copies:
        data.notes.append(
            f"{len(copies)} finished run(s) made on another copy of their data set (another fingerprint: "
            "`pacebench data check` prints each copy's) are left out, never averaged with these"
        )
    excluded = excluded_points(store.runs(phase="tune", suite=suite))
    if excluded:
        data.notes.append(
            f"{len(excluded)} phase-1 grid point(s) failed all their attempts and were left out of the "
            "choice: " + "; ".join(excluded)
        )
    return data
