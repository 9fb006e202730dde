"""The one cell aggregator of every table: runs grouped into rows and cells, numbers over seeds, a count, the notes.

A row is whatever a table puts on one line (a method on one weight file; a method, setting and data set; ...); its
cells are its runs per data set (suite, dataset, data options), and a cell's runs are the seeds of one setting. A
cell that holds several settings (two λ, say) keeps the one with the most seeds, then the most recently finished,
and says so in the notes: settings are never averaged together, nor are data sets or weight files.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

from pacebench.report.labels import config_labels, data_key, data_label, setting_key
from pacebench.store import RunRecord

NAN = math.nan


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.fmean(values) if values else NAN


def std(values: Iterable[float]) -> float:
    """Sample standard deviation over seeds (ddof=1); NaN for fewer than two."""
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else NAN


def metric(name: str) -> Callable[[RunRecord], float | None]:
    """A run's finished metric `name` as a float, None where it has none."""

    def value(run: RunRecord) -> float | None:
        v = run.metrics.get(name)
        return None if v is None else float(v)

    return value


@dataclass(frozen=True)
class Cell:
    """The runs of one data set and one setting in a row: one per seed."""

    runs: tuple[RunRecord, ...]

    def values(self, value: Callable[[RunRecord], float | None]) -> list[float]:
        return [v for v in map(value, self.runs) if v is not None]


@dataclass(frozen=True)
class Row:
    key: tuple[Hashable, ...]
    cells: tuple[Cell, ...]

    @property
    def runs(self) -> list[RunRecord]:
        return [r for c in self.cells for r in c.runs]

    @property
    def seeds(self) -> int:
        """Seeds behind the row: the fewest of its cells (a row is only as complete as its sparsest cell)."""
        return min(len(c.runs) for c in self.cells)

    def columns(self, values: Callable[[RunRecord], Mapping[str, float]]) -> dict[str, list[float]]:
        """Per column, the values `values(run)` gives it over the row's runs."""
        out: dict[str, list[float]] = defaultdict(list)
        for run in self.runs:
            for column, v in values(run).items():
                out[column].append(v)
        return out


def rows(
    runs: Iterable[RunRecord],
    key: Callable[[RunRecord], tuple[Hashable, ...]],
    notes: list[str],
    where: Callable[[RunRecord], str] = lambda r: r.method,
) -> list[Row]:
    """The runs grouped into rows by `key` (in the order first seen) and, within a row, into cells by data set, each
    cell kept to one setting (`where(run)` names the cell in the note that says so)."""
    grouped: dict[tuple[Hashable, ...], dict[tuple[str, str, str], list[RunRecord]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for run in runs:
        grouped[key(run)][data_key(run)].append(run)
    return [
        Row(
            k,
            tuple(
                Cell(tuple(one_setting(members, f"{data_label(members[0])} {where(members[0])}", notes)))
                for members in cells.values()
            ),
        )
        for k, cells in grouped.items()
    ]


def one_setting(runs: list[RunRecord], where: str, notes: list[str]) -> list[RunRecord]:
    """The runs of one cell that share one setting: the setting with the most seeds, then the most recently
    finished; a note in `notes` when there were several."""
    by_setting: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_setting[setting_key(run)].append(run)
    if len(by_setting) == 1:
        return runs
    chosen = max(by_setting.values(), key=lambda rs: (len(rs), max(r.finished_at or r.created_at for r in rs)))
    label = config_labels(runs, scope=lambda r: 0)[chosen[0].id]
    notes.append(f"{where}: {len(by_setting)} settings in the store; showing the one with most seeds ({label})")
    return chosen
