"""What a training objective is: a frozen config, a self-description, and a loss on one batch.

A method describes itself, so nothing else keeps a list of methods: its `description` (one line), its `tags`
(`table6`: a row of the paper's Table 6, run by `pacebench ablate`; `efficiency`: a Fig. 5 variant, added by
`ablate --efficiency`), its `paper_row` (the row name in the paper's reference CSV) and its hyperparameters, each a
config field declared with `hp(default, help, grid=..., aliases=...)`: the help text `pacebench methods` prints,
the default search grid (`method_grid`) and the other names the command line accepts for it.

Most methods only define `loss()`; the shared `step()` does zero_grad, backward, gradient norm and the optimizer
step. SAM and the gradient penalty need more than one backward pass: SAM overrides `backward()` (a second forward and
backward at the perturbed weights), GP builds its loss with a double backward inside `loss()`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pacebench.core.adapters import apply_noise
from pacebench.errors import UsageError
from pacebench.registry import Registry
from pacebench.values import parse_fields

TABLE6, EFFICIENCY_TAG = "table6", "efficiency"


def hp(
    default: Any,
    help: str,
    grid: Sequence[Any] = (),
    aliases: Sequence[str] = (),
    equals: tuple[str, Any] | None = None,
) -> Any:
    """A hyperparameter field (peft's style): its default, help text, default search grid and accepted aliases;
    `equals` = (method, value) where the method at that value amounts to another one (pace_multi's M = 2 is pace:
    Fig. 5 draws pace's runs at that point of the variant's axis)."""
    return field(
        default=default, metadata={"help": help, "grid": list(grid), "aliases": tuple(aliases), "equals": equals}
    )


@dataclass(frozen=True)
class MethodConfig:
    """Base for method hyperparameters; subclasses add `hp(...)` fields and check them in `validate()`."""

    def __post_init__(self) -> None:
        for name, ok, rule in self.validate():
            if not ok:
                raise UsageError(f"invalid {type(self).__name__} {name}={getattr(self, name)!r}: needs {rule}")

    def validate(self) -> list[tuple[str, bool, str]]:
        return []

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def aliases(cls) -> dict[str, str]:
        """Other accepted names -> field name ("lambda" and "λ" -> "lam")."""
        return {a: f.name for f in dataclasses.fields(cls) for a in f.metadata.get("aliases", ())}

    @classmethod
    def accepts(cls, name: str) -> bool:
        return cls.aliases().get(name, name) in {f.name for f in dataclasses.fields(cls)}


C = TypeVar("C", bound=MethodConfig)


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


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits.float(), y)


@dataclass(frozen=True)
class Objective:
    """The task's terms that a method combines: `loss(outputs, y)`, the supervised loss, and `distance(a, b, y)`,
    the squared L2 distance between two outputs of the same samples that consistency terms use (`y` may only mask,
    e.g. to a language model's answer tokens). Image classification: cross-entropy and `consistency`. The baseline
    and PACE (with its lazy and fast variants) take `self.objective`, so they run on the text tasks too
    (pacebench/text/tasks.py); the other ablations are image-classification only."""

    loss: Callable[[Tensor, Tensor], Tensor]
    distance: Callable[[Tensor, Tensor, Tensor], Tensor]


def _logit_distance(a: Tensor, b: Tensor, y: Tensor) -> Tensor:
    return consistency(a, b)


CLASSIFICATION = Objective(cross_entropy, _logit_distance)


def ce_only(model: nn.Module, x: Tensor, y: Tensor, objective: Objective = CLASSIFICATION) -> StepOutput:
    """One forward pass scored by the task loss alone (cross-entropy for images): the baseline's objective, and the
    base of several others. The part keeps the name "ce" whatever the task's loss is."""
    logits = model(x)
    ce = objective.loss(logits, y)
    return StepOutput(ce, logits, {"ce": ce})


def grad_norm(params: list[nn.Parameter]) -> Tensor:
    """L2 norm over all gradients, kept on the device (no sync); the trainer reads it once per epoch."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


class Method(Generic[C]):
    """A training objective. Subclasses set `name`, `description`, `Config` (and `tags`, `paper_row`, `grid`)
    and define `loss()`; the default loss is cross-entropy only."""

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    tags: ClassVar[frozenset[str]] = frozenset()
    paper_row: ClassVar[str | None] = None  # its row in the paper's reference tables (Table 6: "+PACE")
    grid: ClassVar[Mapping[str, list[Any]]] = {}  # search grids that differ from the config fields' own
    parts: ClassVar[tuple[str, ...]] = ("ce",)
    shares_drop_path: ClassVar[bool] = False  # noisy methods share DropPath masks between copies (NoisyMethod)
    trains: ClassVar[bool] = True  # False: the model is only evaluated (the untuned "Pre-trained" row of GSM-8K)
    any_task: ClassVar[bool] = False  # takes the task's own `objective`, so it runs on the text tasks too
    needs_index: ClassVar[bool] = False  # True: loss() reads each sample's position in the training set (`idx`)

    def __init__(self, config: C) -> None:
        self.cfg: C = config
        self.steps = 0
        self.autocast: Callable[[], AbstractContextManager[Any]] = nullcontext
        self.objective = CLASSIFICATION  # text tasks set their own (pacebench/text/tasks.py)

    @classmethod
    def make_config(cls, values: Mapping[str, Any]) -> C:
        """Builds the config from (possibly string) values; names the accepted fields on a typo."""
        kwargs = parse_fields(cls.Config, values, f"method {cls.name} hyperparameter", cls.Config.aliases())
        return cast(C, cls.Config(**kwargs))

    @classmethod
    def hyperparameters(cls) -> list[tuple[str, Any, str]]:
        """(name, default, help) of every hyperparameter, in declaration order."""
        return [(f.name, f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls.Config)]

    @classmethod
    def equivalents(cls) -> dict[str, tuple[str, Any]]:
        """Hyperparameter -> (method, value) where this method amounts to that method (`hp(equals=...)`)."""
        return {f.name: f.metadata["equals"] for f in dataclasses.fields(cls.Config) if f.metadata.get("equals")}

    @classmethod
    def search_grid(cls) -> dict[str, list[Any]]:
        """The default search grid: each field's `grid`, overridden by the method's own `grid`; fields without a
        grid (a schedule, the number of copies) are not searched."""
        fields = {f.name: list(f.metadata.get("grid", [])) for f in dataclasses.fields(cls.Config)}
        return {k: v for k, v in {**fields, **cls.grid}.items() if v}

    def setup(self, model: nn.Module, info: SetupInfo) -> dict[str, Any]:
        """Prepares the model (noise, attention kernels, buffers); returns facts the run keeps (`RunRecord.setup`)."""
        apply_noise(model, None)
        return {}

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        return ce_only(model, x, y, self.objective)

    def backward(
        self,
        model: nn.Module,
        batch: tuple[Tensor, Tensor, Tensor],
        optimizer: torch.optim.Optimizer,
        params: list[nn.Parameter],
    ) -> StepOutput:
        """zero_grad, the loss under autocast, backward; the gradient norm of the result."""
        x, y, idx = batch
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.loss(model, x, y, idx)
        out.loss.backward()
        out.grad_norm = grad_norm(params)
        return out

    def step(
        self,
        model: nn.Module,
        batch: tuple[Tensor, Tensor, Tensor],
        optimizer: torch.optim.Optimizer,
        params: list[nn.Parameter],
    ) -> StepOutput:
        out = self.backward(model, batch, optimizer, params)
        optimizer.step()
        self.steps += 1
        return out


METHODS: Registry[type[Method[Any]]] = Registry("method")
M = TypeVar("M", bound=type[Method[Any]])


def register(cls: M) -> M:
    """Class decorator: registers a method under its `name`."""
    METHODS.register(cls.name)(cls)
    return cls


def tagged(tag: str) -> list[str]:
    """Registered methods carrying `tag`, in registration order (`methods/__init__.py` sets it)."""
    return [name for name, cls in METHODS.items() if tag in cls.tags]


def method_grid(name: str) -> dict[str, list[Any]]:
    """The default search grid of method `name`: hyperparameter -> values (what `ablate` searches)."""
    return METHODS.get(name).search_grid()
