"""The adapter kinds: each registered `Kind` says what it is (its paper, its size, its options, where PACE's noise
goes, whether it merges) and how it changes a backbone (`build`).

A kind's module file defines the modules it puts into the backbone (each an `Adapter`, and a `Noisy` one where
PACE perturbs it) and registers one `Kind` (`register`); its name in `adapters.MODULES` makes it known. Everything
else (training, merging for evaluation, the FP-distance, counting, checkpoints, export, `pacebench inspect` and
`bench`) goes through the `Adapter` interface and this registry, never through a kind's name.

A kind reads three training settings: `rank`, its size (LoRA's rank r, a bottleneck's width h, VPT's prompt length
p; a kind without a size ignores it), `adapter_scale` and `adapter_dropout` (only a kind that declares a default for
them reads them; None means that default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.util import find_spec

from torch import nn

from pacebench.core.adapters.layout import Layout
from pacebench.errors import UsageError
from pacebench.registry import Registry

OPTIONS = ("adapter_scale", "adapter_dropout")  # the training settings a kind may read, besides its size (`rank`)


@dataclass(frozen=True)
class Settings:
    """A kind's resolved size and options, as its `build` receives them."""

    size: int
    scale: float = 1.0
    dropout: float = 0.0


@dataclass(frozen=True)
class Kind:
    """One adapter kind.

    Attributes:
        name: what `-t adapter=` and `--adapters` take.
        description: one line for `pacebench methods`.
        source: the paper (and the official code's behaviour) it follows.
        noise: where PACE's noise goes (per sample and channel, on the adapter's output Δh unless said otherwise).
        build: puts the kind's modules into a frozen backbone (the head is handled by `adapters.inject`).
        size: what `rank` sets ("rank r", "bottleneck width h", ...); None for a kind without a size.
        default_size: the size when no suite, dataset or user sets one.
        defaults: the options it reads (`OPTIONS`) with their defaults.
        mergeable: whether it folds into the frozen weights (evaluation on merged weights, `export-model`).
        why_not_mergeable: for the others, the reason `export-model` gives.
        families: the backbone families it supports (`layout.LAYOUTS`).
        starts_at_identity: whether the adapted model equals the pre-trained one before training.
        family: "pace" for the paper's own parts family (`parts.py`), "" for the others.
        check: a message when a size it cannot take is asked for, else None.
        requires: (module, how to install it) of the optional libraries it builds on, checked with its settings
            (while planning), so a missing one is refused before a run is written, not failed in the worker.
    """

    name: str
    description: str
    source: str
    noise: str
    build: Callable[[nn.Module, Layout, Settings], None]
    size: str | None = "rank r"
    default_size: int = 10
    defaults: Mapping[str, float] = field(default_factory=dict)
    mergeable: bool = False
    why_not_mergeable: str = ""
    families: tuple[str, ...] = ("vit", "swin")
    starts_at_identity: bool = True
    family: str = ""
    check: Callable[[Settings], str | None] = lambda settings: None
    requires: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.defaults) - set(OPTIONS)
        if unknown:
            raise ValueError(f"adapter {self.name}: unknown option {sorted(unknown)[0]!r}; options are {OPTIONS}")

    def train_defaults(self) -> dict[str, float | int]:
        """The training settings this kind resolves to when nothing sets them: its size and its options."""
        return {"rank": self.default_size if self.size else 1, **self.defaults}

    def settings(self, rank: int | None = None, scale: float | None = None, dropout: float | None = None) -> Settings:
        """The kind's settings from the run's `rank`, `adapter_scale` and `adapter_dropout` (None: the default).

        Raises:
            UsageError: an option the kind does not read, or a value it cannot take.
        """
        given = {"adapter_scale": scale, "adapter_dropout": dropout}
        unread = [name for name, value in given.items() if value is not None and name not in self.defaults]
        if unread:
            raise UsageError(
                f"adapter {self.name} has no {unread[0]} setting; leave it unset (options of "
                f"{self.name}: {', '.join(self.defaults) or 'none'})"
            )
        own = self.default_size if rank is None else rank
        size = own if self.size else 1  # a kind without a size ignores `rank`
        if size < 1:
            raise UsageError(f"adapter rank must be >= 1, got {size}")
        value = {name: given[name] if given[name] is not None else self.defaults.get(name) for name in OPTIONS}
        scale_, dropout_ = value["adapter_scale"], value["adapter_dropout"]
        if scale_ is not None and not (math.isfinite(scale_) and scale_ > 0):
            raise UsageError(f"adapter_scale must be a finite number > 0, got {scale_}")
        if dropout_ is not None and not 0 <= dropout_ < 1:
            raise UsageError(f"adapter_dropout must be in [0, 1), got {dropout_}")
        out = Settings(size, 1.0 if scale_ is None else float(scale_), 0.0 if dropout_ is None else float(dropout_))
        problem = self.check(out)
        if problem:
            raise UsageError(f"adapter {self.name}: {problem}")
        for module, install in self.requires:
            if find_spec(module) is None:
                raise UsageError(f"adapter {self.name} needs {module}, which is not installed: {install}")
        return out


ADAPTERS: Registry[Kind] = Registry("adapter")


def register(kind: Kind) -> Kind:
    """Registers `kind` under its name (a name registered twice is an error)."""
    return ADAPTERS.register(kind.name)(kind)


# ---- helpers the kinds share -----------------------------------------------------------------------------------


def set_child(root: nn.Module, path: str, module: nn.Module) -> None:
    """Puts `module` at `path` (dotted) inside `root`."""
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def positions(layout: Layout) -> dict[int, int]:
    """The depth position of every module inside a layout group, by `id`. Modules outside every group (the patch
    embedding, the final norm) are not in it: they take position 0, as the authors' code keys them (with block 0)."""
    return {id(m): position for group, position in layout.groups for m in group.modules()}


def outside_head(model: nn.Module, layout: Layout) -> list[tuple[str, nn.Module]]:
    """(path, module) of every module of the backbone, the classification head and what it holds left out."""
    head = layout.head_path
    return [(name, m) for name, m in model.named_modules() if name and name != head and not name.startswith(head + ".")]
