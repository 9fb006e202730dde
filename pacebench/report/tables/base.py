"""What every table gathers into (`TableData`) and the registry of gather steps, keyed by the names in `select`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from scipy import stats

from pacebench.registry import Registry
from pacebench.report.labels import weights_note
from pacebench.store import RunRecord

PHASE_NOTE = "phase-2 runs only (train+val -> test)"


@dataclass
class TableData:
    """One gathered table: numbers in `frame` (NaN where nothing was measured), what a reader must know in `notes`.

    `pm` maps a mean column to its std column ("mean ± std" when rendered); `formats` gives a column's format spec
    (default ".2f" for numbers); `headline` names the columns a terminal too narrow for all of them shows (empty:
    every column). `spread` maps a measured mean column to its (std over seeds, seed count) columns, which
    `intervals` turns into 95% intervals (`report --ci`) and `finish` drops otherwise.
    """

    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    pm: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    headline: tuple[str, ...] = ()
    spread: dict[str, tuple[str, str]] = field(default_factory=dict)


Gather = Callable[..., TableData]  # (store, entry, *, suite=None, dataset=None) -> TableData
GATHERS: Registry[Gather] = Registry("table gather step")


def gatherer(name: str) -> Callable[[Gather], Gather]:
    """Registers the gather step of the table `name` of `select.CODE_TABLES`."""
    return GATHERS.register(name)


def sort_rows(frame: pd.DataFrame, key: Callable[[pd.Series], Any]) -> pd.DataFrame:
    """The frame's rows ordered by `key(row)`, renumbered from 0."""
    if frame.empty:
        return frame
    keys = [key(r) for _, r in frame.iterrows()]
    return frame.iloc[sorted(range(len(frame)), key=keys.__getitem__)].reset_index(drop=True)


def one_weights_file(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without its "weights" column where the measured rows all share one weight file."""
    measured = frame.loc[frame["source"] == "measured", "weights"] if "source" in frame.columns else frame["weights"]
    return frame.drop(columns="weights") if len(set(measured)) <= 1 else frame


def phase_notes(runs: list[RunRecord]) -> list[str]:
    """What every table of phase-2 runs says first: which runs, and whether several weight files are among them."""
    return [PHASE_NOTE, *weights_note(runs)]


CI_SUFFIX = " ±95%"
PAPER_INSIDE = "paper inside 95%"


def half_width(std: float, n: float) -> float:
    """The 95% t-interval's half-width of a mean over `n` seeds with sample std `std` (NaN below two seeds)."""
    if not n or n < 2 or math.isnan(std):
        return math.nan
    return float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)


def intervals(data: TableData) -> TableData:
    """Each measured mean printed as mean ± the half-width of its 95% t-interval over seeds (the seeds' spread: the
    test set is the paper's own, so it is not resampled), and on each paper row how many of its numbers lie inside
    the interval of the measured row of the same method and adapter."""
    frame, pm = data.frame.copy(), dict(data.pm)
    for column, (std_col, n_col) in data.spread.items():
        frame[column + CI_SUFFIX] = [half_width(s, n) for s, n in zip(frame[std_col], frame[n_col], strict=True)]
        pm[column] = column + CI_SUFFIX
    for column, std_col in data.pm.items():
        if column not in data.spread and "seeds" in frame.columns:
            frame[column + CI_SUFFIX] = [half_width(s, n) for s, n in zip(frame[std_col], frame["seeds"], strict=True)]
            pm[column] = column + CI_SUFFIX
    notes = [
        *data.notes,
        "± is the half-width of a 95% t-interval over seeds (with one seed: none); `pacebench "
        "compare A B` tests a difference between two methods",
    ]
    if "source" in frame.columns and data.spread:
        frame[PAPER_INSIDE] = [_inside(frame, i, list(data.spread)) for i in range(len(frame))]
    dropped = {c for pair in data.spread.values() for c in pair} | set(data.pm.values())
    return TableData(
        data.title,
        frame.drop(columns=[c for c in dropped if c in frame.columns]),
        notes,
        {k: v for k, v in pm.items() if v in frame.columns},
        data.formats,
        data.headline,
    )


def _inside(frame: pd.DataFrame, i: int, columns: list[str]) -> str:
    """For a paper row: "k of n" of its numbers inside the measured row's intervals (same method and adapter)."""
    row = frame.iloc[i]
    if not str(row["source"]).startswith("paper"):
        return ""
    same = (frame["source"] == "measured") & (frame["method"] == row["method"])
    for label in ("adapter", "dataset"):
        if label in frame.columns:
            same &= frame[label] == row[label]
    if not same.any():
        return ""
    measured = frame[same].iloc[0]
    checked = [c for c in columns if not math.isnan(row[c]) and not math.isnan(measured[c + CI_SUFFIX])]
    inside = sum(abs(row[c] - measured[c]) <= measured[c + CI_SUFFIX] for c in checked)
    return f"{inside} of {len(checked)}" if checked else ""


def finish(data: TableData, ci: bool) -> TableData:
    """The table as shown: with intervals (`ci`), else without the columns only intervals read."""
    if ci:
        return intervals(data)
    hidden = [c for pair in data.spread.values() for c in pair if c in data.frame.columns]
    return TableData(data.title, data.frame.drop(columns=hidden), data.notes, data.pm, data.formats, data.headline)
