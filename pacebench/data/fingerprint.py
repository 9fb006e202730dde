"""Data identity: one string per dataset copy, from every split list it has and every image's (or data file's) bytes.

VTAB-1k circulates as JPEGs made by different scripts and as tensor copies, and results on them differ by points,
so a run records which copy it trained and was evaluated on: runs on different copies are never skipped as done,
averaged together or paired in a comparison. The fingerprint hashes, for every split list of both phases and every
data variant (few-shot: every shots x split seed list), the list's bytes and each item's relative path, label and
encoded bytes (a folder and an HDF5 pack holding the same files agree; paths are taken relative to the image
folder, so where the data root lies does not matter). The first computation reads every byte once; it is memoised
under the cache folder, keyed by the files' paths, sizes and modification times, so later plans only stat them.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pacebench.data.base import READERS, Source, dataset_root, layout_of
from pacebench.data.images import ImageDir
from pacebench.plan.suites import DatasetDef, Suite

VERSION = "fp1"  # bump when what is hashed changes: old memos are then never read
PHASES = ("tune", "final")


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part)
    return h.hexdigest()


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return Path(path).name


def sources(suite: Suite, ds: DatasetDef, data_root: Path) -> list[Source]:
    """Every split of the dataset: both phases, every data variant; each list once."""
    found: dict[Path, Source] = {}
    for phase in PHASES:
        for variant in ds.variants():
            for src in layout_of(suite, ds, data_root, phase, variant).sources():
                found.setdefault(src.path, src)
    return [found[path] for path in sorted(found)]


def _stat(path: Path) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "absent"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _memo_key(root: Path, splits: list[tuple[Source, list[tuple[Path, int]]]]) -> str:
    """What the memo is valid for: every list's and file's path, size and modification time (a pack's own)."""
    lines = [VERSION]
    for src, items in splits:
        lines.append(f"{_relative(src.path, root)}\0{_stat(src.path)}")
        if src.images.packed:
            lines.append(f"pack\0{_relative(src.images.pack, root)}\0{_stat(src.images.pack)}")
            continue
        lines.extend(f"{path}\0{_stat(path)}" for path in dict.fromkeys(p for p, _ in items))
    return _digest("\n".join(lines).encode())


def _file_digests(items: list[tuple[Path, ImageDir]], threads: int) -> dict[Path, str]:
    """Each distinct file's bytes hashed once (reading is I/O bound: threads overlap it)."""
    unique = list(dict.fromkeys(items))
    with ThreadPoolExecutor(max(1, threads)) as pool:
        digests = pool.map(lambda pair: _digest(pair[1].read_bytes(pair[0])), unique)
        return {path: digest for (path, _), digest in zip(unique, digests, strict=True)}


def compute(root: Path, splits: list[tuple[Source, list[tuple[Path, int]]]], threads: int | None = None) -> str:
    """The fingerprint of the given splits (each with its items), read in full."""
    files = _file_digests(
        [(path, src.images) for src, items in splits for path, _ in items], threads or min(8, os.cpu_count() or 1)
    )
    lines = [VERSION]
    for src, items in splits:
        listing = src.path.read_bytes() if src.path.is_file() else b""
        lines.append(f"split\0{_relative(src.path, root)}\0{_digest(listing)}")
        lines.extend(f"{_relative(path, src.images.folder)}\0{label}\0{files[path]}" for path, label in items)
    return _digest("\n".join(lines).encode())


def dataset_fingerprint(suite: Suite, ds: DatasetDef, data_root: Path, cache_dir: Path | None = None) -> str:
    """The dataset's fingerprint (16 hex digits): computed from the files once, then read from the memo in
    `cache_dir` (none: always computed). Data built into pacebench (the demo) has its reader's fingerprint."""
    reader = READERS.get(suite.reader)
    if reader.fingerprint is not None:
        return reader.fingerprint(ds)
    root = dataset_root(suite, ds, data_root)
    splits = [(src, src.read()) for src in sources(suite, ds, data_root)]
    memo = (
        None if cache_dir is None else cache_dir / "fingerprints" / f"{suite.name}-{ds.name}-{_memo_key(root, splits)}"
    )
    if memo is not None and memo.is_file():
        return memo.read_text().strip()
    value = compute(root, splits)
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(value + "\n")
        os.replace(tmp, memo)
    return value
