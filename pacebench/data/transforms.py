"""Image transforms of the paper's protocols and the training augmentations a run can ask for (docs/implementation.md).

Every transform normalises with the backbone's own mean/std (`backbones.normalization`: ImageNet's for the authors'
ViT-B and Swin-B, CLIP's for the LAION-2B ViT-B, timm's pretrained configuration for any other architecture).

Training augmentation (`TrainConfig.augment`, one of `choices.Augment`):
- "standard": each protocol's own transform. VTAB-1k resizes to a square with no augmentation, for training and
  evaluation alike (the NOAH protocol every VTAB result in the paper follows). Few-shot, FGVC and domain adaptation
  train on random crops with flips, resizing the short side to 256/224 of the crop size first (256 for 224 px).
- "strong": the "stronger augmentation" of domain adaptation (paper §5.1, following NOAH): timm's `create_transform`
  with RandAugment rand-m9-mstd0.5-inc1, colour jitter 0.4 (timm switches it off while RandAugment is on, as in
  NOAH), random erasing 0.25 (pixel mode, one box) and bicubic random-resized crops, then timm's `Mixup` on each
  batch (mixup α 0.8, cutmix α 1.0, one of them on every batch, label smoothing 0.1): soft targets.
Evaluation always resizes the short side to 256/224 of the crop size and takes the centre crop (VTAB: the square).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps
from timm.data import Mixup, create_transform
from timm.data.auto_augment import AugmentOp
from torchvision import transforms as T

from pacebench.choices import Augment
from pacebench.core.backbones import IMAGENET_MEAN, IMAGENET_STD

Stats = tuple[float, ...]
STRONG_TRANSFORM: dict[str, Any] = {
    "auto_augment": "rand-m9-mstd0.5-inc1",
    "color_jitter": 0.4,
    "re_prob": 0.25,
    "re_mode": "pixel",
    "re_count": 1,
    "interpolation": "bicubic",
}
STRONG_MIXUP: dict[str, Any] = {
    "mixup_alpha": 0.8,
    "cutmix_alpha": 1.0,
    "prob": 1.0,
    "switch_prob": 0.5,
    "mode": "batch",
    "label_smoothing": 0.1,
}


def _to_normalized_tensor(mean: Stats, std: Stats) -> list:
    return [T.ToTensor(), T.Normalize(mean, std)]


def square_resize(size: int) -> T.Resize:
    """VTAB-1k's only image operation: resize to size x size, bicubic (what `data.cache` stores)."""
    return T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC)


def vtab_transform(size: int, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD) -> T.Compose:
    """Resize to size x size (bicubic), to tensor, normalise; the same for train and eval."""
    return T.Compose([square_resize(size), *_to_normalized_tensor(mean, std)])


def _resize_size(size: int) -> int:
    return round(size * 256 / 224)


@dataclass(frozen=True)
class CachePlan:
    """A standard transform split at its last deterministic step: `resize` (PIL -> PIL) is what `data.cache` stores
    as uint8; what follows runs on the stored uint8 tensor: for `crop` (a size) a random crop and flip for training
    and a centre crop for evaluation, nothing for None. `recipe` names the stored form in the cache key."""

    recipe: str
    resize: Callable[[Any], Any]
    crop: int | None = None

    def ops(self, train: bool) -> Callable[[Any], Any]:
        """The per-item tensor stage: torchvision's crop and flip draw the same random numbers on a tensor as on a
        PIL image, so a cached item equals a decoded one under the same seed (data.cache batches draw them alike)."""
        if self.crop is None:
            return _identity
        return T.Compose([T.RandomCrop(self.crop), T.RandomHorizontalFlip()]) if train else T.CenterCrop(self.crop)


def vtab_cache(size: int) -> CachePlan:
    return CachePlan(f"square-bicubic-{size}", square_resize(size))


def crop_cache(size: int) -> CachePlan:
    """`crop_train_transform` / `crop_eval_transform` with the short-side resize cached."""
    return CachePlan(f"short-bilinear-{_resize_size(size)}", T.Resize(_resize_size(size)), size)


def _identity(x: Any) -> Any:
    return x


def crop_train_transform(size: int, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD) -> T.Compose:
    """Resize the short side to size*256/224, random size x size crop, random horizontal flip."""
    return T.Compose(
        [T.Resize(_resize_size(size)), T.RandomCrop(size), T.RandomHorizontalFlip(), *_to_normalized_tensor(mean, std)]
    )


def crop_eval_transform(size: int, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD) -> T.Compose:
    """Resize the short side to size*256/224, centre size x size crop."""
    return T.Compose([T.Resize(_resize_size(size)), T.CenterCrop(size), *_to_normalized_tensor(mean, std)])


def strong_train_transform(size: int, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD) -> Callable:
    """NOAH's training transform, built by timm itself (see the module docstring)."""
    transform = create_transform(input_size=size, is_training=True, mean=mean, std=std, **STRONG_TRANSFORM)
    for op in _walk(transform):
        if isinstance(op, AugmentOp) and op.name == "PosterizeIncreasing":
            op.aug_fn = _posterize
    return transform


def _walk(transform: Any) -> list[Any]:
    """Every transform nested in `transform` (Compose and RandAugment hold lists of them)."""
    inner = getattr(transform, "transforms", None) or getattr(transform, "ops", None) or []
    return [transform, *(t for child in inner for t in _walk(child))]


def _posterize(image: Any, bits: int, **_: Any) -> Any:
    """timm's posterize, keeping 0 bits as a black image as Pillow did when NOAH was written: RandAugment's
    increasing posterize reaches 0 bits at magnitude 10 (m9 + mstd 0.5 gets there), which newer Pillow (13 here)
    refuses with a ValueError that stops the training run."""
    if bits >= 8:
        return image
    return ImageOps.posterize(image, bits) if bits >= 1 else Image.new(image.mode, image.size)


def train_transform(augment: str, size: int, mean: Stats, std: Stats, standard: Callable[..., Callable]) -> Callable:
    """The training transform for `augment`: the reader's `standard(size, mean, std)`, or the strong one."""
    return standard(size, mean, std) if augment == Augment.standard else strong_train_transform(size, mean, std)


def batch_mixup(augment: str, num_classes: int) -> Callable | None:
    """timm's Mixup/CutMix for the strong augmentation (None otherwise): (x, y) -> (mixed x, soft targets)."""
    if augment != Augment.strong:
        return None

    return Mixup(num_classes=num_classes, **STRONG_MIXUP)
