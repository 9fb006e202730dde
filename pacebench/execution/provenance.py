"""What a run records about the code that trained it: the git commit of the checkout and the library versions."""

from __future__ import annotations

import platform
import subprocess
from functools import cache

import timm
import torch

from pacebench.settings import checkout
from pacebench.version import __version__


@cache
def git_commit() -> str | None:
    """The checkout's commit, asked of git once per process (the code a worker runs cannot change under it); None
    for an installed package (its version is recorded instead) or where git is missing."""
    root = checkout()
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, str]:
    return {
        "pacebench": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "cuda": torch.version.cuda or "",
    }
