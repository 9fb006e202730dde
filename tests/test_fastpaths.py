"""The training fast paths give the plain path's values and gradients: merged-weight products for layers whose
noise is off, the noise-free prefix run once for PACE's copies, and torch.compile'd blocks."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from pacebench.core import adapters
from pacebench.core.adapters import PART_KINDS, AdaptedLinear, plain_paths
from pacebench.core.methods import METHODS, SetupInfo
from pacebench.core.noise import NOISES, Noise
from pacebench.core.prefix import noise_free_blocks
from pacebench.core.prepare import attach
from pacebench.training.image import compile_blocks

B, CLASSES = 4, 5


def randomise_adapters(model: nn.Module, seed: int = 1) -> None:
    """Non-zero D and prompts (zeros would make ΔW = 0 and any merge test trivially true)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def grads_and_loss(fn, params: list[nn.Parameter], seed: int) -> tuple[Tensor, list[Tensor]]:
    for p in params:
        p.grad = None
    torch.manual_seed(seed)
    loss = fn()
    loss.backward()
    return loss.detach(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def assert_same(a: tuple[Tensor, list[Tensor]], b: tuple[Tensor, list[Tensor]]) -> None:
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-6)
    for ga, gb in zip(a[1], b[1], strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", PART_KINDS)
@pytest.mark.parametrize("noise", ["none", "sigma0", "eval", "gauss_mul", "gauss_add", "dropout", "output"])
def test_adapted_linear_fast_path_equals_two_products(kind, noise):
    base = nn.Linear(6, 4)
    layer = AdaptedLinear(base, [adapters.PARTS.get(n)(base, 2) for n in kind.split("+")], position=1)
    randomise_adapters(layer)
    if noise != "none":
        noise_kind = noise if noise in NOISES else "gauss_mul"
        layer.noise = Noise(noise_kind, {"sigma0": 0.0, "dropout": 0.3}.get(noise, 0.7))
        layer.noise_target = "output" if noise == "output" else "delta"
    layer.train(noise != "eval")
    params = [p for p in layer.parameters() if p.requires_grad]
    x = torch.randn(3, 5, 6, requires_grad=True)

    def run() -> Tensor:
        return (layer(x) * torch.linspace(-1, 1, 4)).pow(2).sum()

    fast = grads_and_loss(run, params + [x], seed=0)
    assert layer.noisy == (noise not in ("none", "sigma0", "eval"))
    assert layer._per_sample_pays(x), "a narrow layer on the CPU: multiplicative noise takes the per-sample path"
    with plain_paths():
        plain = grads_and_loss(run, params + [x], seed=0)
    assert_same(fast, plain)
    assert any(g.abs().sum() > 0 for g in fast[1][:-1]), "gradients reach the adapter parameters"


@pytest.mark.parametrize("chunk", [1, 2, 64])
def test_per_sample_weights_built_chunk_by_chunk_equal_two_products(monkeypatch, chunk):
    """The per-sample weights are built a few samples at a time (here 1, 2 with a last chunk of 1, or all 5 at
    once): forward, input gradient, ΔW and Δb gradients equal the plain path's."""
    from pacebench.core.adapters import persample

    base = nn.Linear(6, 4)
    layer = AdaptedLinear(base, [adapters.PARTS.get("lora_add")(base, 2)], position=1)
    randomise_adapters(layer)
    layer.noise = Noise("gauss_mul", 0.7)
    monkeypatch.setattr(persample, "CHUNK_BYTES", chunk * base.weight.numel() * 4)
    params = [p for p in layer.parameters() if p.requires_grad]
    x = torch.randn(5, 3, 6, requires_grad=True)

    def run() -> Tensor:
        return (layer(x) * torch.linspace(-1, 1, 4)).pow(2).sum()

    assert persample._chunk(base.weight) == chunk
    fast = grads_and_loss(run, params + [x], seed=0)
    with plain_paths():
        plain = grads_and_loss(run, params + [x], seed=0)
    assert_same(fast, plain)


@pytest.mark.parametrize("name", sorted(n for n, cls in METHODS.items() if cls.trains))  # "pretrained" only evaluates
def test_every_method_fast_equals_plain_loss_and_gradients(make_vit, name):
    ready = attach(make_vit(depth=3, drop_path_rate=0.2), name, SetupInfo(10, CLASSES), "lora_mul+vpt_add", 2)
    randomise_adapters(ready.model)
    g = torch.Generator().manual_seed(3)
    x, y, idx = torch.randn(B, 3, 32, 32, generator=g), torch.randint(0, CLASSES, (B,), generator=g), torch.arange(B)
    fast = grads_and_loss(lambda: ready.method.loss(ready.model, x, y, idx).loss, ready.params, seed=5)
    with plain_paths():
        ready.method.steps = 0
        if hasattr(ready.method, "history"):
            ready.method.history = None
        plain = grads_and_loss(lambda: ready.method.loss(ready.model, x, y, idx).loss, ready.params, seed=5)
    assert_same(fast, plain)


def test_pace_runs_the_noise_free_prefix_once(make_vit):
    """Authors' ViT schedule: block 0 has σ = 0, so it sees the B real images and block 1 the 2B copies."""
    ready = attach(make_vit(depth=3, drop_path_rate=0.2), "pace", SetupInfo(10, CLASSES), "lora_mul+vpt_add", 2)
    assert noise_free_blocks(ready.model) == 1
    rows: dict[int, int] = {}
    for i, block in enumerate(ready.model.blocks):
        block.register_forward_hook(lambda m, args, out, i=i: rows.__setitem__(i, out.shape[0]))
    logits = ready.method.loss(
        ready.model, torch.randn(B, 3, 32, 32), torch.zeros(B, dtype=torch.long), torch.arange(B)
    ).logits
    assert rows == {0: B, 1: 2 * B, 2: 2 * B} and logits.shape[0] == B
    assert not any(b._forward_pre_hooks for b in ready.model.blocks), "the duplicating hook is removed"


def test_no_prefix_when_the_stem_or_first_block_is_stochastic(make_vit):
    ready = attach(make_vit(depth=3), "pace", SetupInfo(10, CLASSES), "lora_mul+vpt_add", 2, {"schedule": "paper"})
    assert noise_free_blocks(ready.model) == 0, "the paper's schedule puts noise on block 0"
    ready = attach(make_vit(depth=3), "pace", SetupInfo(10, CLASSES), "lora_mul+vpt_add", 2)
    ready.model.pos_drop.p = 0.1
    assert noise_free_blocks(ready.model) == 0, "dropout before the blocks differs between copies"
    baseline = attach(make_vit(depth=3, drop_path_rate=0.2), "baseline", SetupInfo(10, CLASSES))
    assert noise_free_blocks(baseline.model) == 1, "timm's DropPath is Identity in block 0"
    assert baseline.model.blocks[1].drop_path1.__class__.__name__ == "DropPath"
    assert noise_free_blocks(baseline.model) < 2, "an unshared DropPath ends the prefix"


@pytest.mark.parametrize("name", ["baseline", "pace"])
def test_compiled_blocks_equal_eager(make_vit, name):
    """Dynamo traces the blocks (hooks, shared DropPath, noise) with AOT autograd; random ops use eager's
    generator, so the same seed gives the same loss and gradients."""

    def run(compiled: bool) -> tuple[Tensor, list[Tensor]]:
        ready = attach(make_vit(depth=2, drop_path_rate=0.2), name, SetupInfo(10, CLASSES), "lora_mul+vpt_add", 2)
        randomise_adapters(ready.model)
        if compiled:
            assert compile_blocks(ready.model, backend="aot_eager") == 2
        x, y = torch.randn(B, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(B) % CLASSES
        return grads_and_loss(lambda: ready.method.loss(ready.model, x, y, torch.arange(B)).loss, ready.params, 7)

    assert_same(run(True), run(False))


@pytest.mark.parametrize("group", ["window", "sample"])
def test_swin_fast_equals_plain_for_both_noise_groups(make_swin, group):
    ready = attach(
        make_swin(drop_path_rate=0.2), "pace", SetupInfo(10, CLASSES), "lora_mul+vpt_add", 2, {"noise_group": group}
    )
    randomise_adapters(ready.model)
    x, y = torch.randn(B, 3, 32, 32, generator=torch.Generator().manual_seed(2)), torch.arange(B) % CLASSES
    fast = grads_and_loss(lambda: ready.method.loss(ready.model, x, y, torch.arange(B)).loss, ready.params, seed=4)
    with plain_paths():
        plain = grads_and_loss(lambda: ready.method.loss(ready.model, x, y, torch.arange(B)).loss, ready.params, 4)
    assert_same(fast, plain)


@pytest.mark.parametrize("name", ["baseline", "pace", "pace_add", "pace_h"])
def test_fast_paths_under_bf16_autocast(make_vit, name):
    """The GPU default is bf16 autocast: the fast paths run under it (on the CPU here) and agree with the plain
    path to bf16 precision; the noise is drawn in the dtype the plain path draws it in."""
    ready = attach(make_vit(depth=3, drop_path_rate=0.2), name, SetupInfo(10, CLASSES), "lora_mul+vpt_add", 2)
    randomise_adapters(ready.model)
    x, y = torch.randn(B, 3, 32, 32, generator=torch.Generator().manual_seed(3)), torch.arange(B) % CLASSES

    def loss() -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return ready.method.loss(ready.model, x, y, torch.arange(B)).loss

    fast = grads_and_loss(loss, ready.params, seed=5)
    with plain_paths():
        plain = grads_and_loss(loss, ready.params, seed=5)
    torch.testing.assert_close(fast[0], plain[0], rtol=2e-2, atol=2e-2)
    for a, b in zip(fast[1], plain[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0.1, atol=0.05)


class HostRead(AssertionError):
    pass


@pytest.mark.parametrize("name", sorted(n for n, cls in METHODS.items() if cls.trains))
def test_a_training_step_never_reads_a_tensor_on_the_host(make_vit, name, monkeypatch):
    """Inside a step nothing may wait for the device: every way of reading a tensor's value on the host raises
    while the method computes its loss, backward and gradient norm and the epoch statistics accumulate. The
    optimizer is exempt (on CPU AdamW reads its step count, a host tensor; on CUDA pacebench uses the fused kernel,
    which keeps it on the device); the epoch's one read, `EpochStats.finish`, is refused too, so the guard works."""
    from pacebench.training.image import train_step
    from pacebench.training.loop import EpochStats

    ready = attach(make_vit(depth=2, drop_path_rate=0.2), name, SetupInfo(10, CLASSES), "lora_mul+vpt_add", 2)
    optimizer = torch.optim.AdamW(ready.params, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(B, 3, 32, 32, generator=g), torch.randint(0, CLASSES, (B,), generator=g), torch.arange(B))
        for _ in range(3)
    ]
    guarded = {"on": True}
    originals = {
        name: getattr(torch.Tensor, name)
        for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy")
    }

    def refusing(original):
        def read(*args, **kwargs):
            if guarded["on"]:
                raise HostRead(f"a tensor was read on the host ({original.__name__}) inside a training step")
            return original(*args, **kwargs)

        return read

    for attr, original in originals.items():
        monkeypatch.setattr(torch.Tensor, attr, refusing(original))
    step = optimizer.step

    def unguarded_step(*args, **kwargs):
        guarded["on"] = False
        try:
            return step(*args, **kwargs)
        finally:
            guarded["on"] = True

    optimizer.step = unguarded_step  # type: ignore[method-assign]
    stats = EpochStats(torch.device("cpu"))
    for batch in batches:
        out, targets = train_step(ready.method, ready.model, batch, optimizer, ready.params, None)
        stats.add(out.loss, out.parts, out.logits, targets, out.grad_norm)
    with pytest.raises(HostRead):
        stats.finish()
