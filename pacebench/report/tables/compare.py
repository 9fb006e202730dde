"""`pacebench compare`'s result as tables: the per-data-set comparison and, with two or more data sets, the suite
line (numbers for every renderer; the statistics are `report.compare`'s)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pacebench.report.compare import Comparison
from pacebench.report.tables.base import TableData


def as_tables(c: Comparison) -> list[TableData]:
    """The per-dataset table and, with two or more rows, the suite line; numbers for every renderer."""
    a, b = c.a.label, c.b.label
    needed = f"seeds for Δ={c.delta:g}"
    frame = pd.DataFrame(
        [
            {
                "data": r.data,
                "eval": r.eval_set,
                a: r.difference.mean_a,
                b: r.difference.mean_b,
                "Δ": r.difference.estimate,
                "95% low": r.difference.low,
                "95% high": r.difference.high,
                "p": r.difference.p_value,
                "p (Holm)": r.p_holm,
                "verdict": str(r.verdict),
                needed: r.seeds_needed if r.seeds_needed is not None else np.nan,
                "seeds": f"{r.seeds_a}+{r.seeds_b}",
                "compared": r.level,
            }
            for r in c.rows
        ]
    )
    formats = {"p": ".3g", "p (Holm)": ".3g", needed: "d"}
    notes = [
        *c.notes,
        "Δ = A - B in points of the metric; verdict from the 95% interval: better (above 0), worse "
        "(below 0), within noise (covers 0); p (Holm) adjusts for comparing several datasets",
    ]
    tables = [TableData(f"{a} vs {b}: per data set", frame, notes, formats=formats)]
    if c.suite is not None:
        s = c.suite
        line = pd.DataFrame(
            [
                {
                    "over the data sets": "mean Δ",
                    "estimate": s.mean.estimate,
                    "95% low": s.mean.low,
                    "95% high": s.mean.high,
                },
                {
                    "over the data sets": "IQM of Δ",
                    "estimate": s.iqm.estimate,
                    "95% low": s.iqm.low,
                    "95% high": s.iqm.high,
                },
                {
                    "over the data sets": f"P({a} > {b})",
                    "estimate": s.improvement.estimate,
                    "95% low": s.improvement.low,
                    "95% high": s.improvement.high,
                },
            ]
        )
        tally = f"wins / ties / losses of {a}: {s.tally.wins} / {s.tally.ties} / {s.tally.losses}"
        tables.append(
            TableData(
                f"{a} vs {b}: over {len(c.rows)} data sets",
                line,
                [
                    tally,
                    "stratified bootstrap over each data set's seeds and examples (Agarwal et "
                    "al., 2021); P(A > B) from seed scores",
                ],
            )
        )
    return tables
