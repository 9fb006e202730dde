"""The contract between data readers, the data checker and the training loop.

A reader turns one on-disk layout into `Splits`: a training set and one or more evaluation sets, each yielding
`(image, label, index)` (the index lets `pace_fast` keep a per-sample history). Which splits are read depends on
the protocol phase: phase "tune" trains on the train split and scores on the validation split, phase "final" trains
on train+val and scores on test. A reader for phase "tune" must never open a test list.

Each reader module describes its layout once, as a function `layout(root, phase, options, num_classes) -> Layout`
that names, for one protocol phase, the `Source`s it reads (split list files or image folders) without opening any
of them, and registers it with its transforms (`register_layout`). The same `Layout` feeds the reader
(`Layout.splits`) and the checker (`pacebench data check`), so what the checker approves is what runs read. A reader
that needs nothing on disk (the built-in demo data) registers its read function instead (`register_builtin`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from torch.utils.data import Dataset

from pacebench.choices import Phase
from pacebench.core.backbones import IMAGENET_MEAN, IMAGENET_STD, normalization
from pacebench.data.cache import CachedImages
from pacebench.data.images import ImageDir, Indexed, Item, ListDataset
from pacebench.data.transforms import CachePlan, train_transform
from pacebench.errors import DataError, UsageError
from pacebench.plan.spec import PHASES
from pacebench.plan.suites import load_suite
from pacebench.registry import Registry

if TYPE_CHECKING:
    from pacebench.plan.spec import RunSpec
    from pacebench.plan.suites import DatasetDef, Suite

T = TypeVar("T")


@dataclass(frozen=True)
class DataRequest:
    """What the training loop asks a reader for."""

    root: Path  # the dataset's own folder, e.g. <data root>/vtab-1k/cifar
    dataset: str  # canonical dataset name of the suite
    phase: str  # "tune" or "final"
    num_classes: int
    image_size: int = 224
    options: dict[str, Any] = field(default_factory=dict)  # e.g. shots, split_seed for few-shot
    mean: tuple[float, ...] = IMAGENET_MEAN  # the backbone's normalisation (see backbones.normalization)
    std: tuple[float, ...] = IMAGENET_STD
    augment: str = "standard"  # training augmentation (see pacebench.data.transforms)
    cache_dir: Path | None = None  # where a reader may keep decoded images (data.cache); None: decode every epoch


@dataclass
class Splits:
    """Datasets for one run. `evals` maps a name ("val", "test", "imagenet_r", ...) to a dataset; `eval_classes`
    optionally restricts the logits of an evaluation set to a subset of classes (ImageNet-A and -R); `label_ids`
    are the data set's own label ids in class-index order when the reader renumbered them (FGVC), else None;
    `example_ids` name each evaluation example (its image's path inside the image folder, or its index in the data
    set), so that two runs' predictions are compared only on the same examples."""

    train: Dataset
    evals: dict[str, Dataset]
    num_classes: int
    eval_classes: dict[str, Sequence[int]] = field(default_factory=dict)
    label_ids: list[int] | None = None
    example_ids: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """One split as it lies on disk. `path` (a list file or a folder) defines it and is named in every error;
    `read` lists its (image path, label) items, raising `DataError` for a missing file, a malformed line or a label
    out of range; `images` says where those images lie (a folder or its HDF5 pack). `size` is the size the protocol
    fixes (VTAB train800: 800), `subset` marks an evaluation set scored only on the classes it contains
    (ImageNet-A and -R)."""

    name: str
    path: Path
    read: Callable[[], list[Item]]
    images: ImageDir
    size: int | None = None
    subset: bool = False


@dataclass(frozen=True)
class Layout:
    """The sources one phase reads: the training set is the concatenation of `train`. `label_ids`, when the layout
    renumbers labels, gives the data set's own ids in class-index order (read on first call)."""

    train: tuple[Source, ...]
    evals: dict[str, Source]
    label_ids: Callable[[], list[int]] | None = None

    def sources(self) -> list[Source]:
        return [*self.train, *self.evals.values()]

    def splits(
        self,
        num_classes: int,
        train_transform: Callable,
        eval_transform: Callable,
        cached: Callable[[list[Item], ImageDir, str], Dataset] | None = None,
    ) -> Splits:
        """Datasets decoding each image when fetched, or, with `cached` (items, images, name) -> dataset, read
        from a cache of decoded images (data.cache)."""
        if len({src.images for src in self.train}) != 1:
            raise ValueError("the train sources of one layout must share their image folder")
        evals = {name: src.read() for name, src in self.evals.items()}
        train = [item for src in self.train for item in src.read()]
        ids = self.label_ids() if self.label_ids else None
        if cached is None:
            train_set: Dataset = ListDataset(train, train_transform, self.train[0].images)
            eval_sets: dict[str, Dataset] = {
                name: ListDataset(items, eval_transform, self.evals[name].images) for name, items in evals.items()
            }
        else:
            train_set = cached(train, self.train[0].images, "train")
            eval_sets = {name: cached(items, self.evals[name].images, name) for name, items in evals.items()}
        return Splits(
            train=Indexed(train_set),
            evals={name: Indexed(d) for name, d in eval_sets.items()},
            num_classes=num_classes,
            eval_classes={name: sorted({y for _, y in evals[name]}) for name, src in self.evals.items() if src.subset},
            label_ids=None if ids == list(range(len(ids or []))) else ids,
            example_ids={
                name: [self.evals[name].images.relative(path) for path, _ in items] for name, items in evals.items()
            },
        )


LayoutFn = Callable[[Path, str, Mapping[str, Any], int], Layout]
SplitNames = Mapping[str, tuple[str, tuple[str, ...]]]  # phase -> (what it trains on, what it scores on)
GENERIC_SPLITS: SplitNames = {
    "tune": ("the train split", ("the validation split",)),
    "final": ("train+val", ("the test split",)),
}
TransformFn = Callable[..., Callable]  # (image size, mean, std) -> transform
CacheFn = Callable[[int], CachePlan]  # image size -> how its transforms split around the cached resize


@dataclass(frozen=True)
class Reader:
    """How one suite's data is read: from files described by `layout`, or built in (`layout` is None; nothing on
    disk to check). Call it with a `DataRequest` to get the `Splits`."""

    read: Callable[[DataRequest], Splits]
    layout: LayoutFn | None = None
    kind: str = "image"  # which trainer reads it (`training.TRAINERS`): "image", or "text" for the text suites
    fingerprint: Callable[[DatasetDef], str] | None = None  # data built into the package: its identity
    check: Callable[[Mapping[str, Any]], None] | None = None  # refuses data options it cannot honour, at planning
    augments: tuple[str, ...] | None = None  # the training augmentations it can apply (None: every one)
    splits: SplitNames = field(default_factory=lambda: GENERIC_SPLITS)  # the layout's names, for what users read

    @property
    def needs_files(self) -> bool:
        """Whether the data lies under the data root (and `data check` and the pre-flight check look at it)."""
        return self.layout is not None

    def __call__(self, request: DataRequest) -> Splits:
        return self.read(request)


READERS: Registry[Reader] = Registry("data reader")


def _read_layout(
    layout: LayoutFn, standard: TransformFn, evaluate: TransformFn, plan: CacheFn | None, request: DataRequest
) -> Splits:
    size, mean, std = request.image_size, request.mean, request.std
    cached = None
    if plan is not None and request.cache_dir is not None and request.augment == "standard":
        cache_dir, prefix, steps = request.cache_dir, request.dataset, plan(size)

        def cached(items: list[Item], images: ImageDir, name: str) -> Dataset:
            return CachedImages(items, steps, name == "train", cache_dir, f"{prefix}-{name}", images)

    return layout(request.root, request.phase, request.options, request.num_classes).splits(
        request.num_classes,
        train_transform(request.augment, size, mean, std, standard),
        evaluate(size, mean, std),
        cached,
    )


def register_layout(
    name: str,
    standard: TransformFn,
    evaluate: TransformFn | None = None,
    cache: CacheFn | None = None,
    splits: SplitNames = GENERIC_SPLITS,
) -> Callable[[LayoutFn], LayoutFn]:
    """Registers a layout function as the reader `name`, training with its `standard` transform (unless the run
    asks for another augmentation) and evaluating with `evaluate` (the same one when not given, as VTAB's protocol
    has it). Each is called as `transform(image size, mean, std)`. `cache(image size)` splits those transforms into
    a cached resize and a tensor stage (`transforms.CachePlan`), so a run that asks for a cache decodes each image
    once. `splits` names, per phase, what the layout trains on and scores on (for the plan's phase lines)."""

    def decorator(layout: LayoutFn) -> LayoutFn:
        read = partial(_read_layout, layout, standard, evaluate or standard, cache)
        READERS.register(name)(Reader(read, layout, splits=splits))
        return layout

    return decorator


def register_builtin(
    name: str,
    fingerprint: Callable[[DatasetDef], str],
    check: Callable[[Mapping[str, Any]], None] | None = None,
    splits: SplitNames = GENERIC_SPLITS,
    augments: tuple[str, ...] | None = None,
) -> Callable[[Callable[[DataRequest], Splits]], Callable[[DataRequest], Splits]]:
    """Registers a reader whose data is built into the package (nothing under the data root); `fingerprint` says
    which data it builds (`data.fingerprint`), `check` refuses data options it cannot honour, `augments` lists the
    training augmentations it can apply (planning refuses the others)."""

    def decorator(read: Callable[[DataRequest], Splits]) -> Callable[[DataRequest], Splits]:
        READERS.register(name)(Reader(read, fingerprint=fingerprint, check=check, splits=splits, augments=augments))
        return read

    return decorator


def for_phase(table: Mapping[str, T], phase: str) -> T:
    """`table[phase]`, or a clear error for a phase the layout does not know."""
    if phase not in table:
        raise UsageError(f"unknown phase {phase!r}; choose one of: {', '.join(table)}")
    return table[phase]


def option(options: Mapping[str, Any], name: str, default: int | None = None) -> int:
    """An integer data option (shots, split_seed); without a default a missing one is a `DataError` naming it."""
    if name not in options and default is None:
        raise DataError(
            f"this data set needs the option {name!r}; set it in the suite's [datasets.NAME.options] "
            "or on the command line"
        )
    value = options.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(f"data option {name!r} must be an integer, got {value!r}") from None


def phase_line(suite: Suite, phase: str) -> str:
    """What `phase` of `suite` trains on and scores on, in the suite's own split names: "phase 2: train on
    train800val200, score on test" (VTAB-1k)."""
    train, evals = for_phase(READERS.get(suite.reader).splits, phase)
    return f"{PHASES[Phase(phase)]}: train on {train}, score on {', '.join(evals)}"


# ---- where a suite's data set lies ----------------------------------------------------------------------------
def dataset_root(suite: Suite, ds: DatasetDef, data_root: Path) -> Path:
    return Path(data_root) / suite.data_dir / ds.folder


def data_options(ds: DatasetDef, variant: Mapping[str, Any]) -> dict[str, Any]:
    """The options a reader gets: the dataset's fixed `data` table (e.g. FGVC's image_dir) under the run's variant
    (few-shot: shots, split_seed)."""
    return {**ds.data, **variant}


def layout_of(suite: Suite, ds: DatasetDef, data_root: Path, phase: str, variant: Mapping[str, Any]) -> Layout:
    """The layout of `ds` for one phase and data variant; only for readers that need files."""
    layout = READERS.get(suite.reader).layout
    assert layout is not None, f"reader {suite.reader} has no files on disk"
    return layout(dataset_root(suite, ds, data_root), phase, data_options(ds, variant), ds.classes)


def load_splits(spec: RunSpec, data_root: Path, cache_dir: Path | None = None) -> Splits:
    """The datasets of one run, read from under `data_root` as its suite says, normalised with the backbone's
    mean/std and augmented as `spec.train.augment` says; with `cache_dir`, cacheable splits come as uint8 images
    decoded once (the trainer normalises them on the device)."""
    suite = load_suite(spec.suite)
    ds = suite.dataset(spec.dataset)
    mean, std = normalization(spec.backbone)
    request = DataRequest(
        root=dataset_root(suite, ds, data_root),
        dataset=ds.name,
        phase=spec.phase,
        num_classes=ds.classes,
        image_size=spec.train.image_size,
        options=data_options(ds, spec.data_options),
        mean=mean,
        std=std,
        augment=spec.train.augment,
        cache_dir=cache_dir,
    )
    return READERS.get(suite.reader)(request)
