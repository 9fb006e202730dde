"""Fig. 2's readings of the clean model (eval mode: no noise, no DropPath) on image data: the task-loss gradient norm
and the FP-distance (paper Eq. 5), on the training split and on the phase's held-out split.

They are diagnostics only: the protocol's choice never reads them, and taking them leaves training bit for bit as it
was (adapters stay unmerged, nothing is written to `.grad`, their loaders draw from generators of their own).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from pacebench.choices import Diagnostics
from pacebench.core.adapters import pretrained_logits

DIAGNOSTIC_SAMPLES = 1000  # per split: a fixed subset keeps the readings' cost bounded on big test sets


def wanted(diagnostics: str, is_eval: bool) -> bool:
    """Whether an epoch takes the readings: at evaluation epochs ("eval"), every epoch ("every"), or never."""
    return diagnostics == Diagnostics.every or (is_eval and diagnostics == Diagnostics.eval)


def clean_readings(
    model: nn.Module,
    data: DataLoader,
    params: list[nn.Parameter],
    device: torch.device,
    autocast: Callable[[], Any],
    inputs: Callable[[Tensor], Tensor] = lambda x: x,
) -> tuple[float, float]:
    """Fig. 2's readings of the clean model over one loader, in one pass:

    - the task gradient norm, what Theorems 1-2 bound: ‖∇θ CE‖ per mini-batch, averaged over the mini-batches;
    - the FP-distance of paper Eq. 5: mean over samples of ‖f(θ0+Δθ)(x) - f(θ0)(x)‖² on the logits.

    Adapters stay unmerged (merging and unmerging would round W0) and nothing is written to `.grad`, so taking the
    readings leaves training exactly as it was.
    """
    model.eval()
    norms, fp, count = [], torch.zeros((), device=device), 0
    for x, y, _ in data:
        x, y = inputs(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        with autocast():
            logits = model(x).float()
            reference = pretrained_logits(model, x).float()
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), params, allow_unused=True)
        norms.append(torch.nn.utils.get_total_norm([g for g in grads if g is not None], norm_type=2.0))
        fp += (logits.detach() - reference).pow(2).sum()
        count += x.shape[0]
    if not norms:
        return math.nan, math.nan
    return torch.stack(norms).mean().item(), fp.item() / count  # one CPU-GPU sync each


def heldout_split(evals: dict[str, Dataset]) -> str:
    """The phase's held-out split: "val" in phase tune (the only one a tune reader opens), "test" in phase final;
    a reader without either (domain adaptation) gives its first evaluation set."""
    return next((name for name in ("test", "val") if name in evals), next(iter(evals)))


def diagnostic_subset(dataset: Dataset, size: int = DIAGNOSTIC_SAMPLES) -> Dataset:
    """At most `size` samples of `dataset`, the same ones for every run and method (a permutation with a fixed seed
    of its own, so the global RNG is not touched); the whole set when it is no larger."""
    n = len(dataset)  # type: ignore[arg-type]
    if n <= size:
        return dataset
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:size].sort().values
    subset = torch.utils.data.Subset(dataset, keep.tolist())
    subset.in_memory = getattr(dataset, "in_memory", False)  # type: ignore[attr-defined]
    return subset


def diagnose(
    model: nn.Module,
    data: dict[str, DataLoader],
    params: list[nn.Parameter],
    device: torch.device,
    autocast: Callable[[], Any],
    inputs: Callable[[Tensor], Tensor] = lambda x: x,
) -> dict[str, float]:
    """Fig. 2's readings on the training split and the held-out split (`data` keys "train", "heldout"): the task
    gradient norm and the FP-distance."""
    out = {}
    for on, loader_ in data.items():
        grad, fp = clean_readings(model, loader_, params, device, autocast, inputs)
        out[f"grad_norm_task_{on}"] = grad
        out["fp_distance" if on == "train" else f"fp_distance_{on}"] = fp
    return out
