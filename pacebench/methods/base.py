"""What a training objective is: a frozen config, a one-line description, and a loss on one batch.

Most methods only define `loss()`; the shared `step()` does zero_grad, backward, gradient norm and the optimizer
step. SAM and the gradient penalty override `step()` because they need more than one backward pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pacebench.errors import UsageError
from pacebench.registry import Registry

ALIASES = {"lambda": "lam", "λ": "lam", "σ": "sigma", "N": "interval", "M": "copies", "rho": "rho", "ρ": "rho"}


@dataclass(frozen=True)
class MethodConfig:
    """Base for method hyperparameters; subclasses add fields and check them in `validate()`."""

    def __post_init__(self) -> None:
        for name, ok, rule in self.validate():
            if not ok:
                raise UsageError(f"invalid {type(self).__name__} {name}={getattr(self, name)!r}: needs {rule}")

    def validate(self) -> list[tuple[str, bool, str]]:
        return []

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StepOutput:
    """The result of one training step: total loss, the logits scored for train accuracy (first copy only),
    named loss parts for logging, and the L2 norm of the gradient over all trainable parameters."""

    loss: Tensor
    logits: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)
    grad_norm: Tensor | None = None


@dataclass(frozen=True)
class SetupInfo:
    num_train: int
    num_classes: int


def consistency(a: Tensor, b: Tensor) -> Tensor:
    """PACE's consistency term: mean over the batch of the squared L2 distance between two logit vectors."""
    return (a.float() - b.float()).pow(2).sum(-1).mean()


def grad_norm(params: list[nn.Parameter]) -> Tensor:
    """L2 norm over all gradients, kept on the device (no sync); the trainer reads it once per epoch."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


class Method:
    """A training objective. Subclasses set `name`, `description`, `Config`, `parts`, and define `loss()`."""

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    parts: ClassVar[tuple[str, ...]] = ("ce",)
    needs_index: ClassVar[bool] = False  # True: loss() uses the sample indices (pace_fast)
    shares_drop_path: ClassVar[bool] = True  # PACE variants share DropPath masks between copies; baseline does not
    trains: ClassVar[bool] = True  # False: the model is only evaluated (the untuned "Pre-trained" row of GSM-8K)

    def __init__(self, config: MethodConfig) -> None:
        self.cfg = config
        self.steps = 0
        self.autocast: Callable[[], AbstractContextManager[Any]] = nullcontext
        self.objective = CLASSIFICATION  # text tasks swap in their own (pacebench/text/tasks.py)

    @classmethod
    def make_config(cls, values: dict[str, Any]) -> MethodConfig:
        """Builds the config from (possibly string) values; names the accepted fields on a typo."""
        known = {f.name: f.type for f in dataclasses.fields(cls.Config)}
        kwargs: dict[str, Any] = {}
        for raw_name, value in values.items():
            name = ALIASES.get(raw_name, raw_name)
            if name not in known:
                accepted = ", ".join(known) or "none"
                raise UsageError(f"method {cls.name} has no hyperparameter {raw_name!r}; accepted: {accepted}")
            kind = {"float": float, "int": int, "str": str}[str(known[name])]
            try:
                number = float(value) if kind is int else None
                if number is not None and not number.is_integer():
                    raise ValueError
                kwargs[name] = int(number) if number is not None else kind(value)
            except (TypeError, ValueError):
                raise UsageError(f"{cls.name} {name} must be {kind.__name__}, got {value!r}") from None
        return cls.Config(**kwargs)

    def setup(self, model: nn.Module, info: SetupInfo) -> dict[str, Any]:
        """Prepares the model (noise, attention kernels, buffers); returns facts worth logging."""
        from pacebench.noise import apply_noise

        apply_noise(model, None)
        return {}

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        raise NotImplementedError

    def step(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor], optimizer: torch.optim.Optimizer,
             params: list[nn.Parameter]) -> StepOutput:
        x, y, idx = batch
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.loss(model, x, y, idx)
        out.loss.backward()
        out.grad_norm = grad_norm(params)
        optimizer.step()
        self.steps += 1
        return out


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits.float(), y)


@dataclass(frozen=True)
class Objective:
    """The task's terms that a method combines: `loss(outputs, y)`, the supervised loss, and `distance(a, b, y)`,
    the squared L2 distance between two outputs of the same samples that consistency terms use (`y` may only mask,
    e.g. to a language model's answer tokens). Methods that take `self.objective` work on every task; the others
    (the Table-6 ablations) are image-classification only."""

    loss: Callable[[Tensor, Tensor], Tensor]
    distance: Callable[[Tensor, Tensor, Tensor], Tensor]


def _logit_distance(a: Tensor, b: Tensor, y: Tensor) -> Tensor:
    return consistency(a, b)


CLASSIFICATION = Objective(cross_entropy, _logit_distance)


METHODS: Registry[type[Method]] = Registry("method")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: registers a method under its `name`."""
    return METHODS.register(cls.name)(cls)
