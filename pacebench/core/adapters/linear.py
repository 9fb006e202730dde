"""`linear`: linear probing, the classification head alone on the frozen backbone (VTAB-1k's "Linear" row, as
reported by VPT: Jia et al., ECCV 2022; 0 backbone parameters, printed 0.04 M in NOAH's Table 1 where the average
VTAB-1k head is counted).

Where PACE's noise goes. There is no adapter in the backbone, so there is no Δh there: the head is the only trained
part, and as in the authors' code (the head is an adapter whose frozen part is zero) its logits get the noise,
z ⊙ (W_h f + b_h) with z per sample and class. With a frozen backbone the consistency term is then
‖(z1 - z2) ⊙ logits‖², whose expectation is 2σ²‖logits‖²: PACE on linear probing is a penalty on the logits' norm.
Nothing to merge: the model is the pre-trained backbone with a trained head.
"""

from __future__ import annotations

from torch import nn

from pacebench.core.adapters.kinds import Kind, Settings, register
from pacebench.core.adapters.layout import Layout


def build(model: nn.Module, layout: Layout, settings: Settings) -> None:
    """Nothing in the backbone: `adapters.inject` trains the head, as for every kind."""


register(
    Kind(
        "linear",
        "Linear probing: the head alone (VTAB-1k 'Linear'); PACE perturbs the logits",
        "VPT (Jia et al., ECCV 2022): the VTAB-1k 'Linear' row; 0 backbone parameters "
        "(NOAH prints 0.04 M: the mean head)",
        "the head's logits (there is no Δh in the backbone): PACE becomes a penalty on the logits' norm",
        build,
        size=None,
        mergeable=True,
    )
)
