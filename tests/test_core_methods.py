"""Training objectives: every registered method trains, PACE's loss against a hand computation, shared DropPath,
the lazy / fast / multi variants, SAM's step, the gradient penalty's exactness, config validation and FPA."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import Tensor, nn

from pacebench.core import adapters
from pacebench.core.adapters import KINDS, pretrained_logits
from pacebench.core.droppath import SharedDropPath, copies, share_drop_path
from pacebench.core.methods import ABLATIONS, EFFICIENCY, METHODS, SetupInfo, StepOutput, method_grid
from pacebench.core.methods.base import consistency, grad_norm
from pacebench.core.methods.fpa import fpa_loss
from pacebench.core.methods.gp import gradient_norm_penalty
from pacebench.core.methods.pace import NoisyMethod
from pacebench.core.prepare import attach
from pacebench.errors import UsageError
from pacebench.settings import builtin_suites_dir as suites_dir
from pacebench.training.diagnostics import clean_readings

B, CLASSES, NUM_TRAIN = 4, 5, 10


def fp_distance(model, data, device, autocast):
    return clean_readings(model, data, [p for p in model.parameters() if p.requires_grad], device, autocast)[1]


def batch(seed: int = 0, n: int = B) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    idx = torch.randperm(NUM_TRAIN, generator=g)[:n]
    return x, y, idx


def build(
    make_vit,
    name: str,
    kind: str = "lora_mul+vpt_add",
    rank: int = 2,
    config: dict | None = None,
    drop_path_rate: float = 0.1,
    depth: int = 2,
):
    """What the trainer builds (pacebench.core.prepare.attach) on a tiny ViT; returns (model, method, params)."""
    ready = attach(
        make_vit(depth=depth, drop_path_rate=drop_path_rate), name, SetupInfo(NUM_TRAIN, CLASSES), kind, rank, config
    )
    return ready.model, ready.method, ready.params


def frozen_and_trainable(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    frozen.update({f"buffer:{n}": b.clone() for n, b in model.named_buffers()})
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return frozen, trainable


class Stub(nn.Module):
    """A 'model' that returns fixed logits (a trainable parameter) and records its input."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x)
        assert x.shape[0] == self.logits.shape[0]
        return self.logits * 1.0


def num(t: Tensor) -> float:
    return t.detach().item()


# ------------------------------------------------------------------------------------------- (a) every method


def test_every_registered_method_describes_itself():
    for name, cls in METHODS.items():
        assert cls.name == name and cls.description and "ce" in cls.parts


def test_table6_group_is_the_papers_table6_rows_in_order():
    """Every Table-6 method names a row of the paper's Table 6, in the paper's order, and no row is left out."""
    paper = list(pd.read_csv(suites_dir() / "reference" / "table6_ablations.csv")["method"])
    assert [METHODS.get(m).paper_row for m in ABLATIONS] == paper
    assert EFFICIENCY == ("pace_lazy", "pace_fast", "pace_multi")
    assert not set(ABLATIONS) & set(EFFICIENCY)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_hyperparameter_has_help_and_a_grid_that_its_config_accepts(name):
    cls = METHODS.get(name)
    assert all(text for _, _, text in cls.hyperparameters()), "a hyperparameter without help text"
    grid = method_grid(name)
    assert set(grid) <= {n for n, _, _ in cls.hyperparameters()}
    for field_name, values in grid.items():
        assert len(values) >= 2 and values == sorted(values)
        for value in values:
            cls.make_config({field_name: value})  # every grid point is a valid setting


def test_search_grids_fit_the_noise_kind():
    """Additive noise and noise on the whole output need far smaller σ than PACE's multiplicative z ~ N(1, σ²)."""
    assert max(method_grid("pace_add")["sigma"]) < min(method_grid("pace")["sigma"])
    assert max(method_grid("pace_h")["sigma"]) < min(method_grid("pace")["sigma"])
    assert min(method_grid("pace_fast")["sigma"]) >= 1.2 and max(method_grid("pace_fast")["lam"]) < 1
    assert set(method_grid("pace_drop")) == {"lam", "p"} and max(method_grid("pace_drop")["p"]) < 1
    assert set(method_grid("sam")) == {"rho"} and set(method_grid("l1")) == {"lam"}
    assert method_grid("baseline") == {}


@pytest.mark.parametrize("name", [n for n, cls in METHODS.items() if cls.trains])  # "pretrained" only evaluates
def test_every_method_trains_two_steps_and_touches_only_trainable_parameters(make_vit, name):
    model, method, params = build(make_vit, name)
    assert {id(p) for p in params} == {id(p) for p in adapters.adapter_parameters(model)} | {
        id(p) for p in adapters.head_parameters(model)
    }
    frozen, trainable = frozen_and_trainable(model)
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    for step in range(2):
        out = method.step(model, batch(step), optimizer, params)
        assert isinstance(out, StepOutput)
        assert torch.isfinite(out.loss) and out.loss.ndim == 0
        assert set(method.parts) <= set(out.parts), f"missing parts {set(method.parts) - set(out.parts)}"
        assert all(torch.isfinite(v) for v in out.parts.values())
        assert out.logits.shape[-1] == CLASSES and out.logits.shape[0] <= B
        assert out.grad_norm is not None and math.isfinite(num(out.grad_norm)) and num(out.grad_norm) > 0
    assert method.steps == 2
    after_frozen, after_trainable = frozen_and_trainable(model)
    for n, value in frozen.items():
        assert torch.equal(after_frozen[n], value), f"frozen {n} changed"
    changed = [n for n, v in trainable.items() if not torch.equal(after_trainable[n], v)]
    assert any("head" in n for n in changed), "the head must train"
    assert any("lora_down" in n for n in changed), "the adapters must train"


@pytest.mark.parametrize("name", METHODS.names())
def test_shared_drop_path_exactly_when_the_method_asks(make_vit, name):
    model, method, _ = build(make_vit, name)
    kinds = {type(m) for m in model.modules() if isinstance(m, DropPath | SharedDropPath)}
    assert kinds == ({SharedDropPath} if method.shares_drop_path else {DropPath})
    # the authors share DropPath masks between copies in every noisy PACE variant, never in the noise-free methods
    assert method.shares_drop_path == isinstance(method, NoisyMethod)


def test_logged_grad_norm_is_the_l2_norm_of_the_gradients(make_vit):
    model, method, params = build(make_vit, "pace")
    optimizer = torch.optim.SGD(params, lr=0.0)
    out = method.step(model, batch(), optimizer, params)
    expected = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None))
    assert num(out.grad_norm) == pytest.approx(expected, rel=1e-5)


def test_grad_norm_helper():
    a, b, c = (nn.Parameter(torch.zeros(2)) for _ in range(3))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])
    assert float(grad_norm([a, b, c])) == pytest.approx(5.0)
    assert float(grad_norm([c])) == 0.0


# ------------------------------------------------------------------------------------------ (b) every adapter


@pytest.mark.parametrize("kind", KINDS)
def test_pace_trains_every_adapter_kind_and_every_adapter_parameter(make_vit, kind):
    model, method, params = build(make_vit, "pace", kind=kind)
    with torch.no_grad():  # timm's zero biases would hide the b0 ⊙ δb path
        for layer in adapters.adapted_layers(model):
            if layer.base.bias is not None:
                layer.base.bias.normal_(0, 0.1)
    before = [p.detach().clone() for p in adapters.adapter_parameters(model)]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)  # no decay: a change means a gradient
    for step in range(2):
        out = method.step(model, batch(step), optimizer, params)
        assert torch.isfinite(out.loss)
        assert num(out.parts["consistency"]) > 0
    after = adapters.adapter_parameters(model)
    unchanged = [tuple(p.shape) for p, q in zip(after, before, strict=True) if torch.equal(p, q)]
    assert unchanged == []


def test_pace_trains_on_swin_with_shared_drop_path(make_swin):
    model = make_swin(drop_path_rate=0.3)
    adapters.inject(model, "lora_mul+vpt_add", 2)
    method = METHODS.get("pace")(METHODS.get("pace").make_config({}))
    assert share_drop_path(model) > 0
    assert not any(isinstance(m, DropPath) for m in model.modules())
    facts = method.setup(model, SetupInfo(NUM_TRAIN, CLASSES))
    assert len(facts["sigmas"]) == 6 and min(facts["sigmas"]) > 0  # Swin: every block and the head are noisy
    params = [p for p in model.parameters() if p.requires_grad]
    frozen, _ = frozen_and_trainable(model)
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for step in range(2):
        out = method.step(model.train(), batch(step), optimizer, params)
        assert torch.isfinite(out.loss) and num(out.parts["consistency"]) > 0
    after, _ = frozen_and_trainable(model)
    assert all(torch.equal(after[n], v) for n, v in frozen.items())


# ----------------------------------------------------------------------------------- (c) PACE against by hand


def _pace_by_hand(logits: Tensor, y: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    l1, l2 = logits[: len(y)], logits[len(y) :]
    ce = F.cross_entropy(l1, y)
    cons = ((l1 - l2) ** 2).sum(dim=1).mean()
    return ce, ce + lam * cons


def test_pace_loss_equals_hand_computation_and_both_halves_get_gradient():
    torch.manual_seed(0)
    x, y, idx = batch()
    logits = torch.randn(2 * B, CLASSES, dtype=torch.float64) * 2
    stub = Stub(logits)
    method = METHODS.get("pace")(METHODS.get("pace").make_config({"lam": 0.7}))
    out = method.loss(stub, x, y, idx)

    (seen,) = stub.inputs
    assert torch.equal(seen, torch.cat([x, x])), "one forward over the batch concatenated with itself"
    ce, total = _pace_by_hand(logits, y, 0.7)
    assert num(out.parts["ce"]) == pytest.approx(num(ce), rel=1e-6)
    assert num(out.parts["consistency"]) == pytest.approx(num(((logits[:B] - logits[B:]) ** 2).sum(1).mean()), rel=1e-6)
    assert num(out.loss) == pytest.approx(num(total), rel=1e-6)
    assert torch.equal(out.logits.detach(), logits[:B].to(out.logits.dtype))

    out.loss.backward()
    diff = logits[:B] - logits[B:]
    grad_ce = (torch.softmax(logits[:B], -1) - F.one_hot(y, CLASSES)) / B
    torch.testing.assert_close(stub.logits.grad[:B], grad_ce + 0.7 * 2 * diff / B, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stub.logits.grad[B:], -0.7 * 2 * diff / B, rtol=1e-5, atol=1e-6)


def test_pace_cross_entropy_uses_the_first_half_only():
    x, y, idx = batch()
    torch.manual_seed(1)
    logits = torch.randn(2 * B, CLASSES)
    method = METHODS.get("pace")(METHODS.get("pace").make_config({"lam": 0.0}))
    base = method.loss(Stub(logits), x, y, idx)
    other_second = logits.clone()
    other_second[B:] = torch.randn(B, CLASSES) * 5
    assert num(method.loss(Stub(other_second), x, y, idx).parts["ce"]) == num(base.parts["ce"])
    other_first = logits.clone()
    other_first[:B] = torch.randn(B, CLASSES) * 5
    assert num(method.loss(Stub(other_first), x, y, idx).parts["ce"]) != num(base.parts["ce"])
    y2 = (y + 1) % CLASSES
    assert num(method.loss(Stub(logits), x, y2, idx).parts["ce"]) == pytest.approx(
        float(F.cross_entropy(logits[:B], y2))
    )


def test_consistency_helper():
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert float(consistency(a, b)) == pytest.approx((5 + 25) / 2)


# ----------------------------------------------------------------------------------- (d) shared DropPath masks


def _mask(module: nn.Module, n_copies: int, rows: int = 64, seed: int = 0) -> Tensor:
    """The per-row factor a drop-path module applies to `n_copies` stacked copies of the same rows."""
    holder = nn.Sequential(module).train()
    x = (torch.rand(rows, 3, 4) + 0.5).repeat(n_copies, 1, 1)
    torch.manual_seed(seed)
    with copies(holder, n_copies):
        out = holder(x)
    ratio = out / x
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio)), "one mask value per sample"
    return ratio[:, 0, 0]


@pytest.mark.parametrize("n_copies", [2, 3])
def test_shared_drop_path_masks_agree_between_copies_and_have_batch_mean_one(n_copies):
    mask = _mask(SharedDropPath(0.4), n_copies)
    parts = mask.chunk(n_copies)
    for other in parts[1:]:
        torch.testing.assert_close(parts[0], other, rtol=1e-6, atol=0)
    assert 0 < int((parts[0] == 0).sum()) < 64, "some samples dropped, some kept"
    assert float(mask.mean()) == pytest.approx(1.0, abs=1e-6)
    kept = mask[mask != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1.0 / float((mask != 0).double().mean())))


def test_timm_drop_path_masks_differ_between_copies():
    mask = _mask(DropPath(0.4), 2)
    assert not torch.equal(mask[:64], mask[64:])


def test_shared_drop_path_copies_context_resets_and_checks_batch():
    sdp = SharedDropPath(0.3)
    holder = nn.Sequential(sdp).train()
    with copies(holder, 2):
        assert sdp.copies == 2
        with pytest.raises(ValueError):
            holder(torch.ones(5, 2))
    assert sdp.copies == 1
    x = torch.randn(6, 2, 3)
    assert torch.equal(sdp.eval()(x), x)
    assert torch.equal(SharedDropPath(0.0).train()(x), x)


def test_share_drop_path_replaces_every_timm_drop_path(make_vit):
    model = make_vit(depth=3, drop_path_rate=0.2)
    probs = sorted(m.drop_prob for m in model.modules() if isinstance(m, DropPath))
    assert len(probs) == 4  # drop_path1, drop_path2 per block; the first block's rate is 0 (Identity)
    assert share_drop_path(model) == 4
    assert not any(isinstance(m, DropPath) for m in model.modules())
    assert sorted(m.drop_prob for m in model.modules() if isinstance(m, SharedDropPath)) == probs


def test_pace_consistency_is_zero_with_shared_drop_path_and_no_noise(make_vit):
    x, y, idx = batch()
    model, method, _ = build(make_vit, "pace", config={"sigma": 0.0}, drop_path_rate=0.5)
    torch.manual_seed(0)
    with torch.no_grad():
        out = method.loss(model, x, y, idx)
    assert num(out.parts["consistency"]) < 1e-8

    baseline_dp = make_vit(depth=2, drop_path_rate=0.5)  # timm DropPath kept, as for the baseline
    adapters.inject(baseline_dp, "lora_mul+vpt_add", 2)
    baseline_dp.load_state_dict(model.state_dict())
    method.setup(baseline_dp, SetupInfo(NUM_TRAIN, CLASSES))
    torch.manual_seed(0)
    with torch.no_grad():
        out = method.loss(baseline_dp.train(), x, y, idx)
    assert num(out.parts["consistency"]) > 1e-3


# ----------------------------------------------------------------------------------------------- (e) pace_lazy


def test_pace_lazy_runs_pace_on_the_duplicated_first_half_every_nth_step(make_vit):
    model, method, params = build(make_vit, "pace_lazy", config={"N": 3, "sigma": 1.0})
    seen: list[Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    half = B // 2
    for step in range(7):
        x, y, idx = batch(step)
        seen.clear()
        with adapters.plain_paths():  # the model's input; the fast path duplicates after block 0 (test_fastpaths.py)
            out = method.step(model, (x, y, idx), optimizer, params)
        (inp,) = seen
        assert inp.shape[0] == B, "every step costs one forward over B rows"
        if step in (0, 3, 6):
            assert torch.equal(inp, torch.cat([x[:half], x[:half]])), step
            assert num(out.parts["consistency"]) > 0, step
            assert out.logits.shape[0] == half
            assert num(out.loss) == pytest.approx(
                num(out.parts["ce"] + method.cfg.lam * out.parts["consistency"]), rel=1e-6
            )
        else:
            assert torch.equal(inp, x), step
            assert num(out.parts["consistency"]) == 0.0, step
            assert out.logits.shape[0] == B
            assert num(out.loss) == num(out.parts["ce"])


# ----------------------------------------------------------------------------------------------- (f) pace_fast


def test_pace_fast_history_starts_at_zero_then_holds_the_last_logits(make_vit):
    model, method, params = build(make_vit, "pace_fast", config={"lam": 0.3})
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    x, y, idx = batch(0)

    out1 = method.step(model, (x, y, idx), optimizer, params)
    # first visit: the stored logits are zeros
    torch.testing.assert_close(out1.parts["consistency"], out1.logits.detach().float().pow(2).sum(-1).mean())
    assert num(out1.loss) == pytest.approx(num(out1.parts["ce"] + 0.3 * out1.parts["consistency"]), rel=1e-6)
    history = method.history
    assert history.shape == (NUM_TRAIN, CLASSES) and not history.requires_grad
    assert torch.equal(history[idx], out1.logits.detach().float())
    others = torch.ones(NUM_TRAIN, dtype=torch.bool)
    others[idx] = False
    assert torch.count_nonzero(history[others]) == 0
    stored = history[idx].clone()

    out2 = method.step(model, (x, y, idx), optimizer, params)
    expected = (out2.logits.detach().float() - stored).pow(2).sum(-1).mean()
    torch.testing.assert_close(out2.parts["consistency"].detach(), expected)
    assert not torch.equal(out2.logits.detach(), out1.logits.detach())
    assert torch.equal(method.history[idx], out2.logits.detach().float())


def test_pace_fast_consistency_has_gradient_through_current_logits_only(make_vit):
    model, method, params = build(make_vit, "pace_fast", config={"lam": 1.0})
    x, y, idx = batch(0)
    method.loss(model, x, y, idx)  # fill history
    out = method.loss(model, x, y, idx)
    assert out.parts["consistency"].requires_grad
    assert not method.history.requires_grad


# ---------------------------------------------------------------------------------------------- (g) pace_multi


def test_pace_multi_with_two_copies_equals_pace(make_vit):
    x, y, idx = batch()
    pace_model, pace, _ = build(make_vit, "pace", config={"sigma": 0.8})
    multi_model, multi, _ = build(make_vit, "pace_multi", config={"sigma": 0.8, "M": 2})
    with torch.no_grad():
        for p in adapters.adapter_parameters(pace_model):
            p.normal_(0, 0.1)
        multi_model.load_state_dict(pace_model.state_dict())
    torch.manual_seed(11)
    a = pace.loss(pace_model, x, y, idx)
    torch.manual_seed(11)
    b = multi.loss(multi_model, x, y, idx)
    assert num(a.parts["consistency"]) > 0
    assert num(a.loss) == pytest.approx(num(b.loss), rel=1e-6)
    assert num(a.parts["consistency"]) == pytest.approx(num(b.parts["consistency"]), rel=1e-6)
    torch.testing.assert_close(a.logits, b.logits)


def test_pace_multi_with_three_copies_averages_the_pairwise_terms():
    x, y, idx = batch()
    torch.manual_seed(2)
    logits = torch.randn(3 * B, CLASSES)
    stub = Stub(logits)
    multi = METHODS.get("pace_multi")(METHODS.get("pace_multi").make_config({"M": 3, "lam": 0.5}))
    out = multi.loss(stub, x, y, idx)
    assert torch.equal(stub.inputs[0], torch.cat([x, x, x]))
    chunks = logits.chunk(3)
    pairs = [((a - b) ** 2).sum(1).mean() for a, b in itertools.combinations(chunks, 2)]
    assert len(pairs) == 3
    expected_cons = sum(pairs) / 3
    assert num(out.parts["consistency"]) == pytest.approx(num(expected_cons), rel=1e-6)
    assert num(out.loss) == pytest.approx(float(F.cross_entropy(chunks[0], y) + 0.5 * expected_cons), rel=1e-6)


# ------------------------------------------------------------------------------------------------------ (h) SAM


def _ce_grads(model: nn.Module, params: list[nn.Parameter], x: Tensor, y: Tensor) -> list[Tensor]:
    loss = F.cross_entropy(model(x).float(), y)
    return [
        g if g is not None else torch.zeros_like(p)
        for g, p in zip(torch.autograd.grad(loss, params, allow_unused=True), params, strict=True)
    ]


def test_sam_steps_from_the_original_weights_with_the_perturbed_gradient(make_vit):
    rho = 0.5
    model, method, params = build(make_vit, "sam", config={"rho": rho}, drop_path_rate=0.0)
    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.normal_(0, 0.05)
    x, y, idx = batch()

    # the gradient SAM should use, computed independently on a copy
    ref = copy.deepcopy(model)
    ref_params = [p for p in ref.parameters() if p.requires_grad]
    g = _ce_grads(ref, ref_params, x, y)
    norm = torch.sqrt(sum(t.pow(2).sum() for t in g))
    with torch.no_grad():
        for p, t in zip(ref_params, g, strict=True):
            p.add_(rho * t / norm)
    expected_grads = _ce_grads(ref, ref_params, x, y)

    original = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=0.1)
    snapshot: dict[str, list[Tensor]] = {}

    def spy(*args, **kwargs):
        snapshot["params"] = [p.detach().clone() for p in params]
        snapshot["grads"] = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
        return real_step(*args, **kwargs)

    real_step, optimizer.step = optimizer.step, spy
    out = method.step(model, (x, y, idx), optimizer, params)

    for before, at_step in zip(original, snapshot["params"], strict=True):
        torch.testing.assert_close(at_step, before, rtol=0, atol=1e-7)
    for got, want in zip(snapshot["grads"], expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # and it is not simply the gradient at θ
    assert any(not torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(snapshot["grads"], g, strict=True))
    assert num(out.grad_norm) == pytest.approx(num(norm), rel=1e-4)
    for p, before, grad in zip(params, original, snapshot["grads"], strict=True):
        torch.testing.assert_close(p.detach(), before - 0.1 * grad, rtol=0, atol=1e-6)


def test_sam_restores_the_weights_bit_exactly(make_vit):
    model, method, params = build(make_vit, "sam", config={"rho": 0.5}, drop_path_rate=0.0)
    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.normal_(0, 0.05)
    before = [p.detach().clone() for p in params]
    method.step(model, batch(), torch.optim.SGD(params, lr=0.0), params)
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))


# -------------------------------------------------------------------------------------------- (i) GP exactness


def test_gradient_norm_penalty_gradient_matches_finite_differences():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    params = list(mlp.parameters())

    def penalty() -> Tensor:
        return gradient_norm_penalty(F.cross_entropy(mlp(x), y), params)

    value = penalty()
    # the value is the norm of the gradient
    grads = torch.autograd.grad(F.cross_entropy(mlp(x), y), params)
    assert num(value) == pytest.approx(float(torch.sqrt(sum(g.pow(2).sum() for g in grads))), rel=1e-12)
    analytic = torch.autograd.grad(value, params)
    eps = 1e-6
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(eps * d)
        plus = num(penalty())
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(2 * eps * d)
        minus = num(penalty())
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(eps * d)
        numeric = (plus - minus) / (2 * eps)
        exact = float(sum((a * d).sum() for a, d in zip(analytic, direction, strict=True)))
        assert numeric == pytest.approx(exact, rel=1e-6, abs=1e-9)


def test_gp_method_penalises_the_norm_of_the_ce_gradient_on_vit(make_vit):
    model, method, params = build(make_vit, "gp", config={"lam": 0.5}, drop_path_rate=0.0)
    assert not any(getattr(m, "fused_attn", False) for m in model.modules()), "double backward needs math attention"
    x, y, idx = batch()
    out = method.loss(model, x, y, idx)
    ce_grads = torch.autograd.grad(F.cross_entropy(model(x).float(), y), params, allow_unused=True)
    expected = torch.sqrt(sum(g.pow(2).sum() for g in ce_grads if g is not None))
    assert num(out.parts["gp"]) == pytest.approx(num(expected), rel=1e-4)
    assert num(out.loss) == pytest.approx(num(out.parts["ce"] + 0.5 * out.parts["gp"]), rel=1e-6)
    # the penalty carries gradient (double backprop), not a detached number
    (g_head,) = torch.autograd.grad(out.parts["gp"], [model.head.linear.weight])
    assert torch.count_nonzero(g_head) > 0


# ---------------------------------------------------------------------------------------- (j) config validation


@pytest.mark.parametrize(
    "name, values",
    [
        ("pace", {"sigma": -0.1}),
        ("pace", {"lam": -1}),
        ("pace", {"schedule": "nope"}),
        ("noise", {"sigma": -1}),
        ("pace_lazy", {"interval": 0}),
        ("pace_multi", {"copies": 1}),
        ("pace_drop", {"p": 1.0}),
        ("pace_drop", {"p": -0.1}),
        ("sam", {"rho": -0.01}),
        ("fpa", {"lam": -1}),
        ("gp", {"lam": -1}),
        ("fpa_gp", {"lam_gp": -1}),
        ("fpa_gp", {"lam_fpa": -1}),
        ("l1", {"lam": -1}),
        ("pace_fast", {"sigma": -2}),
    ],
)
def test_invalid_hyperparameters_raise_usage_error(name, values):
    with pytest.raises(UsageError):
        METHODS.get(name).make_config(values)


def test_make_config_aliases_and_string_conversion():
    cfg = METHODS.get("pace").make_config({"lambda": "0.5", "σ": "2"})
    assert cfg.lam == 0.5 and isinstance(cfg.lam, float)
    assert cfg.sigma == 2.0 and isinstance(cfg.sigma, float)
    lazy = METHODS.get("pace_lazy").make_config({"N": "3"})
    assert lazy.interval == 3 and isinstance(lazy.interval, int)
    assert METHODS.get("pace_multi").make_config({"M": 4}).copies == 4
    assert METHODS.get("sam").make_config({"ρ": "0.1"}).rho == pytest.approx(0.1)
    assert METHODS.get("pace").make_config({}) == METHODS.get("pace").Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lam = 2.0  # type: ignore[misc]


def test_make_config_rejects_unknown_names_listing_accepted_fields():
    with pytest.raises(UsageError) as err:
        METHODS.get("pace").make_config({"lamda": 1})
    message = str(err.value)
    assert "lamda" in message and all(f in message for f in ("lam", "sigma", "schedule"))
    with pytest.raises(UsageError, match="none"):
        METHODS.get("baseline").make_config({"lam": 1})
    with pytest.raises(UsageError):
        METHODS.get("pace").make_config({"lam": "one"})


def test_defaults_follow_the_paper():
    pace = METHODS.get("pace").Config()
    assert (pace.lam, pace.sigma, pace.schedule) == (1.0, 1.2, "code")
    fast = METHODS.get("pace_fast").Config()
    assert fast.sigma > pace.sigma and fast.lam < pace.lam


# ---------------------------------------------------------------------------------------------------- (k) FPA


def test_fpa_reference_is_the_backbone_without_adapters_and_current_head(make_vit):
    plain = make_vit(depth=2, drop_path_rate=0.1)
    model, method, _ = build(make_vit, "fpa", drop_path_rate=0.1)
    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.normal_(0, 0.1)
        model.head.linear.weight.normal_()  # a trained head: the reference must use it
        plain.head.weight.copy_(model.head.linear.weight)
    x, y, idx = batch()
    model.train()
    ref = pretrained_logits(model, x)
    assert model.training, "training mode restored"
    assert all(layer.enabled for layer in adapters.adapted_layers(model)), "adapters switched back on"
    assert not ref.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(ref, plain.eval()(x), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(ref, model.eval()(x), atol=1e-4)


def test_fp_distance_is_zero_at_zero_init_and_matches_hand_computation(make_vit):
    model, _, _ = build(make_vit, "fpa", drop_path_rate=0.0)
    x, y, idx = batch(n=6)
    data = [(x[:4], y[:4], idx[:4]), (x[4:], y[4:], idx[4:])]
    assert fp_distance(model, data, torch.device("cpu"), lambda: torch.autocast("cpu", enabled=False)) == 0.0
    out = fpa_loss(model.train(), x, y, lam=1.0)
    assert num(out.parts["fpa"]) == 0.0

    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.normal_(0, 0.1)
        model.eval()
        with adapters.disabled(model):
            reference = model(x)
        expected = float((model(x) - reference).pow(2).sum(-1).mean())
    got = fp_distance(model, data, torch.device("cpu"), lambda: torch.autocast("cpu", enabled=False))
    assert expected > 0 and got == pytest.approx(expected, rel=1e-5)

    out = fpa_loss(model.train(), x, y, lam=2.0)
    assert num(out.parts["fpa"]) == pytest.approx(expected, rel=1e-5)
    assert num(out.loss) == pytest.approx(num(out.parts["ce"]) + 2.0 * expected, rel=1e-5)
