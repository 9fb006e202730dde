"""Images on disk: decoding any of them to 8-bit RGB, lists of (image, label) read from split files, and the
authors' HDF5 packs.

Benchmark folders hold a mix of JPEG and PNG files in every mode Pillow knows (grayscale, palette, CMYK, 16-bit
medical or satellite scans). `load_rgb` turns each into the 8-bit RGB the ImageNet-normalised backbones expect, and
turns any failure into a `DataError` that names the file, so a bad file stops a run with one line saying what to fix.

The PACE authors' code reads each data set's images from one `images.hdf5` beside (or instead of) `images/`: their
convert_to_hdf5.py stores every image's encoded bytes as a dataset keyed by its path relative to `images/`
(VTAB-1k: `train800/000000.jpg` in group `train800`; few-shot: `<class>/<file>`). `ImageDir` reads either form.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
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


def load_rgb(path: Path | str, data: io.BytesIO | None = None) -> Image.Image:
    """Opens and fully decodes an image as 8-bit RGB (from `data` when given, else from the file `path`); a missing
    or corrupt image raises `DataError` naming it.

    The error carries only its message, so it pickles and reaches the main process from DataLoader workers.
    """
    try:
        with Image.open(data or path) as im:
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
        raise DataError(
            f"{where}: label {label} is outside [0, {num_classes}); fix the label or the dataset's "
            "'classes' in the suite file"
        )
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


class ImageDir:
    """The image folder of a data set, read from its files or, when the folder is absent and `pack` exists, from
    the authors' HDF5 pack of it. Items keep their path inside the folder either way, so split lists, errors and
    the checker look the same for both forms.

    The pack is opened on first use in each process (a DataLoader worker opens its own handle: an HDF5 handle
    must not cross a fork) and never pickled."""

    def __init__(self, folder: Path, pack: Path | None = None) -> None:
        self.folder = Path(folder)
        self.pack = Path(pack) if pack is not None else self.folder.with_name(self.folder.name + ".hdf5")
        self._h5: Any = None
        self._pid = -1
        self._lock = threading.Lock()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageDir) and (self.folder, self.pack) == (other.folder, other.pack)

    def __hash__(self) -> int:
        return hash((self.folder, self.pack))

    def __repr__(self) -> str:
        return f"ImageDir({self.folder}, pack={self.pack})"

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "pack": self.pack}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], state["pack"])  # type: ignore[misc]

    @property
    def packed(self) -> bool:
        """True when the images come from the pack: the folder is absent and the pack is a file."""
        return not self.folder.is_dir() and self.pack.is_file()

    def describe(self) -> str:
        return str(self.pack) if self.packed else str(self.folder)

    def missing(self) -> str | None:
        """A problem line when neither the folder nor the pack exists, else None."""
        if self.folder.is_dir() or self.pack.is_file():
            return None
        return f"missing image folder {self.folder}/ (or its HDF5 pack {self.pack}); put the data set's images there"

    def key(self, path: Path) -> str:
        """The key of `path` inside the pack: its path relative to the folder."""
        try:
            return Path(path).relative_to(self.folder).as_posix()
        except ValueError:
            raise DataError(
                f"image {path} lies outside {self.folder}, so the pack {self.pack} cannot hold it; fix the split list"
            ) from None

    def _file(self) -> Any:
        with self._lock:
            if self._h5 is None or self._pid != os.getpid():
                try:
                    self._h5 = h5py.File(self.pack, "r")
                except OSError as exc:
                    raise DataError(
                        f"cannot open HDF5 pack {self.pack}: {_one_line(exc)}; re-create it with the "
                        "authors' convert_to_hdf5.py or use the image folder"
                    ) from None
                self._pid = os.getpid()
            return self._h5

    def class_folders(self, sub: str = "") -> dict[str, list[Path]]:
        """{class folder name: its images, sorted} for the class folders in `sub` (a folder inside this one, "" for
        this one), read from the files or from the pack; a missing `sub` is a `DataError`."""
        base = self.folder / sub
        if not self.packed:
            if not base.is_dir():
                raise DataError(f"missing data folder {base}; put that data set there (or its HDF5 pack {self.pack})")
            return {
                d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                for d in sorted(base.iterdir())
                if d.is_dir() and not d.name.startswith(".")
            }

        pack = self._file()
        group = pack[sub] if sub else pack
        if sub and (sub not in pack or not isinstance(group, h5py.Group)):
            raise DataError(f"missing data folder {base}: the pack {self.pack} has no group {sub!r}; re-create it")
        return {
            name: [base / name / key for key in sorted(group[name]) if Path(key).suffix.lower() in IMAGE_SUFFIXES]
            for name in sorted(group)
            if isinstance(group[name], h5py.Group) and not name.startswith(".")
        }

    def exists(self, path: Path) -> bool:
        if not self.packed:
            return Path(path).is_file()
        return self.key(path) in self._file()

    def relative(self, path: Path) -> str:
        """`path` inside this folder (as a pack keys it): how an example is named wherever the data root lies."""
        try:
            return Path(path).relative_to(self.folder).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def where(self, path: Path) -> str:
        """How errors name an image: its file, or its key inside the pack."""
        return f"{self.key(path)} in {self.pack}" if self.packed else str(path)

    def load(self, path: Path) -> Image.Image:
        if not self.packed:
            return load_rgb(path)
        return load_rgb(self.where(path), io.BytesIO(self.read_bytes(path)))

    def read_bytes(self, path: Path) -> bytes:
        """The image's encoded bytes as stored: the file's, or its entry's in the pack (what a data fingerprint
        hashes, so a folder and a pack of the same files have the same fingerprint)."""
        if not self.packed:
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise DataError(
                    f"cannot read {path}: {exc.strerror or exc}; restore it or remove it from its split list"
                ) from None
        key = self.key(path)
        pack = self._file()
        if key not in pack:
            raise DataError(
                f"cannot read image {key} in {self.pack}: no such entry; re-create the pack or remove "
                "the image from its split list"
            )
        try:
            return np.asarray(pack[key]).tobytes()  # uint8 array or the authors' 0-d bytes scalar: raw bytes
        except (OSError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"cannot read image {key} in {self.pack}: {_one_line(exc)}; re-create the pack") from None


def load_image(path: Path, images: ImageDir | None = None) -> Image.Image:
    """The image `path` as 8-bit RGB, from `images` (a folder or its HDF5 pack) when given, else from the file."""
    return images.load(path) if images else load_rgb(path)


class ListDataset(Dataset):
    """(image tensor, label) pairs from a list of (path, label); images are decoded when an item is fetched, from
    `images` (a folder or its HDF5 pack; plain files when not given)."""

    def __init__(self, items: list[Item], transform: Callable, images: ImageDir | None = None) -> None:
        self.items = list(items)
        self.transform = transform
        self.images = images

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        return self.transform(load_image(path, self.images)), label


class Indexed(Dataset):
    """Wraps a dataset of (x, y) pairs so that items are (x, y, index)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x, y, i
