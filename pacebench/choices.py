"""The fixed choices of pacebench as `StrEnum`s: the CLI lists them in `--help`, and a member compares equal to
its string, so stored values ("final", "done", "bf16") and run keys are the plain strings they always were.

Where a choice has an implementation (a σ schedule, a table format), the registry of implementations is keyed by
these members and a test checks that every member has exactly one.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Which half of the paper's protocol a run belongs to."""

    tune = "tune"  # phase 1: train on the train split, score on the validation split
    final = "final"  # phase 2: train on train+val, score on the test split


class Status(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class Mode(StrEnum):
    """What a training command does with its plan (`execution.sweep.execute_plan`)."""

    train = "train"  # queue the plan and train it with workers started here
    dry_run = "dry-run"  # show the plan, done and to do; write nothing
    enqueue = "enqueue"  # queue the plan and exit: workers started anywhere else (`pacebench worker`) train it


class Precision(StrEnum):
    auto = "auto"  # bf16 on CUDA, fp32 elsewhere; resolved (`execution.sweep.materialise`) before a run key is taken
    fp32 = "fp32"
    bf16 = "bf16"  # autocast to bfloat16 on the forward pass; parameters and optimizer state stay fp32


class Augment(StrEnum):
    """Training augmentation (transforms in `data.transforms`, Mixup in `train`)."""

    standard = "standard"  # the protocol's own: VTAB resize only; random crop + flip elsewhere; hard labels
    strong = "strong"  # NOAH's, built by timm: RandAugment, random erasing, Mixup/CutMix, label smoothing 0.1


class NoiseGroup(StrEnum):
    """Which rows share one noise draw in Swin's window attention (`noise.Noise`)."""

    window = "window"  # one draw per window, as the authors' code draws over the tensor's first axis
    sample = "sample"  # one draw per sample, shared by its windows: the paper's wording


class Schedule(StrEnum):
    """How σ varies over depth (implementations in `noise.SCHEDULES`)."""

    code = "code"  # the authors' code: σ falls linearly with depth, ViT's first block gets none
    paper = "paper"  # the paper's reading: linear over every position
    const = "const"  # Table 6 PACE_σ=: one σ everywhere
    increasing = "increasing"  # Table 6 PACE_σ↑: the code schedule reversed


class Format(StrEnum):
    """How `pacebench report` writes a table (renderers in `report.render.FORMATS`)."""

    rich = "rich"
    md = "md"
    latex = "latex"
    csv = "csv"
    html = "html"


class TableLayout(StrEnum):
    """How a suite's paper table is laid out (`[reference.report] layout`; `report.tables.paper.LAYOUTS`)."""

    datasets = "datasets"  # a column per dataset (test score), the group means, the mean of the group means
    evals = "evals"  # a column per evaluation set of one run (domain adaptation's targets), their plain mean
    shots = "shots"  # a row per dataset (and their average), a column per shot count


class GradKind(StrEnum):
    """Which gradient norm a figure reads (`report.figures.READINGS`)."""

    task = "task"  # ‖∇θ CE‖ of the clean model (no noise, no DropPath): what Theorems 1-2 and Fig. 2a are about
    step = "step"  # the whole training objective's gradient at each optimizer step: what the optimizer saw


class Split(StrEnum):
    """Which split a diagnostic reading is taken on."""

    heldout = "heldout"  # the phase's held-out split: val in phase tune, test in phase final
    train = "train"


class Diagnostics(StrEnum):
    """When a run takes Fig. 2's readings (`train.diagnose`); they never change what is trained."""

    eval = "eval"  # at every evaluation epoch (eval_every, and the last epoch)
    every = "every"  # every epoch: finer curves, one extra pass over train and held-out data per epoch
    off = "off"


class Paths(StrEnum):
    """Which training fast paths run (`adapters.base`); `pacebench bench --paths` measures what each one buys."""

    fast = "fast"  # every fast path: the default, and what every run trains with
    two_products = "two-products"  # no per-sample weights: a noisy layer runs W0 x and ΔW x, as on a GPU
    plain = "plain"  # none: the formulas as written, copies duplicated at the input (`plain_paths()`)
