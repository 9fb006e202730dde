"""The one way to turn a backbone into a trainable model: adapters, method, shared DropPath, device, setup.

`attach` does it for any timm backbone module (the tests' tiny ViTs, the speed benchmark's randomly initialised
ones); `prepare` first loads the run's backbone from its local weights file and checks that the file is the one
the run was planned with (its SHA-256 is part of the run key). The trainer, the tests and `pacebench bench` all
go through `attach`, so none of them can drift from what a real run trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pacebench.core import adapters, backbones
from pacebench.core.droppath import share_drop_path
from pacebench.core.methods import METHODS, Method, SetupInfo
from pacebench.errors import DataError
from pacebench.plan.spec import DEFAULT_ADAPTER, RunSpec


@dataclass
class Prepared:
    model: nn.Module
    method: Method
    params: list[nn.Parameter]  # the trainable ones: adapters and head
    facts: dict[str, Any] = field(default_factory=dict)  # what method.setup reported (σ per position, ...)
    weights_sha256: str = ""


def attach(
    model: nn.Module,
    method: str,
    info: SetupInfo,
    adapter: str = DEFAULT_ADAPTER,
    rank: int | None = 10,
    method_config: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    adapter_options: dict[str, float | None] | None = None,
) -> Prepared:
    """Freezes `model`, injects adapters (`rank` None: the kind's size; `adapter_options`: its `adapter_scale` and
    `adapter_dropout`, None for the kind's defaults), shares DropPath if the method asks, moves it to `device`, sets
    it up. The method and its hyperparameters are checked before the model is touched: a typo leaves it as it was."""
    cls = METHODS.get(method)
    m = cls(cls.make_config(method_config or {}))
    options = adapter_options or {}
    adapters.inject(model, adapter, rank, options.get("adapter_scale"), options.get("adapter_dropout"))
    if m.shares_drop_path:
        share_drop_path(model)
    model.to(device)
    facts = m.setup(model, info)
    model.train()
    return Prepared(model, m, [p for p in model.parameters() if p.requires_grad], facts)


def prepare(
    spec: RunSpec,
    info: SetupInfo,
    device: torch.device | str = "cpu",
    weights: Path | None = None,
    weights_dir: Path | None = None,
) -> Prepared:
    """The run's backbone from its local weights file, checked against the spec's hash, then `attach`."""
    t = spec.train
    model, sha = backbones.build(
        spec.backbone, info.num_classes, t.image_size, t.drop_path, weights, weights_dir=weights_dir
    )
    if spec.weights_sha256 and sha != spec.weights_sha256:
        raise DataError(
            f"the weights file for {spec.backbone} has SHA-256 {sha[:12]}..., but this run was planned "
            f"with {spec.weights_sha256[:12]}...; the file changed since planning: plan the runs again"
        )
    out = attach(
        model,
        spec.method,
        info,
        t.adapter,
        t.rank,
        spec.method_config,
        device,
        {"adapter_scale": t.adapter_scale, "adapter_dropout": t.adapter_dropout},
    )
    out.weights_sha256 = sha
    return out
