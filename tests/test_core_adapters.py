"""The paper's own adapter family (parts on every Linear): exact formulas, zero-init identity, merge/unmerge
equivalence, trainable structure and counts, layouts. Every registered kind is covered in test_adapter_kinds.py."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from torch import nn

from pacebench.core import adapters
from pacebench.core.adapters import KINDS, PART_KINDS, AdaptedLinear, NoisyHead, parse_kind
from pacebench.core.adapters.base import PARTS, AdapterPart
from pacebench.errors import UsageError

RANK = 3


def images(n: int = 2, size: int = 32, dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def randomise(model: nn.Module, scale: float = 0.2, seed: int = 2) -> None:
    """Non-zero values in every adapter parameter (a merge test with D = 0 proves nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def pretrained_like(model: nn.Module, seed: int = 6) -> nn.Module:
    """timm initialises Linear biases to zero, which would make every b0 ⊙ δb term vanish: give them values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def adapted(make, kind: str, rank: int = RANK) -> tuple[nn.Module, nn.Module]:
    """(plain model, adapted copy) with identical base weights, both float64 in eval mode."""
    plain = pretrained_like(make())
    model = copy.deepcopy(plain)
    adapters.inject(model, kind, rank)
    return plain.double().eval(), model.double().eval()


def expected_adapter_count(layer: AdaptedLinear, kind: str, rank: int) -> int:
    out_f, in_f, has_bias = layer.out_features, layer.in_features, layer.base.bias is not None
    total = 0
    for part in kind.split("+"):
        if part == "lora_add":
            total += rank * (out_f + in_f) + out_f  # D, U, δb (on every layer)
        elif part == "lora_mul":
            total += rank * (out_f + in_f) + (out_f if has_bias else 0)  # D, U, δb (where b0 exists)
        elif part == "vpt_add":
            total += rank * in_f + rank  # P_d, P_u
        else:
            raise AssertionError(f"no formula for {part}")
    return total


# ------------------------------------------------------------------------------------- one layer, exact formulas


@pytest.fixture
def linear() -> nn.Linear:
    torch.manual_seed(3)
    return nn.Linear(6, 4).double()


def _fill(part: AdapterPart, seed: int = 4) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in part.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_lora_mul_delta_is_hadamard_with_frozen_weight(linear):
    part = PARTS.get("lora_mul")(linear, 2).double()
    _fill(part)
    D, U, db = part.lora_down, part.lora_up, part.bias_scale
    torch.testing.assert_close(part.delta_weight(linear), linear.weight * (D @ U), rtol=0, atol=1e-14)
    torch.testing.assert_close(part.delta_bias(linear), linear.bias * db, rtol=0, atol=1e-14)
    assert D.shape == (4, 2) and U.shape == (2, 6) and db.shape == (4,)


def test_lora_add_delta_is_plain_low_rank_product(linear):
    part = PARTS.get("lora_add")(linear, 2).double()
    _fill(part)
    torch.testing.assert_close(part.delta_weight(linear), part.lora_down @ part.lora_up, rtol=0, atol=1e-14)
    torch.testing.assert_close(part.delta_bias(linear), part.bias_delta, rtol=0, atol=1e-14)


def test_lora_add_adds_delta_b_directly_by_hand():
    """The authors' LoRA_add: h = W0 x + b0 + D U x + δb, merged bias b0 + δb (not b0 ⊙ δb), hand-computed."""
    base = nn.Linear(2, 2).double()
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        base.bias.copy_(torch.tensor([0.5, -1.0]))  # b0 != 0
    part = PARTS.get("lora_add")(base, 1).double()
    with torch.no_grad():
        part.lora_down.copy_(torch.tensor([[1.0], [2.0]]))  # D
        part.lora_up.copy_(torch.tensor([[3.0, -1.0]]))  # U
        part.bias_delta.copy_(torch.tensor([0.25, 2.0]))  # δb != 0
    layer = AdaptedLinear(base, [part], position=0).eval()
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    # W0 x + b0 = [3.5, 6.0]; D U = [[3, -1], [6, -2]], D U x = [2, 4]; + δb = [0.25, 2.0]
    expected = torch.tensor([[3.5 + 2 + 0.25, 6.0 + 4 + 2.0]], dtype=torch.float64)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)
    layer.merge()
    torch.testing.assert_close(base.bias, torch.tensor([0.75, 1.0], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-12)


def test_lora_add_has_delta_b_on_bias_free_layers_too():
    base = nn.Linear(3, 2, bias=False).double()
    part = PARTS.get("lora_add")(base, 1).double()
    _fill(part)
    layer = AdaptedLinear(base, [part], position=0).eval()
    x = torch.randn(4, 3, dtype=torch.float64)
    expected = x @ (base.weight + part.lora_down @ part.lora_up).T + part.bias_delta
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    layer.merge()
    torch.testing.assert_close(base.bias, part.bias_delta.detach(), rtol=0, atol=0)
    assert PARTS.get("lora_mul")(nn.Linear(3, 2, bias=False), 1).bias_scale is None  # LoRA_mul scales b0: none here


def test_vpt_add_folds_a_prompt_into_the_bias(linear):
    part = PARTS.get("vpt_add")(linear, 2).double()
    _fill(part)
    prompt = part.prompt_down @ part.prompt_up  # in x 1
    assert part.delta_weight(linear) is None
    torch.testing.assert_close(part.delta_bias(linear), (linear.weight @ prompt).squeeze(-1), rtol=0, atol=1e-14)
    # W0 (x + p) + b0 == W0 x + b0 + Δb: the prompt really is an input-space shift
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(linear(x + prompt.squeeze(-1)), linear(x) + part.delta_bias(linear))


@pytest.mark.parametrize("kind", PART_KINDS)
def test_initialisation_zero_delta_but_not_all_zero(linear, kind):
    layer = AdaptedLinear(linear, [PARTS.get(n)(linear, 2).double() for n in parse_kind(kind)], position=0)
    for part in layer.parts:
        if hasattr(part, "lora_down"):
            bias = part.bias_delta if hasattr(part, "bias_delta") else part.bias_scale
            assert torch.count_nonzero(part.lora_down) == 0 and torch.count_nonzero(bias) == 0
            assert torch.count_nonzero(part.lora_up) == part.lora_up.numel()  # xavier-uniform, not zero
        else:
            assert torch.count_nonzero(part.prompt_down) == 0
            assert torch.count_nonzero(part.prompt_up) == part.prompt_up.numel()
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    assert torch.equal(layer(x), linear(x))


@pytest.mark.parametrize("kind", PART_KINDS)
def test_adapted_linear_forward_is_base_plus_summed_deltas(linear, kind):
    layer = AdaptedLinear(linear, [PARTS.get(n)(linear, 2).double() for n in parse_kind(kind)], position=0)
    for i, part in enumerate(layer.parts):
        _fill(part, seed=10 + i)
    dw = sum(
        (p.delta_weight(linear) for p in layer.parts if p.delta_weight(linear) is not None),
        torch.zeros_like(linear.weight),
    )
    db = sum(p.delta_bias(linear) for p in layer.parts)
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    expected = x @ (linear.weight + dw).T + linear.bias + db
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(layer(x), linear(x))
    torch.testing.assert_close(layer.delta(x), expected - linear(x), rtol=1e-12, atol=1e-12)


def test_merge_adds_a_bias_to_a_bias_free_layer_and_unmerge_removes_its_value():
    torch.manual_seed(5)
    base = nn.Linear(6, 4, bias=False).double()
    layer = AdaptedLinear(base, [PARTS.get("vpt_add")(base, 2).double()], position=0)
    _fill(layer.parts[0])
    x = torch.randn(3, 6, dtype=torch.float64)
    before = layer(x)
    layer.merge()
    torch.testing.assert_close(layer(x), before, rtol=1e-12, atol=1e-12)
    layer.unmerge()
    torch.testing.assert_close(layer(x), before, rtol=1e-12, atol=1e-12)
    assert base.bias is not None and torch.count_nonzero(base.bias) == 0  # the bias merge added now holds zero


# --------------------------------------------------------------------------------------------- whole backbones


@pytest.mark.parametrize("family", ["vit", "swin"])
@pytest.mark.parametrize("kind", PART_KINDS)
def test_zero_init_reproduces_plain_model_exactly(make_vit, make_swin, family, kind):
    plain, model = adapted(make_vit if family == "vit" else make_swin, kind)
    x = images()
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


@pytest.mark.parametrize("family", ["vit", "swin"])
@pytest.mark.parametrize("kind", PART_KINDS)
def test_merged_equals_unmerged_and_unmerge_restores_base(make_vit, make_swin, family, kind):
    plain, model = adapted(make_vit if family == "vit" else make_swin, kind)
    randomise(model)
    x = images()
    base_before = {n: t.clone() for n, t in model.state_dict().items() if ".base." in n}
    assert base_before, "no base weights found"
    with torch.no_grad():
        unmerged = model(x)
        assert (unmerged - plain(x)).abs().max() > 1e-3, "random adapters must change the output"
        with adapters.merged(model):
            assert all(layer.merged for layer in adapters.adapted_layers(model))
            changed = [
                n for n, t in model.state_dict().items() if n in base_before and not torch.equal(t, base_before[n])
            ]
            assert changed, "merge must fold the adapter into the base weights"
            merged_out = model(x)
        again = model(x)
    torch.testing.assert_close(merged_out, unmerged, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(again, unmerged, rtol=1e-12, atol=1e-12)
    assert not any(layer.merged for layer in adapters.adapted_layers(model))
    after = model.state_dict()
    for name, value in base_before.items():
        torch.testing.assert_close(after[name], value, rtol=0, atol=1e-12, msg=name)


def test_merge_twice_is_idempotent_and_merged_model_ignores_adapter_edits(make_vit):
    _, model = adapted(make_vit, "lora_mul+vpt_add")
    randomise(model)
    x = images()
    with torch.no_grad():
        ref = model(x)
        adapters.merge(model)
        adapters.merge(model)  # must not fold twice
        torch.testing.assert_close(model(x), ref, rtol=1e-10, atol=1e-10)
        adapters.unmerge(model)
        adapters.unmerge(model)
        torch.testing.assert_close(model(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", PART_KINDS)
def test_disabled_gives_plain_backbone_with_current_head(make_vit, kind):
    plain, model = adapted(make_vit, kind)
    randomise(model)
    x = images()
    with torch.no_grad():
        with adapters.disabled(model):
            off = model(x)
        on = model(x)
    assert torch.equal(off, plain(x))
    assert not torch.allclose(on, off)


@pytest.mark.parametrize("family", ["vit", "swin"])
@pytest.mark.parametrize("kind", PART_KINDS)
def test_only_adapters_and_head_are_trainable_and_counts_follow_the_formula(make_vit, make_swin, family, kind):
    model = (make_vit if family == "vit" else make_swin)()
    head = model.head if family == "vit" else model.head.fc
    head_in, classes = head.in_features, head.out_features
    n_params_before = sum(p.numel() for p in model.parameters())
    adapters.inject(model, kind, RANK)

    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    by_type = [p for m in model.modules() if isinstance(m, AdapterPart) for p in m.parameters()]
    head_params = [p for m in model.modules() if isinstance(m, NoisyHead) for p in m.parameters()]
    assert {id(p) for p in adapters.adapter_parameters(model)} == {id(p) for p in by_type}
    assert trainable == {id(p) for p in by_type} | {id(p) for p in head_params}
    assert {id(p) for p in head_params} == {id(head.weight), id(head.bias)}
    assert all(p.requires_grad for p in by_type)

    layers = list(adapters.adapted_layers(model))
    expected_adapter = sum(expected_adapter_count(layer, kind, RANK) for layer in layers)
    counts = adapters.count_parameters(model)
    assert counts.adapter == expected_adapter
    assert counts.head == head_in * classes + classes
    assert counts.total == sum(p.numel() for p in model.parameters() if p.requires_grad)
    # frozen weights untouched in number: the model grew by exactly the adapter parameters
    assert sum(p.numel() for p in model.parameters()) == n_params_before + expected_adapter


def test_adapter_parameters_are_found_by_type_not_by_name(make_vit):
    model = make_vit()
    adapters.inject(model, "lora_mul+vpt_add", RANK)
    decoy = nn.Module()  # parameters named like LoRA's, on a module that is no adapter: never counted
    decoy.lora_down, decoy.lora_up = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    wrapper = nn.ModuleDict({"some_other_name": model, "lora": decoy})
    found = {id(p) for p in adapters.adapter_parameters(wrapper)}
    by_type = {id(p) for m in model.modules() if isinstance(m, AdapterPart) for p in m.parameters()}
    assert found == by_type and len(found) == 3 * 4 * 5
    assert id(decoy.lora_down) not in found and id(decoy.lora_up) not in found


def test_gradients_reach_zero_initialised_adapters(make_vit):
    model = pretrained_like(make_vit(drop_path_rate=0.0))
    adapters.inject(model, "lora_mul+vpt_add", RANK)
    model(images(dtype=torch.float32)).pow(2).sum().backward()
    for layer in adapters.adapted_layers(model):
        lora, vpt = layer.parts
        assert torch.count_nonzero(lora.lora_down.grad) > 0  # D receives gradient although D = 0
        assert torch.count_nonzero(lora.lora_up.grad) == 0  # U's gradient goes through D = 0
        assert torch.count_nonzero(vpt.prompt_down.grad) > 0
        assert torch.count_nonzero(lora.bias_scale.grad) > 0
        assert layer.base.weight.grad is None


def test_vit_b16_lora_vpt_rank10_has_the_papers_trainable_count():
    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=100)
        adapters.inject(model, "lora_mul+vpt_add", 10)
    counts = adapters.count_parameters(model)
    assert (counts.adapter, counts.head, counts.total) == (2_203_104, 76_900, 2_280_004)
    assert counts.total == sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------------- layouts


def test_vit_positions_are_block_indices_and_head_is_depth(make_vit):
    model = make_vit()
    layout = adapters.inject(model, "lora_add", RANK)
    assert (layout.family, layout.depth, layout.head_path) == ("vit", 3, "head")
    for i, block in enumerate(model.blocks):
        layers = [m for m in block.modules() if isinstance(m, AdaptedLinear)]
        assert len(layers) == 4  # qkv, proj, fc1, fc2
        assert {m.position for m in layers} == {i}
        assert isinstance(block.attn.qkv, AdaptedLinear) and isinstance(block.mlp.fc2, AdaptedLinear)
    assert isinstance(model.head, NoisyHead) and model.head.position == 3
    # no Linear is left unadapted outside the head
    bare = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and not n.endswith(".base") and n != "head.linear"
    ]
    assert bare == []


def test_swin_adapters_on_every_block_linear_and_downsample_sharing_first_block_position(make_swin):
    model = make_swin()
    linears_before = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    layout = adapters.inject(model, "lora_mul+vpt_add", RANK)
    assert (layout.family, layout.depth, layout.head_path) == ("swin", 5, "head.fc")

    adapted_names = {n for n, m in model.named_modules() if isinstance(m, AdaptedLinear)}
    assert adapted_names == linears_before - {"head.fc"}
    assert {f"layers.{s}.downsample.reduction" for s in (1, 2, 3)} <= adapted_names

    position = 0
    for s, stage in enumerate(model.layers):
        first = position
        for block in stage.blocks:
            layers = [m for m in block.modules() if isinstance(m, AdaptedLinear)]
            assert len(layers) == 4 and {m.position for m in layers} == {position}
            position += 1
        if s > 0:
            assert stage.downsample.reduction.position == first
    assert position == 5
    assert isinstance(model.head.fc, NoisyHead) and model.head.fc.position == 5
    with torch.no_grad():
        assert model(images(dtype=torch.float32)).shape == (2, 5)


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kind", ["lora_mul+lora", "lora_mul+", "lora_mul+lora_mul", "LoRA_mul", "vpt_add+prefix", ""])
def test_unknown_kind_is_a_usage_error(make_vit, kind):
    model = make_vit()
    with pytest.raises(UsageError):
        adapters.inject(model, kind, RANK)
    assert not any(isinstance(m, adapters.Adapter | NoisyHead) for m in model.modules())


def test_rank_below_one_is_a_usage_error(make_vit):
    with pytest.raises(UsageError, match="rank"):
        adapters.inject(make_vit(), "lora_add", 0)


def test_unknown_backbone_is_a_usage_error():
    with pytest.raises(UsageError):
        adapters.inject(nn.Sequential(nn.Linear(3, 3)), "lora_add", RANK)


def test_every_kind_is_described_and_parses():
    assert set(adapters.DESCRIPTIONS) == set(KINDS)
    for kind in KINDS:
        assert "+".join(parse_kind(kind)) == kind
