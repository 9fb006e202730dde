"""On-disk layouts, shared by the readers and the data checker, so that what the checker approves is what runs read.

Each reader module describes its layout once, as a function registered in `LAYOUTS` under the reader's name:
`layout(root, phase, options, num_classes) -> Layout` names, for one protocol phase, the `Source`s it reads (split list
files or image folders) without opening any of them. The reader turns that into datasets (`Layout.splits`); the checker
walks the layouts of both phases and every option variant (few-shot: shots x split seeds) and reports each problem with
the exact path to fix. A reader that needs nothing on disk (the built-in demo data) registers no layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pacebench.data.base import Indexed, Splits
from pacebench.data.images import Item, ListDataset, load_rgb
from pacebench.errors import DataError, UsageError
from pacebench.registry import Registry
from pacebench.spec import PHASES
from pacebench.suites import DatasetDef, Suite

T = TypeVar("T")
SHOWN = 3  # problems of one kind listed per split before they are only counted


@dataclass(frozen=True)
class Source:
    """One split as it lies on disk. `path` (a list file or a folder) defines it and is named in every error;
    `read` lists its (image path, label) items, raising `DataError` for a missing file, a malformed line or a label
    out of range. `size` is the size the protocol fixes (VTAB train800: 800), `subset` marks an evaluation set scored
    only on the classes it contains (ImageNet-A and -R). A text source (`images=False`) is one data file whose items
    all name that file: reading it is the whole check."""

    name: str
    path: Path
    read: Callable[[], list[Item]]
    size: int | None = None
    subset: bool = False
    images: bool = True


@dataclass(frozen=True)
class Layout:
    """The sources one phase reads: the training set is the concatenation of `train`."""

    train: tuple[Source, ...]
    evals: dict[str, Source]

    def sources(self) -> list[Source]:
        return [*self.train, *self.evals.values()]

    def splits(self, num_classes: int, train_transform: Callable, eval_transform: Callable) -> Splits:
        evals = {name: src.read() for name, src in self.evals.items()}
        return Splits(
            train=Indexed(ListDataset([item for src in self.train for item in src.read()], train_transform)),
            evals={name: Indexed(ListDataset(items, eval_transform)) for name, items in evals.items()},
            num_classes=num_classes,
            eval_classes={name: sorted({y for _, y in evals[name]}) for name, src in self.evals.items() if src.subset},
        )


LayoutFn = Callable[[Path, str, Mapping[str, Any], int], Layout]
LAYOUTS: Registry[LayoutFn] = Registry("data layout")


def for_phase(table: Mapping[str, T], phase: str) -> T:
    """`table[phase]`, or a clear error for a phase the layout does not know."""
    if phase not in table:
        raise UsageError(f"unknown phase {phase!r}; choose one of: {', '.join(table)}")
    return table[phase]


def option(options: Mapping[str, Any], name: str, default: int | None = None) -> int:
    """An integer data option (shots, split_seed); without a default a missing one is a `DataError` naming it."""
    if name not in options and default is None:
        raise DataError(f"this data set needs the option {name!r}; set it in the suite's [datasets.NAME.options] "
                        "or on the command line")
    value = options.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(f"data option {name!r} must be an integer, got {value!r}") from None


@dataclass(frozen=True)
class CheckResult:
    """What `check_dataset` found for one dataset. `status` is "found" (usable), "missing" (no folder) or "broken";
    each problem names the path to fix; `sizes` maps split names to item counts."""

    dataset: str
    status: str
    problems: list[str]
    sizes: dict[str, int]
    suite: str = ""


def dataset_root(suite: Suite, ds: DatasetDef, data_root: Path) -> Path:
    return Path(data_root) / suite.data_dir / ds.folder


def data_options(ds: DatasetDef, variant: Mapping[str, Any]) -> dict[str, Any]:
    """The options a reader gets: the dataset's fixed `data` table (e.g. FGVC's image_dir) under the run's variant
    (few-shot: shots, split_seed)."""
    return {**ds.data, **variant}


def _capped(problems: list[str], what: str, where: Path) -> list[str]:
    more = len(problems) - SHOWN
    return problems[:SHOWN] + ([f"... and {more} more {what} in {where}"] if more > 0 else [])


def _decode_problem(path: Path) -> str | None:
    try:
        load_rgb(path)
    except DataError as exc:
        return str(exc)
    return None


def find_problems(sources: Iterable[Source], full: bool = False,
                  sizes: bool = True) -> tuple[list[str], dict[str, int]]:
    """Problems of the given sources (each once, each image decoded once) and their item counts. Cheap unless `full`
    (which decodes every image); `sizes` also compares counts with the sizes the protocol fixes."""
    problems: list[str] = []
    counts: dict[str, int] = {}
    seen: set[Path] = set()
    decoded: set[Path] = set()
    for src in sources:
        if src.path in seen:
            continue
        seen.add(src.path)
        try:
            items = src.read()
        except DataError as exc:
            problems.append(str(exc))
            continue
        counts[src.name] = len(items)
        if sizes and src.size is not None and len(items) != src.size:
            problems.append(f"{src.path} lists {len(items)} images, the protocol needs exactly {src.size}; "
                            "use the benchmark's original split files")
        if not src.images:
            continue
        paths = list(dict.fromkeys(path for path, _ in items))  # VTAB's train800val200 repeats train800's files
        missing = [f"missing image {path} listed in {src.path}" for path in paths if not path.is_file()]
        problems += _capped(missing, "missing images", src.path)
        if full:
            todo = [path for path in paths if path not in decoded and path.is_file()]
            decoded.update(todo)
            with ThreadPoolExecutor() as pool:  # Pillow releases the GIL while decoding
                broken = [p for p in pool.map(_decode_problem, todo) if p]
            problems += _capped(broken, "unreadable images", src.path)
    return problems, counts


def _missing_folder(suite: Suite, ds: DatasetDef, root: Path) -> str:
    return (f"missing data folder {root}; put {ds.name} there, or point --root / PACEBENCH_DATA at the folder "
            f"that holds {suite.data_dir or ds.folder}")


def check_dataset(suite: Suite, ds: DatasetDef, data_root: Path, full: bool = False) -> CheckResult:
    """Checks everything the reader would read for `ds` in both phases and every option variant."""
    root = dataset_root(suite, ds, data_root)
    if suite.reader not in LAYOUTS:  # built-in data: nothing on disk to check
        return CheckResult(ds.name, "found", [], {}, suite.name)
    if not root.is_dir():
        return CheckResult(ds.name, "missing", [_missing_folder(suite, ds, root)], {}, suite.name)
    problems: list[str] = []
    sources: list[Source] = []
    for phase in PHASES:
        for variant in ds.variants():
            try:
                sources += LAYOUTS.get(suite.reader)(root, phase, data_options(ds, variant), ds.classes).sources()
            except DataError as exc:
                problems.append(str(exc))
    found, sizes = find_problems(sources, full)
    problems = list(dict.fromkeys(problems + found))
    return CheckResult(ds.name, "broken" if problems else "found", problems, sizes, suite.name)


def check_suite(suite: Suite, data_root: Path, full: bool = False) -> list[CheckResult]:
    return [check_dataset(suite, ds, data_root, full) for ds in suite.datasets.values()]


def require_data(suite: Suite, ds: DatasetDef, data_root: Path, phase: str, options: Mapping[str, Any]) -> None:
    """Fails fast, before a run starts, if a file it will read is absent or a label is out of range; raises a
    `DataError` naming the first problem. Decodes nothing and ignores split sizes, so it takes seconds at most."""
    root = dataset_root(suite, ds, data_root)
    if suite.reader not in LAYOUTS:
        return
    if not root.is_dir():
        raise DataError(_missing_folder(suite, ds, root))
    layout = LAYOUTS.get(suite.reader)(root, phase, data_options(ds, options), ds.classes)
    problems, _ = find_problems(layout.sources(), full=False, sizes=False)
    if problems:
        raise DataError(f"{problems[0]} (all problems: pacebench data check {suite.name})")
