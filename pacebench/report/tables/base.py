"""What every table gathers into (`TableData`) and the registry of gather steps, keyed by the names in `select`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pacebench.registry import Registry
from pacebench.report.labels import weights_note
from pacebench.store import RunRecord

PHASE_NOTE = "phase-2 runs only (train+val -> test)"


@dataclass
class TableData:
    """One gathered table: numbers in `frame` (NaN where nothing was measured), what a reader must know in `notes`.

    `pm` maps a mean column to its std column ("mean ± std" when rendered); `formats` gives a column's format spec
    (default ".2f" for numbers); `headline` names the columns a terminal too narrow for all of them shows (empty:
    every column).
    """

    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    pm: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    headline: tuple[str, ...] = ()


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
