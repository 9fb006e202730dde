"""The offline demo data: scikit-learn's handwritten digits (1,797 real 8x8 scans, shipped inside the package).

Source task (pre-training): digits 0-4. Target task (fine-tuning): digits 5-9 relabelled 0-4, split VTAB-style per
class: `shots` train images, shots/4 (at least 1) val images, train+val for the final phase, and every remaining
image as test. The split depends only on `split_seed` (default 0), never on the run seed. Images are upsampled to
the requested size and made 3-channel, so the same ViT code path as real RGB data is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from pacebench.data.base import DataRequest, Splits, for_phase, register_builtin
from pacebench.data.images import Indexed
from pacebench.errors import UsageError

SOURCE_CLASSES, TARGET_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def digits_tensors(
    classes: tuple[int, ...],
    image_size: int,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.5, 0.5, 0.5),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of the given digits as [N, 3, S, S] float tensors in [0, 1] normalised by mean/std (the demo
    backbone's 0.5/0.5 by default), labels renumbered 0..len(classes)-1."""
    from sklearn.datasets import load_digits  # lazy: scikit-learn loads only when the demo's data is used

    digits = load_digits()
    keep = np.isin(digits.target, classes)
    x = torch.tensor(digits.images[keep], dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x.expand(-1, 3, -1, -1) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    y = torch.tensor([classes.index(int(t)) for t in digits.target[keep]])
    return x, y


def split_indices(y: torch.Tensor, shots: int, split_seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(split_seed)
    n_val = max(1, shots // 4)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in sorted(set(y.tolist())):
        idx = rng.permutation(np.flatnonzero(y.numpy() == c)).tolist()
        out["train"] += idx[:shots]
        out["val"] += idx[shots : shots + n_val]
        out["test"] += idx[shots + n_val :]
    out["train+val"] = out["train"] + out["val"]
    return out


PHASE_PARTS = {"tune": ("train", "val"), "final": ("train+val", "test")}  # what each phase trains on, scores on


class InMemory(Indexed):
    in_memory = True  # tensors already in memory: loader workers would only add overhead


def fingerprint(ds: object) -> str:
    """scikit-learn's digits as shipped (images and targets) and the version of the split rule below."""
    from sklearn.datasets import load_digits  # lazy: scikit-learn loads only when the demo's data is used

    digits = load_digits()
    h = hashlib.blake2b(b"demo-split-v1", digest_size=8)
    h.update(np.ascontiguousarray(digits.images).tobytes())
    h.update(np.ascontiguousarray(digits.target).tobytes())
    return h.hexdigest()


AUGMENTS = ("standard",)  # tensors in memory: no image transforms to apply
SMALLEST_CLASS = 174  # images of the rarest target digit (8) in scikit-learn's digits


def check_options(options: Mapping[str, Any]) -> None:
    """Each class needs `shots` training images, shots/4 (at least 1) validation images and one test image."""
    shots = options.get("shots", 10)
    most = max(s for s in range(1, SMALLEST_CLASS) if s + max(1, s // 4) + 1 <= SMALLEST_CLASS)
    if not isinstance(shots, int) or isinstance(shots, bool) or not 1 <= shots <= most:
        raise UsageError(
            f"demo option shots={shots!r} does not fit the digits: use a whole number from 1 to {most} "
            f"(each class has at least {SMALLEST_CLASS} images)"
        )
    split_seed = options.get("split_seed", 0)
    if not isinstance(split_seed, int) or isinstance(split_seed, bool) or split_seed < 0:
        raise UsageError(f"demo option split_seed={split_seed!r} must be a whole number >= 0")


@register_builtin(
    "demo",
    fingerprint,
    check_options,
    splits={phase: (train, (score,)) for phase, (train, score) in PHASE_PARTS.items()},
    augments=AUGMENTS,
)
def read_demo(request: DataRequest) -> Splits:
    if request.augment not in AUGMENTS:  # planning refuses it first; this guards a direct caller
        raise UsageError(
            f"the demo's digits are tensors in memory and take no image augmentation; drop augment={request.augment}"
        )
    x, y = digits_tensors(TARGET_CLASSES, request.image_size, request.mean, request.std)
    parts = split_indices(y, int(request.options.get("shots", 10)), int(request.options.get("split_seed", 0)))

    def subset(name: str) -> InMemory:
        i = torch.tensor(parts[name])
        return InMemory(TensorDataset(x[i], y[i]))

    train, score = for_phase(PHASE_PARTS, request.phase)
    return Splits(
        subset(train),
        {score: subset(score)},
        len(TARGET_CLASSES),
        example_ids={score: [f"digit-{i}" for i in parts[score]]},
    )  # i: among digits 5-9
