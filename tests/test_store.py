"""The results store's contract on SQLite, PostgreSQL and in memory (round trips with NaN and infinities, records,
filters, weights), and the SQL store's migrations and run keys."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import sqlite3

import pytest
from conftest import rewrite_run, written_run

from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.store import EpochRecord, Store
from pacebench.store.database import head_revision


def spec(**changes) -> RunSpec:
    base = RunSpec(
        suite="demo",
        dataset="digits",
        method="pace",
        seed=0,
        train=TrainConfig(epochs=3),
        backbone="vit_demo",
        method_config={"lam": 1.0, "sigma": 1.2},
        data_options={"shots": 20},
    )
    return base.with_(**changes)


def test_migration_to_head_on_an_empty_file(tmp_path):
    path = tmp_path / "new" / "fresh.db"
    Store(f"sqlite:///{path}")
    tables = {r[0] for r in sqlite3.connect(path).execute("select name from sqlite_master where type='table'")}
    assert {"runs", "epochs", "speed", "alembic_version"} <= tables
    revision = sqlite3.connect(path).execute("select version_num from alembic_version").fetchone()[0]
    assert revision == head_revision()
    Store(f"sqlite:///{path}")  # opening again is a no-op, not a second migration


def test_epoch_round_trip_keeps_nan_and_infinities(store):
    values = dict(
        lr=1e-3,
        loss=math.nan,
        train_acc=math.inf,
        val_acc=-math.inf,
        test_acc=None,
        grad_norm_mean=0.5,
        grad_norm_max=math.nan,
        fp_distance=2.5,
        wall_time=0.1,
    )
    run = written_run(
        store,
        spec(),
        epochs=[
            EpochRecord(
                epoch=0, parts={"ce": math.nan, "consistency": math.inf, "x": 1.0}, evals={"val": -math.inf}, **values
            )
        ],
    )
    (back,) = store.epochs(run.id)
    assert math.isnan(back.loss) and back.train_acc == math.inf and back.val_acc == -math.inf
    assert back.test_acc is None and back.grad_norm_mean == 0.5 and math.isnan(back.grad_norm_max)
    assert math.isnan(back.parts["ce"]) and back.parts["consistency"] == math.inf and back.parts["x"] == 1.0
    assert back.evals == {"val": -math.inf}


def test_run_round_trip_and_plain_records(store):
    s = spec()
    (run,) = store.enqueue([s])
    assert run.key == run_key(s) and run.status == "queued" and run.method_config == {"lam": 1.0, "sigma": 1.2}
    assert run.hparams["epochs"] == 3 and run.data_options == {"shots": 20} and run.phase == "final"
    assert type(run).__module__ == "pacebench.store.records"  # never an ORM row
    written_run(store, s, {"test_acc": 91.5, "evals": {"test": 91.5}, "fp": math.nan})
    done = store.get_run(run_key(s))
    assert done.status == "done" and done.metrics["test_acc"] == 91.5 and math.isnan(done.metrics["fp"])


def test_epoch_is_unique_per_run_and_epoch(store):
    run = written_run(store, spec(), status="running")
    store.write_epoch(run.id, run.claim, EpochRecord(epoch=1, loss=1.0))
    store.write_epoch(run.id, run.claim, EpochRecord(epoch=1, loss=0.5))  # an interrupted attempt's row is replaced
    assert [e.loss for e in store.epochs(run.id)] == [0.5]


def test_run_key_is_stable_and_sensitive():
    a = run_key(spec())
    assert a == run_key(spec(method_config={"sigma": 1.2, "lam": 1.0}))  # dict order is irrelevant
    assert re.fullmatch(r"[0-9a-f]{16}", a), a  # 16 lower-case hex digits, nothing else
    for change in (
        dict(seed=1),
        dict(method="baseline"),
        dict(train=TrainConfig(epochs=4)),
        dict(phase="tune"),
        dict(weights_sha256="ab"),
        dict(data_options={"shots": 10}),
        dict(dataset="other"),
    ):
        assert run_key(spec(**change)) != a, change


def key_010(spec: RunSpec) -> str:
    """The run key as pacebench 0.1.0 computed it: the plain spec, before `augment`, the adapter options (None
    here) or any behaviour change."""
    blob = dataclasses.asdict(spec)
    assert blob.pop("data_fingerprint") == ""  # the data fingerprint came later too
    del blob["train"]["augment"]
    for name in ("adapter_scale", "adapter_dropout"):
        assert blob["train"].pop(name) is None
    return hashlib.sha256(json.dumps(blob, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


PACE = {"sigma": 1.2, "schedule": "code", "lam": 1.0}  # pace's full config in 0.1.0 (no noise_group yet)


def spec_010(**kw) -> RunSpec:
    # precision "auto" is resolved (fp32 on a CPU, bf16 on CUDA) before a run key is taken: specs say what ran
    base = dict(
        suite="vtab",
        dataset="cifar",
        method="pace",
        seed=0,
        train=TrainConfig(epochs=1, precision="fp32"),
        backbone="vit_b16_in21k",
        method_config=PACE,
    )
    return RunSpec(**{**base, **kw})  # type: ignore[arg-type]


# Runs that no later change touches: (the spec in 0.1.0, what today's spec adds, the key 0.1.0 gave it)
UNCHANGED = {
    "demo, 1 epoch": (
        dict(suite="demo", dataset="digits", method="baseline", method_config={}, backbone="vit_demo"),
        {},
        "1f10c285654376e2",
    ),
    "ViT pace, 1 epoch": ({}, {}, "d3d934e9fe07edf7"),
    "Swin pace per sample": (
        dict(backbone="swin_b_in22k"),
        dict(method_config={**PACE, "noise_group": "sample"}),
        "b5fe78f4bebcb05b",
    ),
    "domain, crop/flip": (
        dict(suite="domain", dataset="imagenet", method="baseline", method_config={}),
        dict(train=TrainConfig(epochs=1, augment="standard", precision="fp32")),
        "e92503b08c8609f7",
    ),
}


@pytest.mark.parametrize("name", UNCHANGED)
def test_runs_no_change_affects_keep_their_010_keys(name):
    then, now, known = UNCHANGED[name]
    assert key_010(spec_010(**then)) == known  # the helper really is 0.1.0's hashing (written down from 0.1.0)
    assert run_key(spec_010(**then).with_(**now)) == known


# Runs whose results a change alters: each must get a new key (so it is trained again, never skipped)
CHANGED = {
    "lr steps after the epoch": dict(train=TrainConfig(epochs=2, precision="fp32")),
    "LoRA_add's δb": dict(train=TrainConfig(epochs=1, adapter="lora_add", precision="fp32")),
    "LoRA_add+VPT_add's δb": dict(train=TrainConfig(epochs=1, adapter="lora_add+vpt_add", precision="fp32")),
    "Swin noise per window": dict(backbone="swin_b_in22k"),
    "CLIP mean/std": dict(backbone="vit_b_laion2b_in12k"),
    "strong augmentation": dict(train=TrainConfig(epochs=1, augment="strong", precision="fp32")),
}


@pytest.mark.parametrize("name", CHANGED)
def test_runs_a_change_affects_get_new_keys(name):
    s = spec_010(**CHANGED[name])
    assert run_key(s) != key_010(s)


def test_key_fills_method_defaults_and_ignores_noise_group_where_it_changes_nothing():
    vit = spec_010()
    # ViT: one draw per sample either way
    assert run_key(vit.with_(method_config={**PACE, "noise_group": "sample"})) == run_key(vit)
    assert run_key(vit.with_(method_config={"lam": 1.0})) == run_key(vit)  # defaults filled in
    swin = spec_010(backbone="swin_b_in22k")
    # window is the default
    assert run_key(swin.with_(method_config={**PACE, "noise_group": "window"})) == run_key(swin)
    assert run_key(swin.with_(method_config={**PACE, "noise_group": "sample"})) != run_key(swin)


def test_stored_runs_made_before_a_change_are_not_current(store):
    from pacebench.plan.runkey import is_current

    fresh, old = store.enqueue([spec(), spec(seed=7)])
    assert is_current(fresh)
    rewrite_run(store, old.id, key=key_010(spec(seed=7)))  # as 0.1.0 stored it: 3 epochs, so the lr step changes it
    assert not is_current(store.get_run(old.id))


def test_enqueue_returns_the_existing_run(store):
    first = written_run(store, spec(), {"test_acc": 1.0})
    (again,) = store.enqueue([spec()])
    assert again.id == first.id and again.status == "done" and again.metrics == {"test_acc": 1.0}
    assert len(store.runs()) == 1


def test_filters(store):
    store.enqueue([spec(), spec(method="baseline", method_config={})])
    assert [r.method for r in store.runs(method="baseline")] == ["baseline"]
    assert len(store.runs(method=["baseline", "pace"])) == 2 and len(store.runs(method=None)) == 2
    assert store.status_counts(method="pace") == {"queued": 1}
    with pytest.raises(UsageError):
        store.runs(colour="red")


def test_unopenable_database_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PacebenchError, match="cannot open database"):
        Store(f"sqlite:///{tmp_path}/file/sub/r.db")
    with pytest.raises(UsageError, match="cannot parse database URL"):
        Store("not a url")
    with pytest.raises(PacebenchError, match="cannot open database"):
        Store("nosuchdialect://x")


def test_invalid_training_setting():
    with pytest.raises(UsageError, match="epochs"):
        TrainConfig(epochs=0)


def test_finished_run_keeps_its_weights_bit_for_bit(store):
    import torch

    (queued,) = store.enqueue([spec()])
    assert store.run_weights(queued.id) is None
    weights = {"blocks.0.attn.qkv.lora.down": torch.randn(6, 2), "head.linear.bias": torch.tensor([1.0, math.nan])}
    run = written_run(store, spec(), {"test_acc": 50.0}, weights=weights)
    back = store.run_weights(run.id)
    assert back.keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(back[name].nan_to_num(7.0), tensor.nan_to_num(7.0))
