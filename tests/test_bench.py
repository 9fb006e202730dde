"""`pacebench bench` and its table, and the one way a model is built (`prepare`): weights checked against the run's
hash, planning without side effects, precision resolved before the key is taken."""

from __future__ import annotations

import pytest
import timm
import torch
from conftest import TINY_BENCH
from safetensors.torch import save_file
from typer.testing import CliRunner

from pacebench.cli import app
from pacebench.core.methods import SetupInfo
from pacebench.core.prepare import prepare
from pacebench.errors import DataError
from pacebench.plan.runkey import run_key
from pacebench.plan.spec import RunSpec, TrainConfig

runner = CliRunner()


def test_bench_stores_rows_and_report_renders_them(tmp_path):
    db = f"sqlite:///{tmp_path}/b.db"
    args = [*TINY_BENCH, "--rank", "2", "--methods", "pace,noise", "--steps", "2", "--db", db, "--profile", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    from pacebench.store import Store

    rows = Store(db).speed()
    assert [r["method"] for r in rows] == ["baseline", "pace", "noise"], "the baseline is measured first"
    base, pace, noise = rows
    assert base["time_ratio"] == base["flop_ratio"] == 1.0 and len(base["times_ms"]) == 2
    assert noise["flop_ratio"] == pytest.approx(1.0), "on a CPU a noisy layer folds z into per-sample weights"
    assert pace["flop_ratio"] > 1.5, "PACE runs two copies after the noise-free prefix"
    assert result.output.count("operators by their own time") == 3 and "aten::" in result.output, "--profile"
    assert base["precision"] == "fp32" and base["device"] == "cpu" and base["versions"]["torch"] == torch.__version__
    assert base["peak_mib"] is None and base["mfu"] is None, "memory and MFU are measured on CUDA only"
    table = runner.invoke(app, ["report", "--table", "speed", "--format", "md", "--db", db])
    assert table.exit_code == 0 and "| pace |" in table.output.replace("  ", " ")


def test_bench_rejects_bad_settings(tmp_path):
    result = runner.invoke(app, ["bench", "--precision", "fp16", "--device", "cpu", "--db", f"sqlite:///{tmp_path}/x"])
    assert result.exit_code == 2 and "precision" in result.output


def test_prepare_checks_the_weights_against_the_runs_hash(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(timm.create_model("test_vit", num_classes=0).state_dict(), str(path))
    spec = RunSpec(
        suite="demo",
        dataset="digits",
        method="pace",
        seed=0,
        backbone="test_vit",
        train=TrainConfig(image_size=32, rank=2),
        weights_sha256="0" * 64,
    )
    with pytest.raises(DataError, match="changed since planning"):
        prepare(spec, SetupInfo(10, 3), weights=path)
    from pacebench.core.backbones import sha256

    ready = prepare(spec.with_(weights_sha256=sha256(path)), SetupInfo(10, 3), weights=path)
    assert ready.weights_sha256 == sha256(path) and ready.facts["sigmas"][0] == 0.0
    assert ready.model.training and all(p.requires_grad for p in ready.params)


def test_planning_never_pretrains_the_demo_backbone(tmp_path, monkeypatch):
    from pacebench.execution.sweep import materialise
    from pacebench.plan.planner import PlanRequest, plan, weights_sha256

    monkeypatch.setenv("PACEBENCH_RESULTS", str(tmp_path))
    weights_sha256.cache_clear()
    try:
        specs = plan(PlanRequest(suite="demo", methods=["baseline"], seeds=[0]))
        assert specs[0].weights_sha256 == "" and not (tmp_path / "checkpoints").exists()
        assert specs[0].train.precision == "fp32", "planned for the CPU"
        cuda = plan(PlanRequest(suite="demo", methods=["baseline"], seeds=[0], device="cuda"))
        assert cuda[0].train.precision == "bf16" and run_key(cuda[0]) != run_key(specs[0])
        assert materialise(specs[:0], "cuda") == []
        from dataclasses import replace

        fixed = specs[0].with_(weights_sha256="ab", train=replace(specs[0].train, precision="auto"))
        assert materialise([fixed], "cuda")[0].train.precision == "bf16"
        assert materialise([fixed], "cpu")[0].train.precision == "fp32"
        assert (
            materialise([fixed.with_(train=replace(fixed.train, precision="fp32"))], "cuda")[0].train.precision
            == "fp32"
        ), "an explicit precision is kept"
    finally:
        weights_sha256.cache_clear()


@pytest.mark.parametrize("paths", ["two-products", "plain"])
def test_bench_paths_switch_the_fast_paths_off_and_say_so(tmp_path, paths):
    """`--paths two-products` runs every noisy layer as two products (noise costs more FLOPs than the baseline),
    `--paths plain` every layer as written, the baseline's too (noise costs what it does); the rows keep the
    setting and the table names it. Runs are untouched: the switch is undone after the measurement."""
    from pacebench.core.adapters.base import Noisy
    from pacebench.store import Store

    db = f"sqlite:///{tmp_path}/b.db"
    args = [*TINY_BENCH, "--rank", "2", "--methods", "noise", "--steps", "1", "--db", db, "--paths", paths]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    base, noise = Store(db).speed()
    assert base["paths"] == noise["paths"] == paths
    if paths == "two-products":
        assert noise["flop_ratio"] > 1.2, "noisy layers run W0 x and ΔW x, the baseline one merged product"
    else:
        assert noise["flop_ratio"] == pytest.approx(1.0), "plain: the baseline runs W0 x and ΔW x too"
    assert Noisy.fast_paths and Noisy.per_sample
    table = runner.invoke(app, ["report", "--table", "speed", "--format", "md", "--db", db])
    assert f"fp32, {paths} paths" in table.output
    bad = runner.invoke(app, args[:-1] + ["fastest"])
    assert bad.exit_code == 2 and "--paths must be one of fast, two-products, plain" in bad.output
