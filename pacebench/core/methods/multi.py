"""PACE over M >= 2 weight-sharing networks (paper Fig. 5): M noisy copies in one forward pass.

CE is taken on the first copy, as in PACE. The consistency term is the mean over all M(M-1)/2 pairs of copies of
the PACE term mean_b ‖f_i(x) - f_j(x)‖², so M = 2 is exactly PACE and λ keeps its meaning as M grows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pacebench.core.methods.base import EFFICIENCY_TAG, StepOutput, consistency, cross_entropy, hp, register
from pacebench.core.methods.pace import NoisyMethod, PaceConfig, split_copies
from pacebench.core.prefix import forward_copies

MAX_COPIES = 16


@dataclass(frozen=True)
class MultiConfig(PaceConfig):
    copies: int = hp(3, "M: weight-sharing noisy copies per sample (M = 2 is PACE)", aliases=("M",), equals=("pace", 2))

    def validate(self) -> list[tuple[str, bool, str]]:
        # the batch goes through the network M times at once: beyond 16 copies memory, not PACE, is measured
        return [*super().validate(), ("copies", 2 <= self.copies <= MAX_COPIES, f"2 <= M <= {MAX_COPIES}")]


@register
class PaceMulti(NoisyMethod[MultiConfig]):
    name = "pace_multi"
    description = "PACE across M weight-sharing noisy copies: CE on the first, mean pairwise consistency"
    Config = MultiConfig
    tags = frozenset({EFFICIENCY_TAG})
    parts = ("ce", "consistency")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        m = self.cfg.copies
        outs = split_copies(forward_copies(model, x, m), m)
        ce = cross_entropy(outs[0], y)
        pairs = list(itertools.combinations(outs, 2))
        cons = torch.stack([consistency(a, b) for a, b in pairs]).mean()
        return StepOutput(ce + self.cfg.lam * cons, outs[0], {"ce": ce, "consistency": cons})
