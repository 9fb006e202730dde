"""The public training API (`pacebench.attach`, `attach_text`, `Tuner`): a step through it is the run's step, bit
for bit; the README's example runs as written; save/load, merging, the loss without a step, and bad input."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import text_fixtures as tf
import torch
from conftest import tiny_swin, tiny_vit

import pacebench
from pacebench.core import adapters, backbones
from pacebench.core.adapters import AdaptedLinear
from pacebench.core.methods import METHODS
from pacebench.errors import DataError, UsageError
from pacebench.plan.planner import PlanRequest, plan
from pacebench.training.loop import Environment, seed_everything

CPU = torch.device("cpu")
STEPS = 4
README = Path(__file__).resolve().parent.parent / "README.md"
HEADING = "## PACE in your own training loop"


def batch(n: int = 8, classes: int = 5, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g), torch.arange(n)


def run_and_api_losses(trainer, tuner, optimizer) -> tuple[list[float], list[float]]:
    """The first STEPS steps of a run's trainer, then the same batches through the API from the same random state,
    with the learning rate of each step the run's (its schedule moves it)."""
    batches = list(itertools.islice(trainer.batches(), STEPS))  # batch assembly may draw (augmentation): before
    state = torch.get_rng_state()
    trainer.model.train()  # as the epoch loop does at every epoch's start (a Hugging Face model loads in eval mode)
    run, lrs = [], []
    for b in batches:
        lrs.append([g["lr"] for g in trainer.state.optimizer.param_groups])
        run.append(trainer.step(b)[0].loss.item())
    torch.set_rng_state(state)
    api = []
    for (x, y, idx), lr in zip(batches, lrs, strict=True):
        for group, value in zip(optimizer.param_groups, lr, strict=True):
            group["lr"] = value
        api.append(tuner.step(x, y, idx, optimizer=optimizer).loss.item())
    return run, api


# ---- the same numbers as `pacebench run` ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["baseline", "pace", "pace_lazy", "pace_fast"])
def test_steps_through_the_api_are_the_image_runs_steps(results, method):
    """`pacebench run demo`'s trainer and the API, on the demo's pre-trained backbone, seed and batches: the same
    initial adapters, the same loss at every step (==, not allclose) and the same weights after them."""
    from pacebench.training.image import ImageTrainer

    [spec] = plan(PlanRequest(suite="demo", methods=[method], seeds=[3], train={"epochs": 2}))
    t = spec.train
    trainer = ImageTrainer(spec, Environment(CPU, Path("."), num_workers=0, diagnostics="off"))
    start = adapters.trainable_state(trainer.model)

    seed_everything(spec.seed)  # as the trainer does first
    model, _ = backbones.build(spec.backbone, trainer.splits.num_classes, t.image_size, t.drop_path)
    tuner = pacebench.attach(
        model, method, adapter=t.adapter, rank=t.rank, num_train=len(trainer.splits.train), **spec.method_config
    )
    assert tuner.state().keys() == start.keys() and all(torch.equal(tuner.state()[k], v) for k, v in start.items())
    optimizer = torch.optim.AdamW(tuner.parameters(), lr=t.lr, weight_decay=t.weight_decay)

    run, api = run_and_api_losses(trainer, tuner, optimizer)
    assert api == run and len(set(run)) == STEPS  # equal, and moving: the steps did train
    trained = adapters.trainable_state(trainer.model)
    assert all(torch.equal(tuner.state()[k], v) for k, v in trained.items())
    assert not all(torch.equal(start[k], v) for k, v in trained.items())


@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api_text")
    tf.write_rte(root / "data")
    return {"data": root / "data", "roberta": tf.tiny_roberta(root / "roberta", root / "data")}


@pytest.mark.parametrize("method", ["baseline", "pace", "pace_lazy", "pace_fast"])
def test_steps_through_the_text_api_are_the_glue_runs_steps(glue, method):
    """The same for `pacebench run glue` on a tiny RoBERTa: peft's LoRA with PACE's noise, shared dropout, the
    linear schedule's learning rates; the API's model loaded from the same folder."""
    from pacebench.training.text import TextTrainer, decay_groups

    [spec] = plan(
        PlanRequest(
            "glue",
            ["rte"],
            [method],
            train={"epochs": 2, "batch_size": 8, "eval_batch_size": 4},
            weights=glue["roberta"],
        )
    )
    t = spec.train
    trainer = TextTrainer(spec, Environment(CPU, glue["data"], weights=glue["roberta"], diagnostics="off"))
    start = adapters.trainable_state(trainer.model)

    seed_everything(spec.seed)
    tuner = pacebench.attach_text(
        glue["roberta"],
        method,
        num_labels=2,
        adapter=t.adapter,
        rank=t.rank,
        alpha=trainer.task.settings.lora_alpha,
        num_train=len(trainer.splits.train),
        **spec.method_config,
    )
    assert all(torch.equal(tuner.state()[k], v) for k, v in start.items()) and tuner.state().keys() == start.keys()
    optimizer = torch.optim.AdamW(
        decay_groups(tuner.parameters(), t.weight_decay), lr=t.lr, weight_decay=t.weight_decay
    )

    run, api = run_and_api_losses(trainer, tuner, optimizer)
    assert api == run
    trained = adapters.trainable_state(trainer.model)
    assert all(torch.equal(tuner.state()[k], v) for k, v in trained.items())


# ---- the README's example ------------------------------------------------------------------------------------


def readme_example() -> str:
    text = README.read_text()
    assert HEADING in text, f"README.md has no section {HEADING!r}"
    block = re.search(r"```python\n(.*?)```", text[text.index(HEADING) :], re.S)
    assert block is not None, f"no python block under {HEADING!r}"
    return block.group(1)


def test_the_readme_example_runs_as_written(tmp_path):
    """The section's python block, extracted and run unchanged in a fresh interpreter (in an empty folder, where it
    saves its adapter file)."""
    code = readme_example()
    assert "pacebench.attach(" in code and ".step(" in code and ".merged()" in code and ".load(" in code
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {"PYTHONPATH": str(README.parent), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "adapter.safetensors").is_file()
    assert "loss" in done.stdout


def test_import_pacebench_loads_torch_only_when_attach_is_used():
    code = (
        "import sys, pacebench\nprint('torch' in sys.modules)\npacebench.attach\nprint('torch' in sys.modules, "
        "'transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(README.parent), "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    assert out == ["False", "True", "False"]


# ---- the tuner's parts ---------------------------------------------------------------------------------------


def test_parameters_are_the_adapters_and_head_only():
    model = tiny_vit()
    tuner = pacebench.attach(model, "pace", rank=4)
    expected = adapters.adapter_parameters(model) + adapters.head_parameters(model)
    assert {id(p) for p in tuner.parameters()} == {id(p) for p in expected}
    assert sum(p.numel() for p in tuner.parameters()) == adapters.count_parameters(model).total
    assert model.training and tuner.facts["sigmas"]


def test_loss_is_the_steps_loss_and_counts_the_step():
    """loss() and step() compute the same objective from the same random state; loss() advances pace_lazy's
    counter as step() does, so every other call is the PACE step."""
    x, y, idx = batch()
    one, two = (pacebench.attach(tiny_vit(), "pace", rank=4) for _ in range(2))
    torch.manual_seed(5)
    stepped = one.step(x, y, idx, optimizer=torch.optim.SGD(one.parameters(), lr=0.1)).loss.item()
    torch.manual_seed(5)
    assert two.loss(x, y, idx).loss.item() == stepped
    lazy = pacebench.attach(tiny_vit(), "pace_lazy", rank=4, interval=2)
    parts = [lazy.loss(x, y, idx).parts["consistency"].item() for _ in range(4)]
    assert [p > 0 for p in parts] == [True, False, True, False]


def test_methods_that_need_several_backward_passes_refuse_loss_but_step():
    x, y, idx = batch()
    tuner = pacebench.attach(tiny_vit(), "sam", rank=4)
    with pytest.raises(UsageError, match="more than one backward pass.*use tuner.step"):
        tuner.loss(x, y, idx)
    before = tuner.state()
    tuner.step(x, y, optimizer=torch.optim.SGD(tuner.parameters(), lr=0.1))  # idx is optional but for pace_fast
    assert not all(torch.equal(before[k], v) for k, v in tuner.state().items())


@pytest.mark.parametrize("method", [m for m, cls in METHODS.items() if cls.trains])
def test_every_training_method_attaches_and_steps(method):
    x, y, idx = batch()
    tuner = pacebench.attach(tiny_vit(), method, rank=4, num_train=len(x))
    out = tuner.step(x, y, idx, optimizer=torch.optim.SGD(tuner.parameters(), lr=0.1))
    assert torch.isfinite(out.loss) and set(out.parts) == set(METHODS.get(method).parts)


def test_merged_evaluates_folded_weights_and_leaves_no_trace():
    model = tiny_vit()
    tuner = pacebench.attach(model, "pace", rank=4)
    x, y, idx = batch()
    tuner.step(x, y, idx, optimizer=torch.optim.SGD(tuner.parameters(), lr=0.5))  # non-zero adapters
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        unmerged = model(x)
    model.train()
    with tuner.merged() as merged, torch.no_grad():
        assert merged is model and not model.training
        assert all(layer.merged for layer in adapters.adapted_layers(model))
        folded = model(x)
    torch.testing.assert_close(folded, unmerged, rtol=1e-5, atol=1e-5)
    assert model.training and not any(layer.merged for layer in adapters.adapted_layers(model))
    assert all(torch.equal(v, frozen[k]) for k, v in model.state_dict().items())


def test_save_and_load_round_trip_with_metadata(tmp_path):
    from safetensors import safe_open

    x, y, idx = batch()
    tuner = pacebench.attach(tiny_vit(seed=0), "pace", rank=4, lam=0.5)
    tuner.step(x, y, idx, optimizer=torch.optim.SGD(tuner.parameters(), lr=0.5))
    path = tuner.save(tmp_path / "sub" / "a.safetensors")
    meta = safe_open(str(path), "pt").metadata()
    assert meta["adapter"] == "lora_mul+vpt_add" and meta["rank"] == "4" and meta["method"] == "pace"
    assert meta["pacebench"] == pacebench.__version__ and '"lam": 0.5' in meta["method_config"]
    other = pacebench.attach(tiny_vit(seed=0), "baseline", rank=4)  # the method may differ: the tensors do not
    other.load(path)
    assert all(torch.equal(other.state()[k], v) for k, v in tuner.state().items())
    tuner.model.eval(), other.model.eval()
    with torch.no_grad():
        assert torch.equal(tuner.model(x), other.model(x))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: pacebench.attach(tiny_vit(), "pace", rank=8), "rank=4, but this model has .*rank=8"),
        (
            lambda: pacebench.attach(tiny_vit(), "pace", rank=4, adapter="lora_add"),
            "adapter=lora_mul\\+vpt_add, .*adapter=lora_add",
        ),
        (
            lambda: pacebench.attach(tiny_vit(num_classes=7), "pace", rank=4),
            "head.linear.bias has shape \\(5,\\) there",
        ),
        (lambda: pacebench.attach(tiny_vit(depth=2), "pace", rank=4), "only in the file"),
    ],
)
def test_load_refuses_a_file_for_another_adapter_with_one_line_and_copies_nothing(tmp_path, make, message):
    path = pacebench.attach(tiny_vit(), "pace", rank=4).save(tmp_path / "a.safetensors")
    tuner = make()
    before = tuner.state()
    with pytest.raises(DataError, match=message) as info:
        tuner.load(path)
    assert "\n" not in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in tuner.state().items())


def test_load_refuses_files_it_did_not_write(tmp_path):
    from safetensors.torch import save_file

    tuner = pacebench.attach(tiny_vit(), "pace", rank=4)
    with pytest.raises(DataError, match="not found"):
        tuner.load(tmp_path / "none.safetensors")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(DataError, match="not an adapter file saved by pacebench"):
        tuner.load(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read adapter file"):
        tuner.load(tmp_path / "junk.safetensors")
    with pytest.raises(UsageError, match="end the file name in .safetensors"):
        tuner.save(tmp_path / "a.pt")


def test_swin_attaches_too():
    x, y, idx = batch()
    tuner = pacebench.attach(tiny_swin(), "pace", rank=4)
    out = tuner.step(x, y, idx, optimizer=torch.optim.SGD(tuner.parameters(), lr=0.1))
    assert out.parts["consistency"] > 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: pacebench.attach(m, "pace", lamda=1), "unknown method pace hyperparameter 'lamda'; known: .*lam"),
        (lambda m: pacebench.attach(m, "pase"), "unknown method 'pase'; choose one of: baseline, "),
        (lambda m: pacebench.attach(m, "pace", sigma=-1), "sigma=-1.0: needs σ >= 0"),
        (lambda m: pacebench.attach(m, "pace_fast"), "give num_train=len\\(train_set\\)"),
        (lambda m: pacebench.attach(m, "pretrained"), "trains nothing"),
        (lambda m: pacebench.attach(m, "pace", adapter="nosuch"), "unknown adapter 'nosuch'"),
        (lambda m: pacebench.attach(m, "pace", rank=0), "rank must be a whole number >= 1, got 0"),
        (lambda m: pacebench.attach(m, "pace", rank=2.5), "rank must be a whole number >= 1, got 2.5"),
        (lambda m: pacebench.attach(m, "pace", rank="4"), "rank must be a whole number >= 1, got '4'"),
        (lambda m: pacebench.attach(m, "pace", adapter="ssf", rank=4), "adapter ssf has no size: leave rank unset"),
        (lambda m: pacebench.attach(m, "pace", adapter="ssf", adapter_scale=0.5), "ssf has no adapter_scale"),
        (lambda m: pacebench.attach(m, "pace", lam=1, **{"lambda": 0.5}), r"lam is given twice \('lam' and 'lambda'\)"),
        (lambda m: pacebench.attach("vit"), r"takes a timm ViT or Swin model \(an nn.Module\), not a str"),
        (lambda m: pacebench.attach(m, "pace", precision="fp16"), "precision must be one of auto, fp32, bf16"),
        (lambda m: pacebench.attach(torch.nn.Linear(2, 2), "pace"), "not on Linear"),
        (lambda m: pacebench.attach(m, "pace", device="gpu"), "invalid --device 'gpu'"),
    ],
)
def test_bad_arguments_are_one_line_errors_and_leave_the_model_as_it_was(call, message):
    model = tiny_vit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kinds, trained = [type(m) for m in model.modules()], [p.requires_grad for p in model.parameters()]
    with pytest.raises(UsageError, match=message) as info:
        call(model)
    assert "\n" not in str(info.value)
    assert not any(isinstance(m, AdaptedLinear) for m in model.modules())
    assert model.state_dict().keys() == before.keys()
    assert [type(m) for m in model.modules()] == kinds and [p.requires_grad for p in model.parameters()] == trained


def test_a_kind_gets_its_own_size_and_options_unless_given(tmp_path):
    """As `pacebench run` resolves them: no rank means the kind's own default, not the paper's family's 10."""
    assert pacebench.attach(tiny_vit(), "pace").signature["rank"] == "10"
    assert pacebench.attach(tiny_vit(), "pace", adapter="adaptformer").signature["rank"] == "8"
    assert pacebench.attach(tiny_vit(), "pace", adapter="ssf").signature["rank"] == "none"
    scaled = pacebench.attach(tiny_vit(), "pace", adapter="adaptformer", rank=4, adapter_scale=0.5)
    assert {m.scale for m in scaled.model.modules() if type(m).__name__ == "ParallelAdapter"} == {0.5}
    path = scaled.save(tmp_path / "a.safetensors")
    with pytest.raises(DataError, match="adapter_scale=0.5, but this model has .*adapter_scale=0.1"):
        pacebench.attach(tiny_vit(), "pace", adapter="adaptformer", rank=4).load(path)


def test_attaching_twice_and_pace_fast_without_positions_are_errors():
    model = tiny_vit()
    tuner = pacebench.attach(model, "pace_fast", rank=4, num_train=8)
    with pytest.raises(UsageError, match="has adapters already"):
        pacebench.attach(model, "pace")
    x, y, _ = batch()
    with pytest.raises(UsageError, match="needs each sample's position in the training set: pass idx"):
        tuner.step(x, y, optimizer=torch.optim.SGD(tuner.parameters(), lr=0.1))


# ---- text ----------------------------------------------------------------------------------------------------


def test_text_tuner_steps_merges_and_round_trips(glue, tmp_path):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(glue["roberta"], num_labels=3)
    tuner = pacebench.attach_text(model, "pace", rank=4, lam=0.5)
    assert isinstance(tuner, pacebench.api.TextTuner)
    ids = torch.randint(5, 30, (4, 7))
    x, y = torch.stack([ids, torch.ones_like(ids)], dim=1), torch.tensor([0, 1, 2, 1])
    out = tuner.step(x, y, optimizer=torch.optim.SGD(tuner.parameters(), lr=0.5))
    assert out.logits.shape == (4, 3) and out.parts["consistency"] > 0
    bases = {k: v.clone() for k, v in model.state_dict().items() if "base_layer" in k}
    tuner.model.eval()
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits  # LoRA went into the caller's model in place
    with tuner.merged(), torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, unmerged, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in bases.items())  # peft's unmerge, then exact
    path = tuner.save(tmp_path / "t.safetensors")
    torch.manual_seed(0)
    again = pacebench.attach_text(glue["roberta"], "baseline", num_labels=3, rank=4)
    again.load(path)
    again.model.eval()
    with torch.no_grad():
        assert torch.equal(again.model(x), tuner.model(x))
    with pytest.raises(DataError, match="alpha=8.0, but this model has .*alpha=16.0"):
        pacebench.attach_text(glue["roberta"], "pace", num_labels=3, rank=4, alpha=16).load(path)
    with pytest.raises(DataError, match="kind=text.*kind=image"):
        pacebench.attach(tiny_vit(), "pace", rank=4).load(path)


def test_text_regression_takes_mse(glue):
    tuner = pacebench.attach_text(glue["roberta"], "baseline", num_labels=1, rank=4)
    ids = torch.randint(5, 30, (4, 7))
    x, y = torch.stack([ids, torch.ones_like(ids)], dim=1), torch.tensor([0.5, 1.0, 4.0, 2.5])
    out = tuner.loss(x, y)
    expected = torch.nn.functional.mse_loss(out.logits.squeeze(-1), y)
    assert out.loss.item() == pytest.approx(expected.item())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda folder: pacebench.attach_text(folder, "sam", num_labels=2),
            "does not run on text models; choose from baseline, pace, pace_lazy, pace_fast",
        ),
        (lambda folder: pacebench.attach_text(folder, "pace"), "give num_labels="),
        (lambda folder: pacebench.attach_text(folder, "pace", num_labels=2, adapter="lora"), "adapter=lora:MODULE"),
        (
            lambda folder: pacebench.attach_text(folder, "pace", num_labels=2, adapter="lora:nothing"),
            "cannot put LoRA on \\['nothing'\\]",
        ),
        (lambda folder: pacebench.attach_text(tiny_vit(), "pace"), "takes a Hugging Face sequence classifier"),
        (lambda folder: pacebench.attach_text(folder, "pace", num_labels=2, lam="big"), "must be float"),
        (lambda folder: pacebench.attach_text(folder, "pace", num_labels=2, rank=0), "rank must be a whole number"),
        (
            lambda folder: pacebench.attach_text(folder, "pace", num_labels=2, alpha=float("nan")),
            "alpha .* > 0, got nan",
        ),
        (lambda folder: pacebench.attach_text(folder, "pace", num_labels=2, alpha=-1), "alpha .* > 0, got -1"),
        (lambda folder: pacebench.attach_text(folder, "pace", num_labels=2, device="tpu"), "invalid --device"),
    ],
)
def test_text_bad_arguments_are_one_line_errors(glue, call, message):
    with pytest.raises(UsageError, match=message) as info:
        call(glue["roberta"])
    assert "\n" not in str(info.value)


def test_a_text_model_folder_that_does_not_exist_is_named_as_such(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(DataError, match="no model folder at .*nothing; give the folder that holds config.json"):
        pacebench.attach_text(tmp_path / "nothing", "pace", num_labels=2)
