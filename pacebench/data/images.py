"""Image files on disk: decoding any of them to 8-bit RGB, and lists of (image, label) read from split files.

Benchmark folders hold a mix of JPEG and PNG files in every mode Pillow knows (grayscale, palette, CMYK, 16-bit
medical or satellite scans). `load_rgb` turns each into the 8-bit RGB the ImageNet-normalised backbones expect, and
turns any failure into a `DataError` that names the file, so a bad file stops a run with one line saying what to fix.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from pacebench.errors import DataError

Item = tuple[Path, int]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _from_16bit(im: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer) images hold 0..65535; dividing by 257 maps that range exactly onto 0..255."""
    values = np.clip(np.asarray(im, dtype=np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.rint(values).astype(np.uint8), "L")


def _from_float(im: Image.Image) -> Image.Image:
    """Float images are taken as 0..1 when they fit in it (the usual convention), else as 0..255 like Pillow does."""
    values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    scale = 255.0 if values.size and values.min() >= 0 and values.max() <= 1 else 1.0
    return Image.fromarray(np.rint(np.clip(values * scale, 0, 255)).astype(np.uint8), "L")


_WIDE_MODES: dict[str, Callable[[Image.Image], Image.Image]] = {
    **{m: _from_16bit for m in ("I", "I;16", "I;16L", "I;16B", "I;16N")},
    "F": _from_float,
}


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB. Transparent pixels are composited onto white: dropping the alpha channel
    instead would expose whatever colour the file happens to store under it (often black, sometimes noise)."""
    im = _WIDE_MODES.get(im.mode, lambda x: x)(im)
    if im.has_transparency_data:  # RGBA, LA, PA, RGBa, La, and palette or L/RGB images with a tRNS colour
        canvas = Image.new("RGBA", im.size, (255, 255, 255, 255))
        canvas.alpha_composite(im.convert("RGBA"))
        return canvas.convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV: Pillow's conversions


def load_rgb(path: Path | str) -> Image.Image:
    """Opens and fully decodes an image as 8-bit RGB; a missing or corrupt file raises `DataError` naming it.

    The error carries only its message, so it pickles and reaches the main process from DataLoader workers.
    """
    try:
        with Image.open(path) as im:
            im.load()  # decode now, inside the try: Pillow decodes lazily and a truncated file fails here
            return to_rgb(im)
    except FileNotFoundError:
        reason = "no such file; restore it or remove it from its split list"
        raise DataError(f"cannot read image {path}: {reason}") from None
    except _DECODE_ERRORS as exc:
        reason = f"{_one_line(exc)}; replace the file (it is corrupt or not an image)"
        raise DataError(f"cannot read image {path}: {reason}") from None


def check_label(label: int, num_classes: int, where: str) -> int:
    """Returns `label` if it lies in [0, num_classes); `where` (file and line) goes into the error."""
    if not 0 <= label < num_classes:
        raise DataError(f"{where}: label {label} is outside [0, {num_classes}); fix the label or the dataset's "
                        "'classes' in the suite file")
    return label


def read_list(path: Path, image_dir: Path, num_classes: int) -> list[Item]:
    """Reads a split list of `<image path> <label>` lines (paths relative to `image_dir`; blank lines skipped)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DataError(f"missing split list {path}; put the data set's list files there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read split list {path}: {_one_line(exc)}") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)  # from the right, so an image path may contain spaces
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{number}: expected '<image path> <label>', got {line.strip()!r}; fix that line")
        items.append((image_dir / parts[0], check_label(int(parts[1]), num_classes, f"{path}:{number}")))
    return items


class ListDataset(Dataset):
    """(image tensor, label) pairs from a list of (path, label); images are decoded when an item is fetched."""

    def __init__(self, items: list[Item], transform: Callable) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        return self.transform(load_rgb(path)), label
