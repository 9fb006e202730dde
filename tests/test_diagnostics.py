"""Fig. 2's readings: the task-loss gradient norm of the clean model against a hand computation, and taking the
readings (or not, or every epoch) leaves training bit-for-bit unchanged."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pacebench.core import adapters
from pacebench.core.methods import METHODS, SetupInfo
from pacebench.training.diagnostics import clean_readings, diagnose, heldout_split

CPU = torch.device("cpu")


def no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_task_grad_norm_is_the_clean_ce_gradient_per_batch_averaged(make_vit):
    model = make_vit(depth=2, drop_path_rate=0.5)
    adapters.inject(model, "lora_mul+vpt_add", 2)
    METHODS.get("pace")(METHODS.get("pace").make_config({"sigma": 2.0})).setup(model, SetupInfo(8, 5))
    with torch.no_grad():
        for p in adapters.adapter_parameters(model):
            p.normal_(0, 0.1)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, 32, 32, generator=g), torch.randint(0, 5, (6,), generator=g)
    data = [(x[:4], y[:4], None), (x[4:], y[4:], None)]
    expected = []
    for xb, yb, _ in data:  # by hand: eval mode (no noise, no DropPath), plain CE, one norm per batch
        model.eval()
        model.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        expected.append(math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params)))
        model.zero_grad(set_to_none=True)
    model.train()
    got, _ = clean_readings(model, data, params, CPU, no_autocast)
    assert got == pytest.approx(sum(expected) / 2, rel=1e-5)
    assert all(p.grad is None for p in params), "the reading writes no gradients the optimizer could see"
    again, _ = clean_readings(model.train(), data, params, CPU, no_autocast)
    assert again == pytest.approx(got, rel=1e-6), "noise and DropPath are off whatever the mode it was called in"
    readings = diagnose(model, {"train": data, "heldout": data[:1]}, params, CPU, no_autocast)
    assert readings["grad_norm_task_train"] == pytest.approx(got, rel=1e-6)
    assert readings["grad_norm_task_heldout"] == pytest.approx(expected[0], rel=1e-5)
    assert set(readings) == {"grad_norm_task_train", "grad_norm_task_heldout", "fp_distance", "fp_distance_heldout"}


def test_heldout_split_is_val_in_tune_and_test_in_final():
    assert heldout_split({"val": 1}) == "val"
    assert heldout_split({"test": 1}) == "test"
    assert heldout_split({"imagenet": 1, "imagenet_r": 2}) == "imagenet"


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("results")
    mp = pytest.MonkeyPatch()
    mp.setenv("PACEBENCH_RESULTS", str(path))
    from pacebench.training.pretrain import pretrain_demo_backbone

    pretrain_demo_backbone(epochs=1)
    yield path
    mp.undo()


@pytest.mark.parametrize("phase", ["tune", "final"])
def test_readings_never_change_training_and_tune_never_reads_test(demo_weights, phase, monkeypatch):
    from pacebench.plan.planner import PlanRequest, plan
    from pacebench.training import Environment, train_run

    spec = plan(
        PlanRequest(suite="demo", methods=["pace"], phase=phase, train={"epochs": 3, "eval_every": 2, "batch_size": 32})
    )[0]
    opened = []
    import pacebench.training.image as train

    real = train.load_splits

    def spy(spec, *args):
        splits = real(spec, *args)
        opened.extend(splits.evals)
        return splits

    monkeypatch.setattr(train, "load_splits", spy)
    outs = {}
    for mode in ("off", "eval", "every"):
        records: list = []
        result = train_run(
            spec,
            Environment(CPU, Path("."), num_workers=0, diagnostics=mode),
            lambda e, r, records=records: records.append(r),
        )
        outs[mode] = (result, records)
    off, ev, every = (outs[m] for m in ("off", "eval", "every"))
    for mode in ("eval", "every"):
        torch.testing.assert_close(outs[mode][0].weights, off[0].weights, rtol=0, atol=0)
        assert [r.loss for r in outs[mode][1]] == [r.loss for r in off[1]]
    assert all(r.grad_norm_task_heldout is None for r in off[1])
    assert [r.grad_norm_task_heldout is not None for r in ev[1]] == [False, True, True]  # eval epochs 1 and 2
    assert all(r.grad_norm_task_train > 0 and r.fp_distance_heldout >= 0 for r in every[1])
    assert set(opened) == ({"val"} if phase == "tune" else {"test"})


def test_diagnostic_subset_is_fixed_and_bounded():
    from torch.utils.data import TensorDataset

    from pacebench.training.diagnostics import diagnostic_subset

    small = TensorDataset(torch.arange(10))
    assert diagnostic_subset(small, 10) is small
    big = TensorDataset(torch.arange(5000))
    a, b = diagnostic_subset(big, 100), diagnostic_subset(big, 100)
    assert len(a) == 100 and list(a.indices) == list(b.indices) == sorted(set(a.indices))
    state = torch.get_rng_state()
    diagnostic_subset(big, 100)
    assert torch.equal(state, torch.get_rng_state()), "the global RNG is untouched"
