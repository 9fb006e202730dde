"""The paper's reference numbers beside each suite, and the paper's way of averaging over a suite.

A suite file names its reference CSVs in a `[reference]` table (`table`, `hparams`, `ablations`, `backbones`), with
paths relative to the suite file's folder; benchmarks/reference/README.md says what each file holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from pacebench.errors import DataError
from pacebench.plan.suites import Suite
from pacebench.settings import builtin_suites_dir


def reference_path(suite: Suite, kind: str = "table") -> Path | None:
    """Where the suite's `kind` reference CSV lives, or None when the suite names none of that kind."""
    name = suite.reference.get(kind)
    if not name:
        return None
    base = suite.path.parent if suite.path is not None else builtin_suites_dir()
    return base / name


def reference_table(suite: Suite, kind: str = "table") -> pd.DataFrame | None:
    """The suite's `kind` reference CSV as read (no index set), or None when the suite names none of that kind.

    Raises:
        DataError: the suite names a file that is missing or unreadable.
    """
    path = reference_path(suite, kind)
    if path is None:
        return None
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"reference {kind!r} of suite {suite.name} cannot be read from {path}: {exc}") from None


def group_means(values_by_dataset: Mapping[str, float], suite: Suite) -> dict[str, float]:
    """Mean accuracy per dataset group (VTAB-1k: Natural, Specialized, Structured), in the suite's group order.

    `values_by_dataset` may use canonical names or aliases. A group with any dataset missing (or NaN) gets NaN, so
    a partial sweep never passes for a complete one. Datasets without a `group` form one group named "".
    """
    values = {suite.dataset(name).name: float(v) for name, v in values_by_dataset.items()}
    groups: dict[str, list[float]] = {}
    for ds in suite.datasets.values():
        groups.setdefault(ds.group, []).append(values.get(ds.name, math.nan))
    return {group: sum(vs) / len(vs) for group, vs in groups.items()}


def vtab_mean(values_by_dataset: Mapping[str, float], suite: Suite) -> float:
    """The paper's VTAB-1k mean: the mean of the group means, not of the 19 datasets.

    For a suite without groups this is the plain mean over its datasets (the FGVC and few-shot "mean" columns).
    NaN when any dataset of the suite is missing.
    """
    means = list(group_means(values_by_dataset, suite).values())
    return sum(means) / len(means)
