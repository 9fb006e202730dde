"""How the report tells runs apart and names what it shows: data sets, weight files, settings, the order of methods,
and the columns of Fig. 2's readings. Tables and figures both label runs with these, so a figure's series and a
table's rows name the same run the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pacebench.choices import GradKind, Split
from pacebench.core.methods import METHODS
from pacebench.values import canonical_json

if TYPE_CHECKING:
    from pacebench.store import RunRecord


def data_key(run: RunRecord) -> tuple[str, str, str]:
    """One data set: (suite, dataset, data options); runs on different data sets are never averaged together."""
    return run.suite, run.dataset, canonical_json(run.data_options)


def data_label(run: RunRecord) -> str:
    options = "".join(f" {k}={v}" for k, v in sorted(run.data_options.items()))
    return f"{run.suite}/{run.dataset}{options}"


def weights_key(run: RunRecord) -> str:
    """Which pre-trained weights a run started from; runs with different keys are never averaged together."""
    return f"{run.backbone}@{run.weights_sha256[:8] or 'none'}"


def settings(run: RunRecord) -> dict[str, Any]:
    """A run's training settings and method hyperparameters in one flat dict."""
    return {**run.hparams, **run.method_config}


def setting_key(run: RunRecord) -> str:
    return canonical_json({"method_config": run.method_config, "train": run.hparams})


def value_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def config_labels(
    runs: list[RunRecord], scope: Callable[[RunRecord], Any] = lambda r: r.method, exclude: Iterable[str] = ()
) -> dict[int, str]:
    """Per run id: the settings that differ between the runs of its scope ("lam=0.5 lr=0.001"), "" where all agree."""
    groups: dict[Any, list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[scope(run)].append(run)
    skip = set(exclude)
    labels = {}
    for members in groups.values():
        flat = {r.id: settings(r) for r in members}
        names = sorted(set().union(*flat.values()) - skip)
        varying = [n for n in names if len({canonical_json(f.get(n)) for f in flat.values()}) > 1]
        for rid, f in flat.items():
            labels[rid] = " ".join(f"{n}={value_text(f.get(n))}" for n in varying)
    return labels


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: registration order (the baseline, PACE and the Table-6 ablations, the efficiency variants), then
    names no longer registered."""
    order = METHODS.names()
    return (order.index(method) if method in order else len(order), method)


def weights_note(runs: list[RunRecord]) -> list[str]:
    keys = sorted({weights_key(r) for r in runs})
    if len(keys) < 2:
        return []
    return [
        f"runs on {len(keys)} different weight files ({', '.join(keys)}); each kept in its own rows, "
        "never averaged together"
    ]


def heldout_name(phase: str) -> str:
    """The held-out split of a phase: val in phase 1 (tune), test in phase 2 (final)."""
    return "val" if phase == "tune" else "test"


@dataclass(frozen=True)
class Reading:
    """One of Fig. 2's readings: a gradient norm (`kind`: of the task loss, or of the whole objective at each
    optimizer step) or the FP-distance (`kind` None), on the train or the held-out split (`on`). `field` is its
    column in the epoch log and its key in a finished run's metrics (taken at the last evaluation)."""

    kind: GradKind | None
    on: Split
    field: str
    meaning: str  # "{split}" stands for the held-out split's name

    def name(self, phase: str = "final") -> str:
        """The column header: "grad norm task (test)", "FP-distance (train)"."""
        what = f"grad norm {self.kind}" if self.kind is not None else "FP-distance"
        return f"{what} ({'train' if self.on == Split.train else heldout_name(phase)})"

    def label(self, phase: str) -> str:
        """What a figure's title says it shows."""
        return self.meaning.format(split="train" if self.on == Split.train else heldout_name(phase))


# "step" is what the optimizer saw each step: the whole training objective on the (noisy) training batch; "task" is
# what Theorems 1-2 bound: the cross-entropy of the clean model, taken at evaluation epochs (every epoch with
# `--diagnostics every`); the FP-distance is paper Eq. 5.
READINGS = (
    Reading(
        GradKind.step,
        Split.train,
        "grad_norm_mean",
        "gradient norm of the training objective at each optimizer step (epoch mean)",
    ),
    Reading(
        GradKind.task,
        Split.heldout,
        "grad_norm_task_heldout",
        "gradient norm of the task loss (CE, clean model) on the {split} split",
    ),
    Reading(
        GradKind.task,
        Split.train,
        "grad_norm_task_train",
        "gradient norm of the task loss (CE, clean model) on the {split} split",
    ),
    Reading(None, Split.heldout, "fp_distance_heldout", "FP-distance (Eq. 5) on the {split} split"),
    Reading(None, Split.train, "fp_distance", "FP-distance (Eq. 5) on the {split} split"),
)
STEP = READINGS[0]  # read from the last epoch's log: a finished run's metrics do not keep it
READINGS_NOTE = (
    f"{STEP.name()}: the whole training objective's gradient at each optimizer step (noise, DropPath, "
    "regulariser included), mean over the last epoch's steps; grad norm task: the cross-entropy gradient "
    "of the clean model (the paper's Fig. 2a reading), mean over mini-batches of the named split; "
    "FP-distance: paper Eq. 5 on the named split; all at the last evaluation, mean over seeds"
)


def reading(kind: GradKind | None, on: Split) -> Reading:
    """The reading of `kind` on `on`; a KeyError for a pair nobody measures (the step's norm on held-out data)."""
    found = {(r.kind, r.on): r for r in READINGS}
    return found[(kind, on)]
