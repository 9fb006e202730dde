"""Every registered adapter kind (parametrized over the registry, so a new kind is covered the day it is added):
it trains a step, merges exactly where it merges (non-zero adapters), switches off to the pre-trained backbone,
counts at ViT-B/16 what its formula and its source's printed number say, PACE at σ = 0 is its baseline, and PACE's
noise is per sample on the adapter's output Δh only, never on the frozen path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from pacebench.core import adapters
from pacebench.core.adapters import ADAPTERS, KINDS, PART_KINDS, Adapter, NoisyHead
from pacebench.core.adapters.base import Noisy, plain_paths
from pacebench.core.footprint import describe, printed_counts
from pacebench.core.methods import METHODS, SetupInfo
from pacebench.core.noise import Noise
from pacebench.core.prefix import noise_free_blocks
from pacebench.core.prepare import attach
from pacebench.errors import UsageError

B, CLASSES, RANK = 3, 5, 4
VIT_KINDS = KINDS
SWIN_KINDS = [k for k in KINDS if "swin" in ADAPTERS.get(k).families]


def images(n: int = B, dtype: torch.dtype = torch.float64, seed: int = 1) -> Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def randomise(model: nn.Module, scale: float = 0.1, seed: int = 2, noisy_only: bool = False) -> None:
    """Moves every adapter parameter away from its start (a merge test with B = 0 proves nothing); `noisy_only`
    leaves the parameters of adapters that carry no noise (full's class and position embeddings) as they are."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in adapters.adapter_modules(model):
            if noisy_only and not isinstance(m, Noisy):
                continue
            for p in m.adapter_parameters():
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def adapted(make, kind: str, **options) -> tuple[nn.Module, nn.Module]:
    """(the plain model, an adapted copy with the same weights), float64, eval mode."""
    plain = make()
    with torch.no_grad():  # timm's zero biases would hide every bias-scaling and bias-offset path
        for m in plain.modules():
            if isinstance(m, nn.Linear | nn.LayerNorm) and m.bias is not None:
                m.bias.normal_(0, 0.1)
    model = copy.deepcopy(plain)
    adapters.inject(model, kind, RANK, **options)
    return plain.double().eval(), model.double().eval()


def maker(family: str, make_vit, make_swin):
    return {"vit": lambda: make_vit(drop_path_rate=0.0), "swin": lambda: make_swin(drop_path_rate=0.0)}[family]


FAMILIES = [("vit", k) for k in VIT_KINDS] + [("swin", k) for k in SWIN_KINDS]


# ------------------------------------------------------------------------------------------- structure and training


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_described_with_its_source_and_where_the_noise_goes(kind):
    entry = ADAPTERS.get(kind)
    assert entry.name == kind and entry.description and entry.source and entry.noise
    assert entry.mergeable or entry.why_not_mergeable, "a kind that cannot merge says why (export-model prints it)"
    assert adapters.parse_kind(kind)


@pytest.mark.parametrize(("family", "kind"), FAMILIES)
def test_only_adapters_and_head_train_and_two_pace_steps_move_only_them(make_vit, make_swin, family, kind):
    ready = attach(maker(family, make_vit, make_swin)(), "pace", SetupInfo(8, CLASSES), kind, RANK)
    model = ready.model
    head = [p for m in model.modules() if isinstance(m, NoisyHead) for p in m.parameters()]
    trained = {id(p) for p in adapters.adapter_parameters(model)} | {id(p) for p in head}
    assert {id(p) for p in ready.params} == trained
    assert adapters.count_parameters(model).total == sum(p.numel() for p in ready.params)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in trained}
    frozen.update({n: b.clone() for n, b in model.named_buffers()})
    before = [p.detach().clone() for p in ready.params]
    optimizer = torch.optim.AdamW(ready.params, lr=1e-2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, CLASSES, (4,), generator=g)
    for _ in range(2):
        out = ready.method.step(model, (x, y, torch.arange(4)), optimizer, ready.params)
        assert torch.isfinite(out.loss) and out.parts["consistency"] > 0
    moved = [p for p, q in zip(adapters.adapter_parameters(model), before, strict=False) if not torch.equal(p, q)]
    assert moved or kind == "linear", "the adapters train"
    now = {**{n: p for n, p in model.named_parameters()}, **dict(model.named_buffers())}
    assert [n for n, value in frozen.items() if not torch.equal(now[n], value)] == [], "frozen tensors stay"


@pytest.mark.parametrize(("family", "kind"), FAMILIES)
def test_merged_equals_unmerged_and_unmerge_restores_the_frozen_weights(make_vit, make_swin, family, kind):
    plain, model = adapted(maker(family, make_vit, make_swin), kind)
    randomise(model)
    x = images()
    frozen = {n: t.clone() for n, t in model.state_dict().items()}
    with torch.no_grad():
        unmerged = model(x)
        if kind != "linear":
            assert (unmerged - plain(x)).abs().max() > 1e-4, "non-zero adapters change the output"
        with adapters.merged(model):
            merged = model(x)
            if ADAPTERS.get(kind).mergeable:
                assert all(m.merged for m in adapters.adapter_modules(model) if type(m).merge is not Adapter.merge)
        again = model(x)
    torch.testing.assert_close(merged, unmerged, rtol=1e-10, atol=1e-10)
    assert torch.equal(again, unmerged)
    state = model.state_dict()
    for name, value in frozen.items():
        assert torch.equal(state[name], value), f"{name} differs after unmerge"
    created = set(state) - set(frozen)  # a merge gives a bias-free layer a bias, which then holds zero
    assert all(name.endswith("bias") and not state[name].any() for name in created), created


@pytest.mark.parametrize(("family", "kind"), FAMILIES)
def test_switched_off_it_is_the_pretrained_backbone_with_the_current_head(make_vit, make_swin, family, kind):
    plain, model = adapted(maker(family, make_vit, make_swin), kind)
    randomise(model)
    x = images()
    with torch.no_grad():
        with adapters.disabled(model):
            off = model(x)
        on = model(x)
        reference = plain(x)
    torch.testing.assert_close(off, reference, rtol=1e-12, atol=1e-12)
    if kind != "linear":
        assert not torch.allclose(on, off)
    assert all(m.enabled for m in adapters.adapter_modules(model)), "switched back on"


@pytest.mark.parametrize("kind", KINDS)
def test_the_untrained_model_is_the_pretrained_one_exactly_when_the_kind_says_so(make_vit, kind):
    plain, model = adapted(lambda: make_vit(drop_path_rate=0.0), kind)
    x = images()
    with torch.no_grad():
        same = torch.allclose(model(x), plain(x), rtol=1e-12, atol=1e-12)
    assert same == ADAPTERS.get(kind).starts_at_identity


@pytest.mark.parametrize("kind", KINDS)
def test_export_folds_mergeable_kinds_into_a_plain_timm_model_and_refuses_the_others(make_vit, kind):
    plain, model = adapted(lambda: make_vit(drop_path_rate=0.0), kind)
    randomise(model)
    x = images()
    with torch.no_grad():
        expected = model(x)
    if not ADAPTERS.get(kind).mergeable:
        with pytest.raises(UsageError, match="does not fold"):
            adapters.fold(model)
        return
    folded = adapters.fold(model)
    assert not any(isinstance(m, Adapter | NoisyHead) for m in folded.modules())
    assert set(folded.state_dict()) == set(plain.state_dict()), "exactly the plain architecture's keys"
    with torch.no_grad():
        torch.testing.assert_close(folded(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_trained_tensors_reload_into_a_fresh_model_of_the_same_kind(make_vit, kind):
    _, model = adapted(lambda: make_vit(drop_path_rate=0.0), kind)
    randomise(model)
    state = adapters.trainable_state(model)
    _, fresh = adapted(lambda: make_vit(drop_path_rate=0.0), kind)
    params = dict(fresh.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
        torch.testing.assert_close(fresh(images()), model(images()), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------- counts at ViT-B/16

D, L = 768, 12
FORMULAS = {  # trainable backbone parameters on ViT-B/16 at each kind's default size (the head excluded)
    "lora_add+vpt_add": 212_016 * 10 + 82_944,
    "lora_mul+vpt_add": 212_016 * 10 + 82_944,
    "lora_add": 147_456 * 10 + 82_944,
    "lora_mul": 147_456 * 10 + 82_944,
    "vpt_add": 64_560 * 10,
    "full": 85_798_656,
    "linear": 0,
    "vpt_deep": 10 * D * L,  # p = 10
    "adapter": L * (D * 8 + 8 + 8 * D + D),  # h = 8: 156,768
    "houlsby": 2 * L * (D * 8 + 8 + 8 * D + D),
    "adaptformer": L * (D * 8 + 8 + 8 * D + D),
    "lora": L * 8 * (D + 3 * D),  # r = 8 on the fused qkv: 294,912
    "ssf": 2 * (D + L * (D + 3 * D + D + D + 4 * D + D) + D),  # 205,824
    "bitfit": 102_912,
    "repadapter": 2 * L * (D * 8 + 8 + D * 4 + D),  # h = 8, 2 groups: 239,808
}
# the kinds a VTAB-1k table prints a count for (the paper's own family: `report --table params`, Tables 7-10;
# Houlsby's two adapters per block: no VTAB-1k table runs them)
TABLE_KINDS = ("full", "linear", "vpt_deep", "adapter", "adaptformer", "lora", "ssf", "bitfit", "repadapter")
NOT_REPRODUCED = {("vpt_deep", "0.56"), ("vpt_deep", "0.64"), ("repadapter", "0.22")}  # see the CSV's notes


@pytest.mark.parametrize("kind", KINDS)
def test_count_at_vit_b16_follows_the_formula_and_the_printed_number(kind):
    assert kind in FORMULAS, f"give {kind}'s ViT-B/16 count formula here"
    info = describe("vit_b16_in21k", kind, None, 100, 1.2, "code")
    assert (info.adapter, info.head) == (FORMULAS[kind], 76_900)
    rows = printed_counts(kind)
    if kind in TABLE_KINDS:
        assert rows, f"{kind}: no printed count in the reference CSV"
    for row in rows:
        assert row.reproduced == ((kind, row.printed) not in NOT_REPRODUCED), (row.printed, row.counted_m)


def test_vpt_deep_count_uses_vpts_prompt_lengths_per_dataset():
    rows = printed_counts("vpt_deep")
    assert {r.printed for r in rows} == {"0.56", "0.64"}
    backbone = next(r for r in rows if r.head == "none")
    assert backbone.counted == pytest.approx(1398 * D * L / 19) and backbone.counted_m == "0.68"


# --------------------------------------------------------------------------------------------------- PACE


def _setup(model: nn.Module, method: str, sigma: float) -> object:
    cls = METHODS.get(method)
    m = cls(cls.make_config({"sigma": sigma, "lam": 1.0} if method == "pace" else {}))
    m.setup(model, SetupInfo(8, CLASSES))
    return m


@pytest.mark.parametrize("kind", KINDS)
def test_pace_at_sigma_zero_is_the_kinds_baseline(make_vit, kind):
    """Same weights, same batch, same random state (adapter dropout draws the same masks): PACE's CE is the
    baseline's loss and its consistency term is zero."""
    first = make_vit(drop_path_rate=0.0)
    adapters.inject(first, kind, RANK)
    randomise(first)
    first.double().train()
    losses = {}
    for method, model in (("baseline", first), ("pace", copy.deepcopy(first))):
        m = _setup(model, method, 0.0)
        torch.manual_seed(11)
        x, y = images(4), torch.randint(0, CLASSES, (4,), generator=torch.Generator().manual_seed(3))
        losses[method] = m.loss(model, x, y, torch.arange(4))
    assert losses["pace"].parts["consistency"].item() < 1e-20
    torch.testing.assert_close(losses["pace"].loss, losses["baseline"].loss, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_pace_with_its_noise_free_prefix_run_once_equals_the_plain_path(make_vit, kind):
    """PACE's fast path runs block 0 (σ = 0) on the real batch and duplicates after it: the same loss and gradients
    as the plain [x; x] forward, prompts and adapter dropout included."""
    ready = attach(make_vit(drop_path_rate=0.1), "pace", SetupInfo(8, CLASSES), kind, RANK)
    randomise(ready.model)
    x, y = images(4, torch.float32), torch.randint(0, CLASSES, (4,), generator=torch.Generator().manual_seed(3))

    def loss_and_grads() -> tuple[Tensor, list[Tensor]]:
        for p in ready.params:
            p.grad = None
        torch.manual_seed(5)
        loss = ready.method.loss(ready.model, x, y, torch.arange(4)).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in ready.params]

    assert noise_free_blocks(ready.model) == (3 if kind == "linear" else 1), "linear: no noise before the head"
    fast = loss_and_grads()
    with plain_paths():
        plain = loss_and_grads()
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(fast[1], plain[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


class Factors(Noise):
    """Multiplies what it sees by a fixed per-sample factor z_b (shared by tokens and channels) and records the
    shapes it saw: a stand-in for PACE's z ~ N(1, σ²) whose values the test knows."""

    def __init__(self, z: list[float], seen: list[tuple[int, ...]]) -> None:
        super().__init__("gauss_mul", 1.0)
        self.z, self.seen = z, seen

    def forward(self, t: Tensor) -> Tensor:
        self.seen.append(tuple(t.shape))
        z = torch.tensor(self.z, dtype=t.dtype).view(-1, *[1] * (t.ndim - 1))
        return t * z

    def factors(self, t: Tensor) -> None:
        return None  # the fast paths must hand the noise Δh itself


def _with_factors(model: nn.Module, z: list[float], target: str = "delta") -> list[tuple[int, ...]]:
    seen: list[tuple[int, ...]] = []
    for layer in adapters.noisy_layers(model):
        if isinstance(layer, NoisyHead):
            layer.noise = nn.Identity()  # the head's logits: the backbone's noise is under test
        else:
            layer.noise, layer.noise_target = Factors(z, seen).train(), target
    return seen


def _zero_delta_reference(model: nn.Module, kind: str, x: Tensor) -> Tensor:
    """The model with every noisy adapter's Δh removed: switched off, except for prompts, whose "removed" is zero
    tokens (a zero prompt is no absent prompt: it still takes attention weight)."""
    with torch.no_grad():
        if kind == "vpt_deep":
            zeroed = copy.deepcopy(model)
            for m in zeroed.modules():
                if hasattr(m, "prompts"):
                    m.prompts.zero_()
            adapters.apply_noise(zeroed, None)
            return zeroed(x)
        with adapters.disabled(model):
            return model(x)


@pytest.mark.parametrize("kind", KINDS)
def test_pace_noise_is_per_sample_on_the_adapter_output_only(make_vit, kind):
    """z = (1, 0, 1): sample 0 and 2 are the clean model's, sample 1 is the model without its adapters' Δh. Noise
    that touched the frozen path (PACE_h's target, checked below) would zero sample 1 instead; noise shared across
    the batch could not give the samples different factors; every tensor it sees is [batch, tokens, channels]."""
    _, model = adapted(
        lambda: make_vit(drop_path_rate=0.0),
        kind,
        **({"dropout": 0.0} if "adapter_dropout" in ADAPTERS.get(kind).defaults else {}),
    )
    randomise(model, noisy_only=True)
    x = images()
    with torch.no_grad():
        clean = model(x)
        reference = _zero_delta_reference(model, kind, x)
        seen = _with_factors(model, [1.0, 0.0, 1.0])
        model.train()
        noisy = model(x)
    torch.testing.assert_close(noisy[[0, 2]], clean[[0, 2]], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(noisy[1], reference[1], rtol=1e-10, atol=1e-10)
    widths = {
        w
        for m in model.modules()
        for w in (
            getattr(m, "out_features", None),
            getattr(m, "out_channels", None),
            *getattr(m, "normalized_shape", ()),
        )
    }
    assert all(shape[0] == B and shape[-1] in widths and len(shape) >= 3 for shape in seen), seen  # channels last
    if kind == "linear":
        assert seen == []  # no adapter in the backbone: PACE's noise is on the head alone
        return
    assert seen and not torch.allclose(clean[1], reference[1]), "the adapters' Δh matters for sample 1"
    if kind == "vpt_deep":
        return  # the prompts are both the adapter and its output: PACE_h has nothing else to perturb there
    with torch.no_grad():
        _with_factors(model, [1.0, 0.0, 1.0], target="output")
        touched = model(x)
    assert not torch.allclose(touched[1], reference[1], atol=1e-6), "noise on the whole output would be caught"


def test_vpt_deep_prompts_are_the_noisy_tokens(make_vit):
    """The tokens at the prompt positions entering each block are z ⊙ P: per sample, shared by the p tokens."""
    _, model = adapted(lambda: make_vit(drop_path_rate=0.0), "vpt_deep", dropout=0.0)
    inputs = []
    for block in model.blocks:
        block.block.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    _with_factors(model, [2.0, 0.0, 1.0])
    model.train()
    with torch.no_grad():
        model(images())
    for block, tokens in zip(model.blocks, inputs, strict=True):
        prompts = tokens[:, 1 : 1 + RANK]  # after the class token
        for b, z in enumerate([2.0, 0.0, 1.0]):
            torch.testing.assert_close(prompts[b], z * block.prompts, rtol=0, atol=0)
    assert inputs[0].shape[1] == 1 + RANK + 16 and model(images()).shape == (B, CLASSES)


# ----------------------------------------------------------------------------------------------- errors


def test_settings_a_kind_does_not_read_are_refused():
    with pytest.raises(UsageError, match="has no adapter_scale"):
        adapters.check_settings("adapter", 8, 0.5, None)
    with pytest.raises(UsageError, match="has no size"):
        adapters.check_settings("ssf", 4, None, None, rank_given=True)
    with pytest.raises(UsageError, match="multiple of 2"):
        adapters.check_settings("repadapter", 5, None, None)
    with pytest.raises(UsageError, match="adapter_dropout"):
        adapters.check_settings("lora", 8, None, 1.0)


def test_vpt_deep_is_vit_only(make_swin):
    with pytest.raises(UsageError, match="vit backbones"):
        adapters.inject(make_swin(), "vpt_deep", RANK)


def test_the_paper_family_is_a_registry_member_among_others():
    assert set(PART_KINDS) == {"lora_add+vpt_add", "lora_mul+vpt_add", "lora_add", "lora_mul", "vpt_add"}
    assert set(KINDS) - set(PART_KINDS) == {
        "full",
        "linear",
        "vpt_deep",
        "adapter",
        "houlsby",
        "adaptformer",
        "lora",
        "ssf",
        "bitfit",
        "repadapter",
    }
