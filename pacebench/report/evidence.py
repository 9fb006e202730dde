"""The two figures that say whether a difference is real, each a pure gather step and a draw step (`figures.py`
registers them beside the paper's figures):

- `compare`: a forest plot of A - B per data set with its 95% interval (`report.compare`), coloured by verdict,
  and the suite's mean and IQM of Δ with their stratified intervals below a rule.
- `ranks`: Demšar's critical-difference diagram (JMLR 2006): each method's average rank over the data sets, the
  Nemenyi critical difference as a bar, and a line joining methods whose ranks differ by less than it; the title
  gives Friedman's test, which should reject before the pairs are read.

Both read a whole suite (or every suite), not one data set: `report.select.FIGURES` marks them `suite_wide`.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from pacebench import stats
from pacebench.choices import Phase
from pacebench.errors import PacebenchError, UsageError
from pacebench.report.compare import Side, compare, parse_side
from pacebench.report.labels import config_labels, data_label, heldout_name, method_rank
from pacebench.report.select import FIGURES
from pacebench.store import RunRecord, Storage

COMPARED = ("pace", "baseline")  # `plot compare` without --methods: A = PACE, B = the baseline
VERDICT_COLOURS = {stats.Verdict.better: "C2", stats.Verdict.worse: "C3"}  # within noise: grey


def _sides(methods: list[str] | None) -> tuple[Side, Side]:
    names = methods or list(COMPARED)
    if len(names) != 2:
        raise UsageError(f"plot compare takes two methods, A,B (e.g. --methods pace,baseline); got {len(names)}")
    return parse_side(names[0]), parse_side(names[1])


def _scope(suite: str | None, phase: str) -> str:
    return f"{suite or 'every suite'}, phase {phase}"


def compare_data(
    store: Storage,
    suite: str | None = None,
    dataset: str | None = None,
    phase: str | None = None,
    methods: list[str] | None = None,
) -> pd.DataFrame:
    """One row per data set and evaluation set (Δ, its interval, verdict, level), then the suite's mean and IQM
    rows (`part` = "suite") when there are two or more data sets."""
    a, b = _sides(methods)
    phase = phase or Phase.final
    runs = FIGURES.get("compare").reads.runs(store, suite, dataset, phase)
    result = compare(runs, store.predictions, a, b, phase)
    several = len({r.eval_set for r in result.rows}) > 1
    rows = [
        {
            "label": r.data + (f" [{r.eval_set}]" if several else ""),
            "part": "data",
            "estimate": r.difference.estimate,
            "low": r.difference.low,
            "high": r.difference.high,
            "verdict": str(r.verdict),
            "level": r.level,
        }
        for r in result.rows
    ]
    if result.suite is not None:
        for name, interval in (("suite mean", result.suite.mean), ("suite IQM", result.suite.iqm)):
            rows.append(
                {
                    "label": name,
                    "part": "suite",
                    "estimate": interval.estimate,
                    "low": interval.low,
                    "high": interval.high,
                    "verdict": str(stats.verdict(interval)),
                    "level": "stratified",
                }
            )
    frame = pd.DataFrame(rows)
    tally = f"; wins/ties/losses {'/'.join(map(str, result.suite.tally))}" if result.suite else ""
    frame.attrs.update(
        what=f"{a.label} - {b.label}, {heldout_name(phase)} points, 95% intervals",
        data=f"{_scope(suite, phase)}, {len(result.rows)} rows{tally}",
        notes=result.notes,
    )
    return frame


def _competitors(runs: list[RunRecord]) -> dict[int, str]:
    """Per run id: its method, plus the settings that differ between that method's runs on the same data set."""
    configs = config_labels(runs, scope=lambda r: (r.method, data_label(r)))
    return {r.id: " ".join(x for x in (r.method, configs[r.id]) if x) for r in runs}


def ranks_data(
    store: Storage,
    suite: str | None = None,
    dataset: str | None = None,
    phase: str | None = None,
    methods: list[str] | None = None,
) -> pd.DataFrame:
    """One row per method (its average rank, 1 = best, over the data sets on which every method ran), with the
    critical difference, Friedman's test and the cliques in `attrs`. A method's score on a data set is the mean over
    its seeds of the headline accuracy (`test_acc`, or `val_acc` in phase tune)."""
    phase = phase or Phase.final
    metric = "val_acc" if phase == Phase.tune else "test_acc"
    runs = [
        r
        for r in FIGURES.get("ranks").reads.runs(store, suite, dataset, phase)
        if (methods is None or r.method in methods) and r.metrics.get(metric) is not None
    ]
    names = _competitors(runs)
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        scores[names[r.id]][data_label(r)].append(float(r.metrics[metric]))
    datas = sorted(set.intersection(*(set(s) for s in scores.values()))) if scores else []
    ranked = sorted((n for n in scores if datas), key=lambda n: (method_rank(n.split()[0]), n))
    if len(ranked) < 3 or len(datas) < 2:
        raise PacebenchError(
            f"ranks need 3 or more methods on 2 or more common data sets; {_scope(suite, phase)} "
            f"has {len(scores)} method(s) on {len(datas)} common data set(s): run more methods "
            "(pacebench ablate SUITE) or more data sets"
        )
    table = np.array([[statistics.fmean(scores[n][d]) for n in ranked] for d in datas])
    test = stats.friedman(table)
    cd = stats.critical_difference(len(ranked), len(datas))
    frame = pd.DataFrame({"method": ranked, "rank": test.ranks})
    left_out = sorted(set(scores) - set(ranked))
    frame.attrs.update(
        what=f"average rank of {heldout_name(phase)} accuracy (1 = best); Friedman F p = {test.f_p_value:.3g}, "
        f"Nemenyi CD = {cd:.2f} at 0.05",
        data=f"{_scope(suite, phase)}, {len(datas)} data sets, {len(runs)} runs",
        cd=cd,
        cliques=[[ranked[i] for i in group] for group in stats.cliques(test.ranks, cd)],
        notes=[f"left out (not on every data set): {', '.join(left_out)}"] if left_out else [],
    )
    return frame


# ---- draw -----------------------------------------------------------------------------------------------------


def draw_compare(frame: pd.DataFrame, fig: Any) -> None:
    rows = list(frame.itertuples())
    fig.set_size_inches(6.4, 1.4 + 0.32 * len(rows))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))[::-1].astype(float)
    y[[i for i, r in enumerate(rows) if r.part == "suite"]] -= 0.6  # the suite lines sit apart, below the data sets
    for yi, r in zip(y, rows, strict=True):
        colour = VERDICT_COLOURS.get(stats.Verdict(r.verdict), "0.45")
        ax.errorbar(
            r.estimate,
            yi,
            xerr=[[r.estimate - r.low], [r.high - r.estimate]],
            fmt="D" if r.part == "suite" else "o",
            color=colour,
            capsize=3,
            markersize=5 if r.part == "suite" else 4,
        )
    if any(r.part == "suite" for r in rows):
        ax.axhline(min(y[[i for i, r in enumerate(rows) if r.part == "data"]], default=0) - 0.8, color="0.8", lw=0.8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [r.label + (" (seed level)" if r.level == "seed level" else "") for r in rows], fontsize=7)
    ax.set_xlabel("Δ = A - B (points); green: better, red: worse, grey: within noise")
    ax.grid(axis="x", alpha=0.3)


def draw_ranks(frame: pd.DataFrame, fig: Any) -> None:
    """Demšar's layout: a rank axis on top (best on the left), each method hung from its rank to the nearer side,
    a bar per clique of methods not told apart, and the CD's length above the axis."""
    k = len(frame)
    ordered = frame.sort_values("rank").reset_index(drop=True)
    fig.set_size_inches(6.4, 1.6 + 0.28 * k)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    low, high = 1, max(k, 2)
    ax.set_xlim(low - 1.6, high + 1.6)
    half = (k + 1) // 2
    depth = max(half, k - half)
    ax.set_ylim(-depth - 1, 1.2)
    ax.hlines(0, low, high, color="k", lw=1)
    for tick in range(low, high + 1):
        ax.vlines(tick, 0, 0.12, color="k", lw=1)
        ax.text(tick, 0.2, str(tick), ha="center", va="bottom", fontsize=7)
    for i, row in ordered.iterrows():
        left = i < half
        level = -(i + 1 if left else k - i)
        end = low - 0.3 if left else high + 0.3
        ax.plot([row["rank"], row["rank"], end], [0, level, level], color="k", lw=0.8)
        ax.text(
            end - 0.05 if left else end + 0.05,
            level,
            f"{row['method']} ({row['rank']:.2f})",
            ha="right" if left else "left",
            va="center",
            fontsize=7,
        )
    ranks = dict(zip(ordered["method"], ordered["rank"], strict=True))
    for j, group in enumerate(frame.attrs.get("cliques", [])):
        span = [ranks[m] for m in group]
        ax.hlines(-0.35 - 0.25 * j, min(span) - 0.03, max(span) + 0.03, color="C0", lw=3)
    cd = frame.attrs.get("cd", 0.0)
    ax.hlines(0.85, low, low + cd, color="C3", lw=2)
    ax.text(low + cd / 2, 0.95, "CD", ha="center", va="bottom", fontsize=7, color="C3")
