"""Benchmark suites: declarative TOML files in benchmarks/, one per suite.

Settings resolve in layers, later ones winning: TrainConfig defaults (the authors' VTAB-1k code, shared by every
suite) <- the suite's [train] (only what differs, e.g. 100 epochs) <- the dataset's paper values
([datasets.NAME.train]) <- what the user sets on the command line. Method hyperparameters resolve the same way
through [methods.NAME] and [datasets.NAME.methods.NAME]. The resolved values are stored with each run.

An adapter's own settings (`spec.ADAPTER_SETTINGS`: its size `rank`, `adapter_scale`, `adapter_dropout`) belong to
one adapter kind: the suite's and dataset's values apply while the run trains the adapter they name (the suite's
own); a run of another kind (`--adapters`, `-t adapter=`) takes that kind's values from [adapters.KIND] and
[datasets.NAME.adapters.KIND] (e.g. Table 8's LoRA-only rank), then the kind's defaults.

A suite file also says how its paper table is laid out (`[reference.report]`, a `PaperTable`), so a new suite's
table is that file alone. Every table of a suite file is checked for unknown keys: a typo is an error naming it.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

from pacebench.choices import TableLayout
from pacebench.errors import UsageError
from pacebench.plan.spec import ADAPTER_SETTINGS, DEFAULT_ADAPTER, TRAIN_FIELDS, TrainConfig, coerce_train
from pacebench.settings import SUITES_ENV, builtin_suites_dir, user_suites_dir


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
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)  # adapter kind -> its training settings here

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
    `rows_by_adapter` maps an adapter kind to {method: row name} for runs of that kind (Table 1's Full, LoRA, ...;
    Table 2's LoRA, VPT, LoRA+VPT with and without PACE).
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
    rows_by_adapter: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def heading(self) -> str:
        """What the title starts with: "Table 1", or the table's own `title` when it has no number."""
        return self.title or f"Table {self.number}"


# [reference] keys naming the paper's CSV files
REFERENCE_FILES = ("table", "hparams", "ablations", "backbones", "params", "adapter_params")


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
    adapters: dict[str, dict[str, Any]] = field(default_factory=dict)  # adapter kind -> its settings in this suite
    reference: dict[str, str] = field(default_factory=dict)  # kind (REFERENCE_FILES) -> CSV path beside the file
    paper_table: PaperTable | None = None
    ablation_columns: dict[str, str] = field(default_factory=dict)  # dataset -> its column in Table 6's CSV
    path: Path | None = None

    def dataset(self, name: str) -> DatasetDef:
        """Looks a dataset up by canonical name or alias."""
        for ds in self.datasets.values():
            if name == ds.name or name in ds.aliases:
                return ds
        hint = f" ({name} is a suite: pass --suite {name})" if name in all_suites() else ""
        raise UsageError(
            f"unknown dataset {name!r} in suite {self.name}{hint}; choose from: {', '.join(self.datasets)}"
        )

    def select(self, names: list[str] | None) -> list[DatasetDef]:
        return [self.dataset(n) for n in names] if names else list(self.datasets.values())

    def resolve_train(
        self,
        ds: DatasetDef,
        overrides: dict[str, Any] | None = None,
        kind_defaults: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> TrainConfig:
        """The run's training settings (see the module docstring). `kind_defaults(adapter)` gives a kind's own
        defaults for the adapter settings nothing else sets (`adapters.train_defaults`; planning passes it)."""
        adapter, layers = self.train_layers(ds, overrides)
        defaults = kind_defaults(adapter) if kind_defaults else {}
        return TrainConfig(**{**coerce_train({k: v for k, v in defaults.items() if k not in layers}), **layers})

    def train_layers(self, ds: DatasetDef, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """(the run's adapter kind, the training settings that the suite, `ds` or the user set explicitly for it),
        before the kind's own defaults fill in the rest."""
        own = {**coerce_train(self.train), **coerce_train(ds.train)}
        user = coerce_train(overrides or {})
        adapter = user.get("adapter", own.get("adapter", DEFAULT_ADAPTER))
        if adapter != own.get("adapter", DEFAULT_ADAPTER):  # the suite's size and options are its adapter's
            own = {k: v for k, v in own.items() if k not in ADAPTER_SETTINGS}
        per_kind = {**coerce_train(self.adapters.get(adapter, {})), **coerce_train(ds.adapters.get(adapter, {}))}
        return adapter, {**own, **per_kind, **user}

    def own_adapter(self, ds: DatasetDef) -> str:
        """The adapter kind the suite itself trains `ds` with (the paper's baseline for it)."""
        return str({**self.train, **ds.train}.get("adapter", DEFAULT_ADAPTER))

    def resolve_method(self, ds: DatasetDef, method: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Suite and dataset defaults for `method`, then the user's values; validated by the method's config."""
        from pacebench.core.methods import METHODS  # lazy: torch; `pacebench suites` reads suite files without it

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
DATASET_TYPES: dict[str, tuple[type, str]] = {
    "folder": (str, "a string"),
    "group": (str, "a string"),
    "aliases": (list, "a list of names"),
    "train": (dict, "a table"),
    "methods": (dict, "a table"),
    "options": (dict, "a table"),
    "data": (dict, "a table"),
    "adapters": (dict, "a table"),
}
ADAPTER_KEYS = [k for k in TRAIN_FIELDS if k != "adapter"]  # what an [adapters.KIND] table may set


def _adapter_tables(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    """[adapters.KIND] tables: each a table of training settings (the kind names are checked when planning)."""
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise UsageError(f"{where}: adapters must hold one table per adapter kind, e.g. [adapters.lora_add] rank = 4")
    for kind, table in raw.items():
        check_keys(table, ADAPTER_KEYS, f"{where} [adapters.{kind}]")
    return {k: dict(v) for k, v in raw.items()}


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # suite and dataset names become file names (image cache, figures)


def check_name(name: str, what: str, where: str) -> None:
    if not NAME.fullmatch(name) or ".." in name:
        raise UsageError(
            f"{where}: {what} name {name!r} is not a plain name; use letters, digits, '_', '-' and "
            "'.' (it becomes part of file names)"
        )


def _dataset(name: str, raw: dict[str, Any], where: str) -> DatasetDef:
    check_name(name, "dataset", where)
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
        adapters=_adapter_tables(raw.get("adapters", {}), f"{where} [datasets.{name}]"),
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
    by_adapter = raw.get("rows_by_adapter", {})
    if not isinstance(by_adapter, dict) or not all(isinstance(v, dict) for v in by_adapter.values()):
        raise UsageError(f'{where}: rows_by_adapter maps an adapter kind to {{method = "paper row"}}')
    return PaperTable(
        name=raw["name"],
        rows=dict(raw["rows"]),
        rows_by_adapter={k: dict(v) for k, v in by_adapter.items()},
        number=int(raw["number"]) if "number" in raw else None,
        title=raw.get("title", ""),
        layout=TableLayout(layout),
        aliases=tuple(str(a) for a in raw.get("aliases", ())),
        columns=tuple(raw.get("columns", ())),
        dataset_columns=dict(raw.get("dataset_columns", {})),
        notes=tuple(raw.get("notes", ())),
        description=raw.get("description", ""),
    )


def parse_suite(path: Path) -> Suite:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"suite file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
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
        adapters=_adapter_tables(raw.get("adapters", {}), where),
        reference=reference,
        paper_table=None if report is None else _paper_table(report, f"{where} [reference.report]"),
        ablation_columns=dict(columns),
        path=path,
    )
    check_name(suite.name, "suite", where)
    check_keys(suite.ablation_columns, suite.datasets, f"{where} [reference.ablation_columns]")
    if suite.paper_table is not None:
        check_keys(suite.paper_table.dataset_columns, suite.datasets, f"{where} [reference.report.dataset_columns]")
    names = [n for ds in suite.datasets.values() for n in (ds.name, *ds.aliases)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"suite file {path}: dataset name or alias {twice[0]!r} is used twice")
    return suite


def _folder(folder: Path) -> dict[str, Suite]:
    """The suites of one folder by name; two files of one folder naming the same suite is an error."""
    suites: dict[str, Suite] = {}
    for path in sorted(folder.glob("*.toml")):
        suite = parse_suite(path)
        if suite.name in suites:
            raise UsageError(
                f"suite files {suites[suite.name].path} and {path} both define suite {suite.name!r}; "
                "rename one (its `name` key, or the file when it has none)"
            )
        suites[suite.name] = suite
    return suites


@cache
def _suites(user: Path | None) -> dict[str, Suite]:
    suites = _folder(builtin_suites_dir())
    if user is not None:
        if not user.is_dir():
            raise UsageError(
                f"suite folder {user} does not exist ({SUITES_ENV} or --suites); name a folder of suite .toml files"
            )
        suites.update(_folder(user))  # a user suite with a built-in's name replaces it (`pacebench suites` says so)
    return suites


def all_suites() -> dict[str, Suite]:
    """The built-in suites, then the user's folder's ($PACEBENCH_SUITES / --suites), which add or replace."""
    return _suites(user_suites_dir())


# tests reset it after changing the folder; mypy cannot type an attribute set on a function (python/mypy#2087)
all_suites.cache_clear = _suites.cache_clear  # type: ignore[attr-defined]


def load_suite(name: str) -> Suite:
    suites = all_suites()
    if name not in suites:
        raise UsageError(f"unknown suite {name!r}; choose one of: {', '.join(suites)}")
    return suites[name]
