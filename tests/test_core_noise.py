"""Noise kinds (shape, statistics, train/eval), σ schedules over depth, and where apply_noise puts each σ."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pacebench.core import adapters
from pacebench.core.adapters import AdaptedLinear, NoisyHead, apply_noise
from pacebench.core.adapters.base import PARTS
from pacebench.core.noise import (
    NOISES,
    SCHEDULES,
    Noise,
    dropout,
    gauss_add,
    gauss_mul,
    noise_shape,
    schedule,
)
from pacebench.errors import UsageError


def _z(fn, shape: tuple[int, ...], value: float, sigma: float, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return fn(torch.full(shape, value, dtype=torch.float64), sigma)


# ------------------------------------------------------------------------------------------------------ shape


@pytest.mark.parametrize("shape, expected", [((4, 7, 5), (4, 1, 5)), ((4, 3, 6, 5), (4, 1, 1, 5)), ((4, 5), (4, 5))])
def test_noise_shape_is_per_sample_and_channel(shape, expected):
    assert noise_shape(torch.empty(shape)) == expected


@pytest.mark.parametrize("fn", [gauss_mul, gauss_add])
@pytest.mark.parametrize("shape", [(6, 9, 8), (6, 3, 4, 8), (6, 8)])
def test_gaussian_noise_shared_over_tokens_distinct_over_samples_and_channels(fn, shape):
    out = _z(fn, shape, 1.0, 0.5)
    assert out.shape == shape
    flat = out.reshape(shape[0], -1, shape[-1])  # [B, tokens, C]
    assert torch.equal(flat, flat[:, :1].expand_as(flat)), "one draw per sample and channel, shared over tokens"
    z = flat[:, 0]  # [B, C]
    assert z.unique().numel() == z.numel(), "every sample and channel gets its own draw"


def test_dropout_noise_shared_over_tokens():
    out = _z(dropout, (64, 9, 16), 1.0, 0.5)
    assert torch.equal(out, out[:, :1].expand_as(out))
    z = out[:, 0]
    assert (z == 0).any(dim=0).all() and (z > 0).any(dim=0).all(), "masks must differ across samples"
    assert (z == 0).any(dim=1).all() and (z > 0).any(dim=1).all(), "masks must differ across channels"


# ------------------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("sigma", [0.3, 1.2])
def test_gauss_mul_has_mean_one_and_std_sigma(sigma):
    z = _z(gauss_mul, (20_000, 1, 20), 1.0, sigma)
    assert abs(z.mean().item() - 1) < 4 * sigma / 20_000**0.5 / 20**0.5
    assert abs(z.std().item() / sigma - 1) < 0.01


def test_gauss_mul_multiplies_the_input():
    torch.manual_seed(1)
    t = torch.randn(500, 3, 4, dtype=torch.float64) + 3
    torch.manual_seed(2)
    z = gauss_mul(torch.ones_like(t), 0.7)
    torch.manual_seed(2)
    torch.testing.assert_close(gauss_mul(t, 0.7), t * z, rtol=1e-14, atol=0)


@pytest.mark.parametrize("sigma", [0.3, 1.2])
def test_gauss_add_is_an_offset_with_mean_zero_and_std_sigma(sigma):
    torch.manual_seed(3)
    t = torch.randn(20_000, 1, 20, dtype=torch.float64) * 5
    torch.manual_seed(4)
    eps = gauss_add(t, sigma) - t
    torch.manual_seed(4)
    torch.testing.assert_close(gauss_add(torch.zeros_like(t), sigma), eps, rtol=0, atol=1e-12)  # does not scale t
    assert abs(eps.mean().item()) < 4 * sigma / 400_000**0.5
    assert abs(eps.std().item() / sigma - 1) < 0.01


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_keep_rate_and_inverted_scaling(p):
    z = _z(dropout, (20_000, 1, 20), 1.0, p)
    assert z.unique().numel() == 2 and z.min() == 0
    keep = (z != 0).double().mean().item()
    assert abs(keep - (1 - p)) < 0.005
    assert abs(z.mean().item() - 1) < 0.01
    torch.testing.assert_close(z[z != 0], torch.full_like(z[z != 0], 1 / (1 - p)))


def test_noise_module_is_absent_in_eval_and_at_zero_sigma():
    t = torch.randn(8, 5, 6)
    for kind in NOISES.names():
        noisy = Noise(kind, 0.5).train()
        assert not torch.equal(noisy(t), t), kind
        assert torch.equal(noisy.eval()(t), t), kind
        assert torch.equal(Noise(kind, 0.0).train()(t), t), kind


def test_unknown_noise_kind_is_a_usage_error():
    with pytest.raises(UsageError):
        Noise("gauss_div", 1.0)


# -------------------------------------------------------------------------------------------------- schedules


def test_code_schedule_vit_b_matches_authors_values():
    expected = [0, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert schedule("code", "vit", 12, 1.2) == pytest.approx(expected, abs=1e-12)


def test_code_schedule_swin_b_perturbs_every_position():
    sigma = 1.5
    got = schedule("code", "swin", 24, sigma)
    assert got == pytest.approx([sigma * (25 - pos) / 25 for pos in range(25)], abs=1e-12)
    assert len(got) == 25 and min(got) > 0 and got[0] == pytest.approx(sigma) and got[24] == pytest.approx(sigma / 25)


def test_paper_schedule_is_linear_over_every_position():
    assert schedule("paper", "vit", 12, 1.3) == pytest.approx([1.3 * (13 - pos) / 13 for pos in range(13)])


def test_const_schedule():
    assert schedule("const", "vit", 12, 1.2) == pytest.approx([0.0] + [1.2] * 12)
    assert schedule("const", "swin", 24, 0.9) == pytest.approx([0.9] * 25)


def test_increasing_schedule_reverses_the_perturbed_positions():
    assert schedule("increasing", "vit", 12, 1.2) == pytest.approx(
        [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2], abs=1e-12
    )
    assert schedule("increasing", "swin", 24, 1.0) == pytest.approx([(pos + 1) / 25 for pos in range(25)], abs=1e-12)


@pytest.mark.parametrize("name", ["code", "paper", "const", "increasing"])
def test_every_schedule_is_zero_at_sigma_zero_and_scales_linearly(name):
    assert name in SCHEDULES
    assert schedule(name, "vit", 12, 0.0) == [0.0] * 13
    one, two = schedule(name, "vit", 12, 1.0), schedule(name, "vit", 12, 2.0)
    assert two == pytest.approx([2 * s for s in one])


def test_schedule_rejects_negative_sigma_and_unknown_names():
    with pytest.raises(UsageError):
        schedule("code", "vit", 12, -0.1)
    with pytest.raises(UsageError):
        schedule("nonexistent", "vit", 12, 1.0)


# ------------------------------------------------------------------------------------------------ apply_noise


def _vit(make_vit, kind="lora_mul+vpt_add", drop_path_rate=0.0):
    model = make_vit(drop_path_rate=drop_path_rate)
    adapters.inject(model, kind, 3)
    return model


@pytest.mark.parametrize("schedule_name", ["code", "paper", "const", "increasing"])
def test_apply_noise_puts_each_positions_sigma_on_layers_and_head(make_vit, schedule_name):
    model = _vit(make_vit)
    sigmas = apply_noise(model, "gauss_mul", 1.2, schedule_name)
    assert sigmas == pytest.approx(schedule(schedule_name, "vit", 3, 1.2))
    assert len(sigmas) == 4
    for i, block in enumerate(model.blocks):
        for layer in (m for m in block.modules() if isinstance(m, AdaptedLinear)):
            assert isinstance(layer.noise, Noise) and layer.noise.kind == "gauss_mul"
            assert layer.noise.sigma == pytest.approx(sigmas[i])
            assert layer.noise_target == "delta"
    assert isinstance(model.head, NoisyHead)
    assert model.head.noise.sigma == pytest.approx(sigmas[3])
    if schedule_name == "code":
        assert sigmas == pytest.approx([0.0, 1.2, 0.8, 0.4])


def test_apply_noise_on_swin_follows_positions(make_swin):
    model = make_swin()
    adapters.inject(model, "lora_add", 2)
    sigmas = apply_noise(model, "gauss_add", 1.0, "code")
    assert sigmas == pytest.approx([(6 - pos) / 6 for pos in range(6)])
    assert model.layers[2].downsample.reduction.noise.sigma == pytest.approx(sigmas[2])
    assert model.layers[2].blocks[1].mlp.fc1.noise.sigma == pytest.approx(sigmas[3])
    assert model.head.fc.noise.sigma == pytest.approx(sigmas[5])


def test_apply_noise_none_removes_all_noise_and_target_is_set(make_vit):
    model = _vit(make_vit)
    apply_noise(model, "gauss_mul", 1.0, target="output")
    assert all(m.noise_target == "output" for m in adapters.noisy_layers(model))
    assert apply_noise(model, None) == []
    for layer in adapters.noisy_layers(model):
        assert isinstance(layer.noise, nn.Identity) and layer.noise_target == "delta"
    with pytest.raises(UsageError):
        apply_noise(model, "nonexistent", 1.0)


def test_noise_multiplies_only_the_adapter_branch_of_a_layer():
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    layer = AdaptedLinear(base, [PARTS.get("lora_add")(base, 2)], position=1)
    with torch.no_grad():
        layer.parts[0].lora_down.normal_()
    layer.noise = Noise("gauss_mul", 0.8)
    x = torch.randn(3, 5, 6)
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)
    z = 1 + 0.8 * torch.randn(3, 1, 4)
    torch.testing.assert_close(out, base(x) + z * layer.delta(x))
    layer.noise_target = "output"
    torch.manual_seed(7)
    torch.testing.assert_close(layer(x), z * (base(x) + layer.delta(x)))
    layer.eval()
    torch.testing.assert_close(layer(x), base(x) + layer.delta(x))


def test_noisy_head_multiplies_logits_per_sample_and_class():
    torch.manual_seed(0)
    head = NoisyHead(nn.Linear(6, 4), position=3)
    head.noise = Noise("gauss_mul", 0.5)
    x = torch.randn(5, 6)
    torch.manual_seed(9)
    out = head(x)
    torch.manual_seed(9)
    torch.testing.assert_close(out, head.linear(x) * (1 + 0.5 * torch.randn(5, 4)))


def test_noise_changes_train_forwards_but_not_eval(make_vit):
    model = _vit(make_vit)
    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.normal_(0, 0.2)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        clean = model.eval()(x)
        apply_noise(model, "gauss_mul", 1.0)
        model.train()
        a, b = model(x), model(x)
        assert torch.equal(model.eval()(x), clean), "eval mode must be noise-free"
        model.train()
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, clean)
    apply_noise(model, "gauss_mul", 0.0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), clean, rtol=1e-5, atol=1e-6)  # σ = 0 in train mode: no noise


def test_apply_noise_respects_the_models_current_mode(make_vit):
    model = _vit(make_vit)
    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.normal_(0, 0.2)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        clean = model.eval()(x)
        apply_noise(model, "gauss_mul", 1.0)
        assert torch.equal(model(x), clean)


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    hook = model.head.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    model(x)
    hook.remove()
    return seen[0]


def test_noise_on_delta_leaves_zero_adapters_alone_but_output_noise_does_not(make_vit):
    """At zero init Δh = 0, so PACE's noise reaches the logits only through the head; PACE_h's reaches the blocks."""
    model = _vit(make_vit).train()
    x = torch.randn(4, 3, 32, 32)
    apply_noise(model, "gauss_mul", 1.0, target="delta")
    with torch.no_grad():
        assert torch.equal(_features(model, x), _features(model, x))
        assert not torch.allclose(model(x), model(x)), "the head's logits are noisy too"
    apply_noise(model, "gauss_mul", 1.0, target="output")
    with torch.no_grad():
        assert not torch.allclose(_features(model, x), _features(model, x))


def _swin_noise_draws(make_swin, group: str, batch: int = 8) -> dict[str, torch.Tensor]:
    """Per adapted layer, z = (h - W0 x - b0) / Δh as [B, rows per sample, tokens, C] (rows: Swin windows)."""
    model = make_swin(drop_path_rate=0.0)
    adapters.inject(model, "lora_add", 2)
    model.double()
    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.normal_(0, 0.5)
    apply_noise(model, "gauss_mul", 1.0, "const", group=group)
    model.train()
    draws: dict[str, torch.Tensor] = {}

    def measure(name):
        def hook(layer, args, out):
            x = args[0]
            z = (out - layer.base(x)) / layer.delta(x)
            z = z.reshape(z.shape[0], -1, z.shape[-1])  # rows as the layer sees them, tokens, channels
            draws[name] = z.reshape(batch, -1, *z.shape[1:])  # timm orders windows sample by sample

        return hook

    for name, layer in model.named_modules():
        if isinstance(layer, AdaptedLinear):
            layer.register_forward_hook(measure(name))
    torch.manual_seed(0)
    with torch.no_grad():
        model(torch.randn(batch, 3, 32, 32, dtype=torch.float64))
    assert len(draws) == 23
    return draws


@pytest.mark.parametrize("group", ["window", "sample"])
def test_swin_noise_is_per_window_by_default_and_per_sample_as_an_option(make_swin, group):
    """Statistics of z over Swin's layers: shared over the tokens of a row always; over the windows of a sample only
    with group "sample". With "window", the windows of one sample get independent N(1, σ²) draws."""
    draws = _swin_noise_draws(make_swin, group)
    window_layers = {n: z for n, z in draws.items() if z.shape[1] > 1}  # window attention of stages with >1 window
    assert window_layers and all(".attn." in n for n in window_layers)
    for z in draws.values():  # one value per (row, channel), shared by the tokens of that row
        assert float((z - z[:, :, :1]).abs().max()) < 1e-6
    per_window = torch.cat([z[:, :, 0].reshape(-1, z.shape[1], z.shape[-1]) for z in window_layers.values()], -1)
    spread = per_window - per_window[:, :1]  # how far each window's draw lies from its sample's first window
    if group == "sample":
        assert float(spread.abs().max()) < 1e-6
    else:
        values = per_window.flatten()
        assert values.numel() > 2000
        assert abs(float(values.mean()) - 1.0) < 0.1 and abs(float(values.std()) - 1.0) < 0.1
        # two independent N(1, 1) draws differ by N(0, 2): their difference has std sqrt(2)
        diffs = spread[:, 1:].flatten()
        assert abs(float(diffs.std()) - 2**0.5) < 0.15


def test_noise_group_is_validated_and_stored_in_the_method_config():
    from pacebench.core.methods import METHODS

    for name in ("pace", "noise", "pace_drop", "pace_fast", "pace_lazy", "pace_multi"):
        assert METHODS.get(name).make_config({}).as_dict()["noise_group"] == "window"
        assert METHODS.get(name).make_config({"noise_group": "sample"}).as_dict()["noise_group"] == "sample"
    with pytest.raises(UsageError, match="noise_group"):
        METHODS.get("pace").make_config({"noise_group": "token"})
    with pytest.raises(UsageError, match="noise group"):
        Noise("gauss_mul", 1.0, "token")


def test_apply_noise_keeps_model_copies_independent(make_vit):
    model = _vit(make_vit)
    other = copy.deepcopy(model)
    apply_noise(model, "gauss_mul", 1.0)
    assert all(isinstance(m.noise, nn.Identity) for m in adapters.noisy_layers(other))
