"""VPT_add: a layer-wise visual prompt p = P_d P_u (in x 1) added to the input, folded into the bias.

W0 (x + p) + b0 = W0 x + b0 + W0 p, so Δb = W0 p and ΔW = 0: unlike the original VPT, which concatenates prompt
tokens, this costs nothing at inference. P_d (in x r) starts at zero, P_u (r x 1) is xavier-uniform.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pacebench.core.adapters.base import PARTS, AdapterPart


@PARTS.register("vpt_add")
class VPTAdd(AdapterPart):
    name = "vpt_add"
    description = "VPT_add: Δb = W0 P_d P_u, a per-layer prompt folded into the bias"
    prompt = True

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.prompt_down = nn.Parameter(torch.zeros(base.in_features, rank))  # P_d
        self.prompt_up = nn.Parameter(torch.empty(rank, 1))  # P_u
        nn.init.xavier_uniform_(self.prompt_up)

    def delta_bias(self, base: nn.Linear) -> Tensor:
        return (base.weight @ (self.prompt_down @ self.prompt_up)).squeeze(-1)
