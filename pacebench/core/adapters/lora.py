"""LoRA in the two forms of the paper (§3.1, GLoRA's unified view), without α/r scaling or dropout, as in the
authors' code:

- `lora_add` (method B):  ΔW = D U,          Δb = δb        (δb on every layer, also where the base has no bias)
- `lora_mul` (method A):  ΔW = W0 ⊙ (D U),   Δb = b0 ⊙ δb   (δb only where the base has a bias)

So LoRA_add's merged bias is b0 + δb and LoRA_mul's is b0 ⊙ (1 + δb). D (out x r) and δb start at zero and U
(r x in) is xavier-uniform, so Δh = 0 at the start of training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pacebench.core.adapters.base import PARTS, AdapterPart


class _LoRA(AdapterPart):
    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.lora_down = nn.Parameter(torch.zeros(base.out_features, rank))  # D
        self.lora_up = nn.Parameter(torch.empty(rank, base.in_features))  # U
        nn.init.xavier_uniform_(self.lora_up)


@PARTS.register("lora_add")
class LoRAAdd(_LoRA):
    name = "lora_add"
    description = "LoRA_add: ΔW = D U, Δb = δb (Table 7 method B; merged bias b0 + δb)"

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__(base, rank)
        self.bias_delta = nn.Parameter(torch.zeros(base.out_features))  # δb, added as it is

    def delta_weight(self, base: nn.Linear) -> Tensor:
        return self.lora_down @ self.lora_up

    def delta_bias(self, base: nn.Linear) -> Tensor:
        return self.bias_delta


@PARTS.register("lora_mul")
class LoRAMul(_LoRA):
    name = "lora_mul"
    description = "LoRA_mul: ΔW = W0 ⊙ (D U), Δb = b0 ⊙ δb (Table 7 method A; with VPT_add the paper's LoRA+VPT)"

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__(base, rank)
        self.bias_scale = nn.Parameter(torch.zeros(base.out_features)) if base.bias is not None else None  # δb

    def delta_weight(self, base: nn.Linear) -> Tensor:
        return base.weight * (self.lora_down @ self.lora_up)

    def delta_bias(self, base: nn.Linear) -> Tensor | None:
        return None if self.bias_scale is None else base.bias * self.bias_scale
