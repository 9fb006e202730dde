"""PACE's own adapters (the paper's §3.1 and its code, `MaxwellYaoNi/PACE` `Vision/pace/residual_adapters.py`): parts
on every nn.Linear inside the blocks, each wrapped in an `AdaptedLinear` whose parts' ΔW and Δb add up.

One kind per registered part and per weight part joined with a prompt part: `lora_mul+vpt_add` is the paper's
default "LoRA+VPT" (Table 7 method A), `lora_add` its "LoRA" (method B, Table 2's LoRA row), `vpt_add` Table 2's
"VPT". A new part (`base.PARTS`) adds its kinds here by itself. PACE's noise multiplies each layer's Δh = ΔW x + Δb
per sample and output channel; every kind folds into a plain Linear (Eq. 13).
"""

from __future__ import annotations

from functools import partial

from torch import nn

from pacebench.core.adapters import lora, vpt  # noqa: F401  (the parts register themselves)
from pacebench.core.adapters.base import PARTS, AdaptedLinear
from pacebench.core.adapters.kinds import Kind, Settings, register, set_child
from pacebench.core.adapters.layout import Layout

SOURCE = (
    "PACE (Ni et al., NeurIPS 2024) §3.1 and its code (`Vision/pace/residual_adapters.py`): every nn.Linear of "
    "every block, no α/r scaling, no dropout"
)
NOISE = "Δh = ΔW x + Δb of every adapted Linear, and the head's logits"


def build(names: list[str], model: nn.Module, layout: Layout, settings: Settings) -> None:
    """Wraps every Linear of every layout group in an AdaptedLinear with the named parts at rank `settings.size`."""
    for group, position in layout.groups:
        targets = [(n, m) for n, m in group.named_modules() if isinstance(m, nn.Linear)]
        for name, linear in targets:
            parts = [PARTS.get(n)(linear, settings.size) for n in names]
            set_child(group, name, AdaptedLinear(linear, parts, position))


def _register_family() -> None:
    """Each weight part with each prompt part (the paper's LoRA+VPT family first), then each part alone."""
    weights = [cls for _, cls in PARTS.items() if not cls.prompt]
    prompts = [cls for _, cls in PARTS.items() if cls.prompt]
    kinds = {
        f"{w.name}+{p.name}": ([w.name, p.name], f"{w.description} + {p.description}") for w in weights for p in prompts
    }
    kinds.update({name: ([name], cls.description) for name, cls in PARTS.items()})
    for name, (names, description) in kinds.items():
        register(Kind(name, description, SOURCE, NOISE, partial(build, names), mergeable=True, family="pace"))


_register_family()
