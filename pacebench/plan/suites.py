"""Benchmark suites: declarative TOML files in benchmarks/, one per suite.

Settings resolve in layers, later ones winning: TrainConfig defaults (the authors' VTAB-1k code, shared by every
suite) <- the suite's [train] (only what differs, e.g. 100 epochs) <- the dataset's paper values
([datasets.NAME.train]) <- what the user sets on the command line. Method hyperparameters resolve the same way
through [methods.NAME] and [datasets.NAME.methods.NAME]. The resolved values are stored with each run.

A suite file also says how its paper table is laid out (`[reference.report]`, a `PaperTable`), so a new suite's
table is that file alone. Every table of a suite file is checked for unknown keys: a typo is an error naming it.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

from pacebench.choices import TableLayout
from pacebench.errors import UsageError
from pacebench.plan.spec import TRAIN_FIELDS, TrainConfig, coerce_train
from pacebench.settings import suites_dir


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

    def variants(self) -> list[dict[str, Any]]:
        """The grid of data options (few-shot: shots x split seeds); [{}] when the dataset has none."""
        if not self.options:
            return [{}]
        names = sorted(self.options)
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(self.options[n] for n in names))]


@dataclass(frozen=True)
class PaperTable:
    """How a suite's table in the paper (or the slides) is laid out ([reference.report]); `pacebench report --table
    NAME` shows the measured rows beside the reference CSV's.

    layout (`choices.TableLayout`) "datasets": a column per dataset (its test score), then, with more than one
    dataset, the suite's group means and the mean of the group means (the paper's VTAB-1k convention; a plain mean
    without groups). "evals": a column per evaluation set in `columns` (domain adaptation), then their plain mean.
    "shots": a row per dataset and a column per shot count. `rows` maps a method to the reference CSV's row name;
    `dataset_columns` names a dataset's column where the CSV calls it otherwise (GLUE's "cola_mcc": the metric).
    `number` is the paper's table number (the title "Table N"); a table from elsewhere (the slides' text tables)
    has none and names itself in `title`.
    """

    name: str
    rows: dict[str, str]
    number: int | None = None
    title: str = ""
    layout: TableLayout = TableLayout.datasets
    aliases: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    dataset_columns: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    description: str = ""

    @property
    def heading(self) -> str:
        """What the title starts with: "Table 1", or the table's own `title` when it has no number."""
        return self.title or f"Table {self.number}"


# [reference] keys naming the paper's CSV files
REFERENCE_FILES = ("table", "hparams", "ablations", "backbones", "params")


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
    reference: dict[str, str] = field(default_factory=dict)  # kind (REFERENCE_FILES) -> CSV path beside the file
    paper_table: PaperTable | None = None
    ablation_columns: dict[str, str] = field(default_factory=dict)  # dataset -> its column in Table 6's CSV
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
        from pacebench.core.methods import METHODS

        cls = METHODS.get(method)
        values = {**self.methods.get(method, {}), **ds.methods.get(method, {}), **(overrides or {})}
        return cls.make_config(values).as_dict()


def check_keys(raw: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """Refuses a key that is not in `known`, naming it and the table it sits in."""
    allowed = list(known)
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(allowed)}")


def _keys(cls: type, *leave_out: str) -> list[str]:
    """The TOML keys of a table read into dataclass `cls`: its field names."""
    return [f.name for f in fields(cls) if f.name not in leave_out]


# the type each dataset key must have in a suite file (classes is checked on its own: a positive integer)
DATASET_TYPES: dict[str, tuple[type, str]] = {"folder": (str, "a string"), "group": (str, "a string"),
                                              "aliases": (list, "a list of names"), "train": (dict, "a table"),
                                              "methods": (dict, "a table"), "options": (dict, "a table"),
                                              "data": (dict, "a table")}


def _dataset(name: str, raw: dict[str, Any], where: str) -> DatasetDef:
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: datasets.{name} must be a table ([datasets.{name}])")
    table = f"{where} [datasets.{name}]"
    check_keys(raw, _keys(DatasetDef, "name"), table)
    wrong = [(k, rule) for k, (kind, rule) in DATASET_TYPES.items() if k in raw and not isinstance(raw[k], kind)]
    if wrong:
        raise UsageError(f"{table}: {wrong[0][0]} must be {wrong[0][1]}, got {raw[wrong[0][0]]!r}")
    check_keys(raw.get("train", {}), TRAIN_FIELDS, f"{where} [datasets.{name}.train]")
    if "classes" not in raw:
        raise UsageError(f"dataset {name} has no 'classes' in its suite file")
    if type(raw["classes"]) is not int or raw["classes"] < 1:
        raise UsageError(f"{table}: classes must be a positive integer, got {raw['classes']!r}")
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
    )


def _paper_table(raw: dict[str, Any], where: str) -> PaperTable:
    check_keys(raw, _keys(PaperTable), where)
    missing = [k for k in ("name", "rows") if k not in raw]
    if missing:
        raise UsageError(f"{where} has no {missing[0]!r} key")
    if "number" not in raw and "title" not in raw:
        raise UsageError(f"{where} has neither 'number' (the paper's table number) nor 'title'; add one")
    layout = raw.get("layout", TableLayout.datasets)
    if layout not in tuple(TableLayout):
        raise UsageError(f"{where}: layout must be one of {', '.join(TableLayout)}, got {layout!r}")
    return PaperTable(name=raw["name"], rows=dict(raw["rows"]),
                      number=int(raw["number"]) if "number" in raw else None, title=raw.get("title", ""),
                      layout=TableLayout(layout), aliases=tuple(str(a) for a in raw.get("aliases", ())),
                      columns=tuple(raw.get("columns", ())), dataset_columns=dict(raw.get("dataset_columns", {})),
                      notes=tuple(raw.get("notes", ())), description=raw.get("description", ""))


def parse_suite(path: Path) -> Suite:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"suite file {path} is not valid TOML: {exc}") from None
    where = f"suite file {path}"
    check_keys(raw, _keys(Suite, "path", "paper_table", "ablation_columns"), where)
    missing = [k for k in ("reader", "backbone") if k not in raw]
    if missing:
        raise UsageError(f"{where} has no {missing[0]!r} key")
    check_keys(raw.get("train", {}), TRAIN_FIELDS, f"{where} [train]")
    reference = dict(raw.get("reference", {}))
    check_keys(reference, [*REFERENCE_FILES, "report", "ablation_columns"], f"{where} [reference]")
    report = reference.pop("report", None)
    columns = reference.pop("ablation_columns", {})
    suite = Suite(
        name=raw.get("name", path.stem),
        description=raw.get("description", ""),
        reader=raw["reader"],
        data_dir=raw.get("data_dir", ""),
        backbone=raw["backbone"],
        datasets={n: _dataset(n, d, where) for n, d in raw.get("datasets", {}).items()},
        train=dict(raw.get("train", {})),
        methods={k: dict(v) for k, v in raw.get("methods", {}).items()},
        reference=reference,
        paper_table=None if report is None else _paper_table(report, f"{where} [reference.report]"),
        ablation_columns=dict(columns),
        path=path,
    )
    check_keys(suite.ablation_columns, suite.datasets, f"{where} [reference.ablation_columns]")
    if suite.paper_table is not None:
        check_keys(suite.paper_table.dataset_columns, suite.datasets, f"{where} [reference.report.dataset_columns]")
    names = [n for ds in suite.datasets.values() for n in (ds.name, *ds.aliases)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"suite file {path}: dataset name or alias {twice[0]!r} is used twice")
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
