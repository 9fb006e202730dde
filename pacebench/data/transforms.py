"""Image transforms of the paper's protocols (docs/implementation.md).

VTAB-1k resizes to a square with no augmentation, for training and evaluation alike (the NOAH protocol every VTAB
result in the paper follows). Few-shot, FGVC and domain adaptation train on random crops with flips and evaluate on
the centre crop, resizing the short side to 256/224 of the crop size first (256 for 224 px).
"""

from __future__ import annotations

from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_normalized_tensor() -> list:
    return [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def vtab_transform(size: int) -> T.Compose:
    """Resize to size x size (bicubic), to tensor, ImageNet mean/std; the same for train and eval."""
    return T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), *_to_normalized_tensor()])


def _resize_size(size: int) -> int:
    return round(size * 256 / 224)


def crop_train_transform(size: int) -> T.Compose:
    """Resize the short side to size*256/224, random size x size crop, random horizontal flip."""
    return T.Compose([T.Resize(_resize_size(size)), T.RandomCrop(size), T.RandomHorizontalFlip(),
                      *_to_normalized_tensor()])


def crop_eval_transform(size: int) -> T.Compose:
    """Resize the short side to size*256/224, centre size x size crop."""
    return T.Compose([T.Resize(_resize_size(size)), T.CenterCrop(size), *_to_normalized_tensor()])
