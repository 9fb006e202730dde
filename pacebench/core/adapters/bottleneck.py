"""The bottleneck MLP that the `adapter`, `houlsby` and `adaptformer` kinds share: down-projection, activation,
dropout, up-projection, with biases (d · h + h + h · d + d parameters for width h on a d-wide stream)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pacebench.core.droppath import SharedDropout


class QuickGELU(nn.Module):
    """x · sigmoid(1.702 x): the activation NOAH's adapter uses (CLIP's)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class Bottleneck(nn.Module):
    """up(dropout(act(down(x)))); the dropout's masks are shared by PACE's copies of a sample."""

    def __init__(self, dim: int, width: int, act: nn.Module, dropout: float) -> None:
        super().__init__()
        self.down = nn.Linear(dim, width)
        self.act = act
        self.dropout = SharedDropout(dropout)
        self.up = nn.Linear(width, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.dropout(self.act(self.down(x))))
