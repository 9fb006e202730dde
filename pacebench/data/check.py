"""The data checker (`pacebench data check` and the pre-flight check of `pacebench run`).

It walks the layouts (see `base`) of both phases and every option variant (few-shot: shots x split seeds) and reports
each problem with the exact path to fix, reading images from their folder or from the HDF5 pack that replaces it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacebench.data.base import READERS, Source, dataset_root, layout_of
from pacebench.errors import DataError
from pacebench.plan.spec import PHASES
from pacebench.plan.suites import DatasetDef, Suite

SHOWN = 3  # problems of one kind listed per split before they are only counted


@dataclass(frozen=True)
class CheckResult:
    """What `check_dataset` found for one dataset. `status` is "found" (usable), "missing" (no folder) or "broken";
    each problem names the path to fix; `sizes` maps split names to item counts."""

    dataset: str
    status: str
    problems: list[str]
    sizes: dict[str, int]
    suite: str = ""
    notes: list[str] = field(default_factory=list)  # how it is read: HDF5 packs, renumbered labels


def _capped(problems: list[str], what: str, where: Path) -> list[str]:
    more = len(problems) - SHOWN
    return problems[:SHOWN] + ([f"... and {more} more {what} in {where}"] if more > 0 else [])


def _decode_problem(src: Source, path: Path) -> str | None:
    try:
        src.images.load(path)
    except DataError as exc:
        return str(exc)
    return None


def find_problems(
    sources: Iterable[Source], full: bool = False, sizes: bool = True
) -> tuple[list[str], dict[str, int]]:
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
            problems.append(
                f"{src.path} lists {len(items)} images, the protocol needs exactly {src.size}; "
                "use the benchmark's original split files"
            )
        absent = src.images.missing()
        if absent:  # one line for the folder (and its pack), not one per image
            problems.append(absent)
            continue
        paths = list(dict.fromkeys(path for path, _ in items))  # VTAB's train800val200 repeats train800's files
        try:
            present = {path: src.images.exists(path) for path in paths}
        except DataError as exc:  # an unreadable pack, or a listed path outside the image folder
            problems.append(str(exc))
            continue
        missing = [
            f"missing image {src.images.where(path)} listed in {src.path}" for path, ok in present.items() if not ok
        ]
        problems += _capped(missing, "missing images", src.path)
        if full:
            todo = [path for path in paths if path not in decoded and present[path]]
            decoded.update(todo)
            with ThreadPoolExecutor() as pool:  # Pillow releases the GIL while decoding
                broken = [p for p in pool.map(lambda path, src=src: _decode_problem(src, path), todo) if p]
            problems += _capped(broken, "unreadable images", src.path)
    return problems, counts


def _missing_folder(suite: Suite, ds: DatasetDef, root: Path) -> str:
    return (
        f"missing data folder {root}; put {ds.name} there, or point --data-root / PACEBENCH_DATA at the folder "
        f"that holds {suite.data_dir or ds.folder}"
    )


def check_dataset(suite: Suite, ds: DatasetDef, data_root: Path, full: bool = False) -> CheckResult:
    """Checks everything the reader would read for `ds` in both phases and every option variant."""
    root = dataset_root(suite, ds, data_root)
    if not READERS.get(suite.reader).needs_files:  # built-in data: nothing on disk to check
        return CheckResult(ds.name, "found", [], {}, suite.name)
    if not root.is_dir():
        return CheckResult(ds.name, "missing", [_missing_folder(suite, ds, root)], {}, suite.name)
    problems: list[str] = []
    sources: list[Source] = []
    notes: list[str] = []
    for phase in PHASES:
        for variant in ds.variants():
            try:
                layout = layout_of(suite, ds, data_root, phase, variant)
                sources += layout.sources()
                notes += _label_note(layout.label_ids)
            except DataError as exc:
                problems.append(str(exc))
    found, sizes = find_problems(sources, full)
    problems = list(dict.fromkeys(problems + found))
    notes += [f"images from the HDF5 pack {src.images.pack}" for src in sources if src.images.packed]
    return CheckResult(
        ds.name, "broken" if problems else "found", problems, sizes, suite.name, list(dict.fromkeys(notes))
    )


def _label_note(label_ids: Callable[[], list[int]] | None) -> list[str]:
    """'labels renumbered: 1->0, 2->1, ...' when the layout maps the data set's own label ids to class indices."""
    if label_ids is None:
        return []
    try:
        ids = label_ids()
    except DataError:
        return []  # the split file's problem is reported with its sources
    if ids == list(range(len(ids))):
        return []
    pairs = [f"{label}->{i}" for i, label in enumerate(ids)]
    shown = ", ".join(pairs[:SHOWN]) + (f", ... ({len(ids)} ids)" if len(pairs) > SHOWN else "")
    return [f"labels renumbered (sorted train ids -> class index): {shown}"]


def check_suite(suite: Suite, data_root: Path, full: bool = False) -> list[CheckResult]:
    return [check_dataset(suite, ds, data_root, full) for ds in suite.datasets.values()]


def require_data(suite: Suite, ds: DatasetDef, data_root: Path, phase: str, options: Mapping[str, Any]) -> None:
    """Fails fast, before a run starts, if a file it will read is absent or a label is out of range; raises a
    `DataError` naming the first problem. Decodes nothing and ignores split sizes, so it takes seconds at most."""
    root = dataset_root(suite, ds, data_root)
    if not READERS.get(suite.reader).needs_files:
        return
    if not root.is_dir():
        raise DataError(_missing_folder(suite, ds, root))
    layout = layout_of(suite, ds, data_root, phase, options)
    problems, _ = find_problems(layout.sources(), full=False, sizes=False)
    if problems:
        raise DataError(f"{problems[0]} (all problems: pacebench data check {suite.name})")
