"""Benchmark suites: declarative TOML files in benchmarks/, one per suite.

Settings resolve in layers, later ones winning: TrainConfig defaults <- the suite's [train] <- the dataset's paper
values ([datasets.NAME.train]) <- what the user sets on the command line. Method hyperparameters resolve the same
way through [methods.NAME] and [datasets.NAME.methods.NAME]. The resolved values are stored with each run.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pacebench.errors import UsageError
from pacebench.settings import suites_dir
from pacebench.spec import TrainConfig, coerce_train


@dataclass(frozen=True)
class DatasetDef:
    """One dataset of a suite: its canonical name, on-disk folder, class count and paper settings."""

    name: str
    classes: int
    folder: str
    aliases: tuple[str, ...] = ()
    group: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, list[Any]] = field(default_factory=dict)  # a grid: each combination is its own run
    data: dict[str, Any] = field(default_factory=dict)  # fixed reader options (e.g. FGVC's image_dir)
    extra: dict[str, Any] = field(default_factory=dict)  # anything else, for the reader of the file

    def variants(self) -> list[dict[str, Any]]:
        """The grid of data options (few-shot: shots x split seeds); [{}] when the dataset has none."""
        if not self.options:
            return [{}]
        names = sorted(self.options)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(self.options[n] for n in names))]


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    reader: str
    data_dir: str
    backbone: str
    datasets: dict[str, DatasetDef]
    train: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def dataset(self, name: str) -> DatasetDef:
        """Looks a dataset up by canonical name or alias."""
        for ds in self.datasets.values():
            if name == ds.name or name in ds.aliases:
                return ds
        raise UsageError(f"unknown dataset {name!r} in suite {self.name}; choose from: {', '.join(self.datasets)}")

    def select(self, names: list[str] | None) -> list[DatasetDef]:
        return [self.dataset(n) for n in names] if names else list(self.datasets.values())

    def resolve_train(self, ds: DatasetDef, overrides: dict[str, Any] | None = None) -> TrainConfig:
        layers = {**coerce_train(self.train), **coerce_train(ds.train), **coerce_train(overrides or {})}
        return TrainConfig(**layers)

    def resolve_method(self, ds: DatasetDef, method: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Suite and dataset defaults for `method`, then the user's values; validated by the method's config."""
        from pacebench.methods import METHODS

        cls = METHODS.get(method)
        values = {**self.methods.get(method, {}), **ds.methods.get(method, {}), **(overrides or {})}
        return cls.make_config(values).as_dict()


# the type each dataset key must have in a suite file (classes is checked on its own: a positive integer)
DATASET_TYPES: dict[str, tuple[type, str]] = {"folder": (str, "a string"), "group": (str, "a string"),
                                              "aliases": (list, "a list of names"), "train": (dict, "a table"),
                                              "methods": (dict, "a table"), "options": (dict, "a table"),
                                              "data": (dict, "a table")}


def _dataset(name: str, raw: dict[str, Any]) -> DatasetDef:
    known = {"classes", "folder", "aliases", "group", "train", "methods", "options", "data"}
    if not isinstance(raw, dict):
        raise UsageError(f"dataset {name} must be a table ([datasets.{name}]) in its suite file")
    if "classes" not in raw:
        raise UsageError(f"dataset {name} has no 'classes'")
    if type(raw["classes"]) is not int or raw["classes"] < 1:
        raise UsageError(f"dataset {name}: classes must be a positive integer, got {raw['classes']!r}")
    wrong = [(k, rule) for k, (kind, rule) in DATASET_TYPES.items() if k in raw and not isinstance(raw[k], kind)]
    if wrong:
        raise UsageError(f"dataset {name}: {wrong[0][0]} must be {wrong[0][1]}, got {raw[wrong[0][0]]!r}")
    bad = [k for k, v in raw.get("options", {}).items() if not isinstance(v, list)]
    if bad:
        raise UsageError(f"dataset {name}: option {bad[0]!r} must be a list (a grid of values), e.g. [16]")
    return DatasetDef(
        name=name,
        classes=int(raw["classes"]),
        folder=raw.get("folder", name),
        aliases=tuple(raw.get("aliases", ())),
        group=raw.get("group", ""),
        train=dict(raw.get("train", {})),
        methods={k: dict(v) for k, v in raw.get("methods", {}).items()},
        options={k: list(v) for k, v in raw.get("options", {}).items()},
        data=dict(raw.get("data", {})),
        extra={k: v for k, v in raw.items() if k not in known},
    )


def parse_suite(path: Path) -> Suite:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"suite file {path} is not valid TOML: {exc}") from None
    missing = [k for k in ("reader", "backbone") if k not in raw]
    if missing:
        raise UsageError(f"suite file {path} has no {missing[0]!r} key")
    try:
        return _suite(path, raw)
    except UsageError as exc:
        raise UsageError(f"suite file {path}: {exc}") from None


def _suite(path: Path, raw: dict[str, Any]) -> Suite:
    suite = Suite(
        name=raw.get("name", path.stem),
        description=raw.get("description", ""),
        reader=raw["reader"],
        data_dir=raw.get("data_dir", ""),
        backbone=raw["backbone"],
        datasets={n: _dataset(n, d) for n, d in raw.get("datasets", {}).items()},
        train=dict(raw.get("train", {})),
        methods={k: dict(v) for k, v in raw.get("methods", {}).items()},
        reference=dict(raw.get("reference", {})),
        path=path,
    )
    names = [n for ds in suite.datasets.values() for n in (ds.name, *ds.aliases)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"dataset name or alias {twice[0]!r} is used twice")
    return suite


@cache
def all_suites() -> dict[str, Suite]:
    return {s.name: s for s in map(parse_suite, sorted(suites_dir().glob("*.toml")))}


def load_suite(name: str) -> Suite:
    suites = all_suites()
    if name not in suites:
        known = ", ".join(suites) or f"(no suite files in {suites_dir()})"
        raise UsageError(f"unknown suite {name!r}; choose one of: {known}")
    return suites[name]
