"""Theorem 2 of the paper on models where it can be checked: the consistency between two multiplicatively
perturbed copies is, to leading order, 2σ² Σ_i θ_i² (∂f/∂θ_i)², so it scales as σ² and vanishes with the adapter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pacebench.core import adapters
from pacebench.core.adapters import AdaptedLinear, apply_noise
from pacebench.core.adapters.base import PARTS
from pacebench.core.methods import METHODS, SetupInfo
from pacebench.core.noise import Noise, gauss_mul

DRAWS = 200_000


@pytest.mark.parametrize("sigma", [0.1, 0.8])
def test_consistency_of_a_model_linear_in_its_weights_matches_theorem_2(sigma):
    """f(x) = Σ_i w_i (θ_i z_i) x_i with z ~ N(1, σ²) per weight: E[(f(z1) - f(z2))²] = 2σ² Σ_i θ_i² g_i²."""
    g = torch.Generator().manual_seed(0)
    d = 12
    w, theta, x = (torch.randn(d, generator=g, dtype=torch.float64) for _ in range(3))
    grad = w * x  # g_i = ∂f/∂θ_i at z = 1
    predicted = 2 * sigma**2 * (theta**2 * grad**2).sum()

    torch.manual_seed(1)
    z1 = gauss_mul(torch.ones(DRAWS, d, dtype=torch.float64), sigma)  # one draw per sample and weight
    z2 = gauss_mul(torch.ones(DRAWS, d, dtype=torch.float64), sigma)
    f1, f2 = (w * theta * z1 * x).sum(-1), (w * theta * z2 * x).sum(-1)
    estimate = (f1 - f2).pow(2).mean()
    assert float(estimate / predicted) == pytest.approx(1.0, abs=0.03)
    # the deterministic part cancels: the same model without noise agrees with itself
    assert float((f1.mean() - (w * theta * x).sum()).abs()) < 0.05 * float(predicted.sqrt())


@pytest.mark.parametrize("kind", ["lora_add", "lora_mul+vpt_add"])
def test_consistency_of_a_real_adapted_layer_matches_theorem_2(kind):
    """f(x) = v · (W0 x + b0 + z ⊙ Δh): the only noisy quantity is Δh, so E[(f1 - f2)²] = 2σ² Σ_c v_c² Δh_c²."""
    torch.manual_seed(2)
    sigma, n = 0.5, DRAWS // 2
    base = nn.Linear(6, 5).double()
    layer = AdaptedLinear(base, [PARTS.get(p)(base, 2).double() for p in kind.split("+")], position=1)
    with torch.no_grad():
        for p in layer.parts.parameters():
            p.normal_(0, 0.5)
    layer.noise = Noise("gauss_mul", sigma)
    layer.train()
    v = torch.randn(5, dtype=torch.float64)
    x = torch.randn(6, dtype=torch.float64)
    with torch.no_grad():
        delta = layer.delta(x)
        predicted = 2 * sigma**2 * (v**2 * delta**2).sum()
        f = layer(x.expand(2 * n, 6)) @ v  # every row gets its own noise
    estimate = (f[:n] - f[n:]).pow(2).mean()
    assert float(estimate / predicted) == pytest.approx(1.0, abs=0.03)


def _trained_vit(make_vit) -> tuple[nn.Module, object]:
    """A tiny ViT after three PACE steps (adapters away from zero); no DropPath, no dropout."""
    model = make_vit(depth=3, drop_path_rate=0.0)
    adapters.inject(model, "lora_mul+vpt_add", 4)
    cls = METHODS.get("pace")
    method = cls(cls.make_config({"sigma": 1.2, "lam": 1.0}))
    method.setup(model, SetupInfo(8, 5))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 5, (8,), generator=g)
        method.step(model, (x, y, torch.arange(8)), optimizer, params)
    return model.double(), method


def _consistency(model: nn.Module, method, sigma: float, x: torch.Tensor, head_noise: bool = True) -> float:
    apply_noise(model, "gauss_mul", sigma)
    if not head_noise:  # the blocks' Δh noise alone
        model.head.noise = nn.Identity()
    model.train()
    torch.manual_seed(7)  # the same standard-normal draws at every σ: only their scale changes
    with torch.no_grad():
        out = method.loss(model, x, torch.zeros(x.shape[0], dtype=torch.long), torch.arange(x.shape[0]))
    return out.parts["consistency"].item()


@pytest.mark.parametrize("head_noise", [True, False])
def test_pace_consistency_scales_with_sigma_squared_on_a_trained_vit(make_vit, head_noise):
    model, method = _trained_vit(make_vit)
    assert all(torch.count_nonzero(layer.parts[0].lora_down) for layer in adapters.adapted_layers(model))
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    small, double = (_consistency(model, method, s, x, head_noise) for s in (0.01, 0.02))
    assert small > 0
    assert small / double == pytest.approx(0.25, rel=0.02)
    assert _consistency(model, method, 0.0, x, head_noise) == 0.0
    # far from the small-σ regime the quadratic law no longer holds exactly, but the term keeps growing
    assert _consistency(model, method, 1.0, x, head_noise) > 100 * double


def test_block_noise_vanishes_with_the_adapter(make_vit):
    """Noise multiplies Δh: with every adapter back at zero, only the head's noise can separate the two copies."""
    model, method = _trained_vit(make_vit)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    apply_noise(model, "gauss_mul", 1.0)
    model.head.noise = nn.Identity()
    with torch.no_grad():
        for part in (m for layer in adapters.adapted_layers(model) for m in layer.parts):
            for name in ("lora_down", "prompt_down", "bias_scale", "bias_delta"):
                if getattr(part, name, None) is not None:
                    getattr(part, name).zero_()
        out = method.loss(model.train(), x, torch.zeros(16, dtype=torch.long), torch.arange(16))
    assert out.parts["consistency"].item() == 0.0
