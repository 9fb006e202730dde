"""The command line through Typer's CliRunner: every command, the error paths, and a complete tiny demo run."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import assert_ok, assert_one_line_error
from typer.testing import CliRunner

from pacebench.cli import app
from pacebench.store import Store
from pacebench.store.database import head_revision

runner = CliRunner()
TINY = ["--epochs", "2", "-t", "batch_size=16", "-t", "eval_every=1", "--device", "cpu", "--seeds", "0"]


def invoke(*args: str, db: str | None = None):
    extra = ["--db", db] if db else []
    return runner.invoke(app, [*args, *extra])


def test_help_does_not_import_torch():
    code = "import sys, pacebench.cli; print('torch' in sys.modules, 'timm' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


def test_methods_lists_every_registered_method():
    from pacebench.core.methods import METHODS

    result = invoke("methods")
    assert_ok(result)
    for name in METHODS.names():
        assert name in result.output


def test_suites_lists_the_demo():
    result = invoke("suites")
    assert_ok(result)
    files, datasets = result.output.split("suites (folders under")
    assert "demo.toml (built in)" in " ".join(files.split())  # where each suite comes from
    demo = datasets[datasets.index("\ndemo ") :].split("\ndomain")[0]  # its row, however it wraps
    assert "digits" in demo and demo.split()[-2:] == ["built", "in"]


def test_inspect_counts_vit_b16_exactly():
    result = runner.invoke(
        app,
        ["inspect", "--backbone", "vit_b16_in21k", "--adapter", "lora_mul+vpt_add", "--rank", "10", "--classes", "100"],
    )
    assert_ok(result)
    assert "2,203,104" in result.output and "76,900" in result.output and "2,280,004" in result.output
    assert "0.1" in result.output and "1.2" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "nosuchsuite"], 2, "unknown suite 'nosuchsuite'; choose one of"),
        (["run", "demo", "--methods", "baseline,nosuch"], 2, "unknown method 'nosuch'"),
        (["run", "demo", "--datasets", "nosuch"], 2, "unknown dataset 'nosuch' in suite demo"),
        (["run", "demo", "--hp", "lam"], 2, "--hp takes NAME=VALUE"),
        (["run", "demo", "--hp", "lam=-1"], 2, "λ >= 0"),
        (["run", "demo", "--hp", "nosuch=1"], 2, "no selected method has hyperparameter 'nosuch'"),
        (["run", "demo", "-t", "lr=abc"], 2, "training setting lr must be float"),
        (["run", "demo", "-t", "colour=1"], 2, "unknown training setting 'colour'"),
        (["run", "demo", "--seeds", "0,x"], 2, "--seeds takes comma-separated integers"),
        (["run", "demo", "--device", "tpu"], 2, "--device"),
        (["run", "demo", "--phase", "test"], 2, "'test' is not one of 'tune', 'final'"),  # StrEnum choices: click says
        (["runs", "--status", "nope"], 2, "'nope' is not one of 'queued', 'running', 'done', 'failed'"),
        (["report", "--format", "pdf"], 2, "'pdf' is not one of 'rich', 'md', 'latex', 'csv', 'html'"),
        (["report", "--all"], 2, "--all writes one HTML page: add --format html --out report.html"),
        (["plot", "grad-norm", "--kind", "both"], 2, "'both' is not one of 'task', 'step'"),
    ],
)
def test_bad_input_is_one_clear_line(args, code, message, tmp_path, results):
    result = invoke(*args, db=f"sqlite:///{tmp_path}/x.db")
    assert_one_line_error(result, code, message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_an_error_not_a_cpu_run(tmp_path, results):
    db = f"sqlite:///{tmp_path}/x.db"
    result = invoke("run", "demo", "--device", "cuda", db=db)
    assert_one_line_error(result, 2, "CUDA is not available")
    assert invoke("runs", db=db).output.count("demo") == 0


def test_unopenable_database_exits_1(tmp_path):
    (tmp_path / "f").write_text("")
    result = invoke("db", "upgrade", db=f"sqlite:///{tmp_path}/f/x.db")
    assert_one_line_error(result, 1, "cannot open database")


def test_db_upgrade_and_current(tmp_path):
    db = f"sqlite:///{tmp_path}/new.db"
    head = head_revision()
    assert head in invoke("db", "upgrade", db=db).output
    assert invoke("db", "current", db=db).output.strip() == head


def test_tiny_demo_run_end_to_end(tmp_path, results):
    db = f"sqlite:///{tmp_path}/demo.db"
    result = invoke("run", "demo", "--methods", "baseline,pace", *TINY, db=db)
    assert_ok(result)
    con = sqlite3.connect(tmp_path / "demo.db")
    runs = con.execute("select id, method, status, trainable_params, device, versions, metrics from runs").fetchall()
    assert [(r[1], r[2], r[4]) for r in runs] == [("baseline", "done", "cpu"), ("pace", "done", "cpu")]
    assert all(r[3] and r[3] > 0 for r in runs) and all('"torch"' in r[5] for r in runs)
    setups = {r.method: r.setup for r in Store(db).runs()}  # the set-up facts are kept with each run
    normalize = {"mean": [0.5] * 3, "std": [0.5] * 3}  # the demo backbone's own
    no_cache = {"used": False, "decode_seconds": 0.0, "on_device": False}  # digits are built in: nothing decoded
    assert setups["baseline"] == {"attention": "fused", "normalize": normalize, "image_cache": no_cache}
    assert setups["pace"]["attention"] == "fused" and setups["pace"]["normalize"] == normalize
    assert setups["pace"]["sigmas"][0] == 0 and setups["pace"]["sigmas"][1] == pytest.approx(1.2)
    epochs = con.execute(
        "select run_id, epoch, lr, loss, train_acc, test_acc, grad_norm_mean, grad_norm_max, "
        "fp_distance, wall_time, parts from epochs order by run_id, epoch"
    ).fetchall()
    assert [(e[0], e[1]) for e in epochs] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    for e in epochs:
        assert all(v is not None for v in e[2:10]), e
        assert e[6] > 0 and e[7] >= e[6]  # gradient norm: max over steps >= mean
    assert '"consistency"' in epochs[-1][10] and '"ce"' in epochs[-1][10]
    for run_id, *_ in runs:  # each finished run keeps its trained adapters and head, and nothing frozen
        weights = Store(db).run_weights(run_id)
        assert weights and any(".head." in n or n.startswith("head.") for n in weights)
        assert any("lora" in n for n in weights) and not any(n.endswith("base.weight") for n in weights)

    again = invoke("run", "demo", "--methods", "baseline,pace", *TINY, db=db)
    assert_ok(again)
    assert again.output.count("skipped-done") == 2
    assert con.execute("select count(*) from runs").fetchone()[0] == 2

    listed = invoke("runs", "--suite", "demo", db=db)
    assert_ok(listed)
    assert "baseline" in listed.output and "done" in listed.output


def test_report_and_plot_after_a_demo_run(tmp_path, results):
    db = f"sqlite:///{tmp_path}/demo.db"
    assert_ok(invoke("run", "demo", "--methods", "baseline,pace", *TINY, db=db))
    table = invoke("report", "--table", "demo", "--format", "md", db=db)
    assert_ok(table)
    assert "baseline" in table.output and "pace" in table.output and "|" in table.output
    csv = invoke("report", "--table", "demo", "--format", "csv", "--out", str(tmp_path / "t.csv"), db=db)
    assert_ok(csv)
    assert (tmp_path / "t.csv").read_text().count("\n") >= 3
    out = tmp_path / "g.png"
    figure = invoke("plot", "grad-norm", "--suite", "demo", "--out", str(out), db=db)
    assert_ok(figure)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_runs_says_what_to_run(tmp_path):
    db = f"sqlite:///{tmp_path}/empty.db"
    assert_ok(invoke("db", "upgrade", db=db))
    assert_one_line_error(invoke("report", "--table", "demo", db=db), 1, "pacebench run demo")


def test_tune_runs_phase_one_on_val_then_phase_two_on_test(tmp_path, results):
    db = f"sqlite:///{tmp_path}/tune.db"
    result = invoke(
        "tune",
        "demo",
        "--methods",
        "pace",
        "--grid",
        "lam=0.1,1",
        "--seeds",
        "0",
        "--tune-seeds",
        "0",
        "--epochs",
        "1",
        "-t",
        "batch_size=16",
        "--device",
        "cpu",
        db=db,
    )
    assert_ok(result)
    con = sqlite3.connect(tmp_path / "tune.db")
    rows = con.execute("select phase, origin, status, method_config, metrics from runs order by id").fetchall()
    assert [r[:3] for r in rows] == [("tune", "tune", "done")] * 2 + [("final", "tune", "done")]
    assert all('"test_acc": null' in r[4] or '"test"' not in r[4] for r in rows[:2])  # phase 1 never scores test
    assert '"test"' in rows[2][4]


def test_ablate_no_tune_runs_every_table6_variant_and_the_efficiency_settings(tmp_path, results):
    from pacebench.core.methods import ABLATIONS, EFFICIENCY

    db = f"sqlite:///{tmp_path}/ablate.db"
    result = invoke(
        "ablate",
        "digits",
        "--suite",
        "demo",
        "--efficiency",
        "--no-tune",
        "--epochs",
        "1",
        "-t",
        "batch_size=16",
        "--device",
        "cpu",
        "--diagnostics",
        "off",
        db=db,
    )  # readings: tested elsewhere
    assert_ok(result)
    con = sqlite3.connect(tmp_path / "ablate.db")
    rows = con.execute("select method, status from runs").fetchall()
    assert sorted(m for m, _ in rows) == sorted(ABLATIONS + EFFICIENCY)
    assert {s for _, s in rows} == {"done"}
    setups = {r.method: r.setup for r in Store(db).runs()}
    assert setups["gp"]["attention"] == setups["fpa_gp"]["attention"] == "math"  # double backward needs it
    assert setups["sam"]["attention"] == "fused" and setups["pace_add"]["sigmas"][1] == pytest.approx(1.2)
    table = invoke("report", "--table", "ablations", "--format", "csv", db=db)
    assert table.exit_code == 0 and all(m in table.output for m in ABLATIONS)
    assert "defaults (not tuned)" in table.output and ",tuned," not in table.output


def test_ablate_tunes_each_method_over_its_grid_then_retrains_the_winner(tmp_path, results, monkeypatch):
    import json

    from pacebench.core.methods import ABLATIONS, METHODS

    grids = {"pace": {"lam": [0.5, 1.0]}, "fpa": {"lam": [0.1, 10.0]}}
    for name in ABLATIONS:  # every reader of a method's grid (planning, Table 6's "tuned" label) sees these
        monkeypatch.setattr(METHODS.get(name), "search_grid", classmethod(lambda cls, g=grids.get(name, {}): g))
    db = f"sqlite:///{tmp_path}/tuned.db"
    result = invoke(
        "ablate",
        "digits",
        "--suite",
        "demo",
        "--epochs",
        "1",
        "-t",
        "batch_size=16",
        "--device",
        "cpu",
        "--grid",
        "lam=0.5,2",
        "--diagnostics",
        "off",
        db=db,
    )  # --grid: λ's values wherever λ is searched
    assert result.exit_code == 0, result.output
    con = sqlite3.connect(tmp_path / "tuned.db")
    rows = con.execute("select method, phase, origin, method_config, metrics from runs").fetchall()
    tuned = sorted((m, json.loads(c)["lam"]) for m, p, _, c, _ in rows if p == "tune")
    assert tuned == [("fpa", 0.5), ("fpa", 2.0), ("pace", 0.5), ("pace", 2.0)]
    assert all('"test"' not in metrics for _, p, _, _, metrics in rows if p == "tune")  # phase 1 never scores test
    finals = {m: json.loads(c) for m, p, _, c, _ in rows if p == "final"}
    assert sorted(finals) == sorted(ABLATIONS) and {o for _, _, o, _, _ in rows} == {"tune"}
    val = {(m, json.loads(c)["lam"]): json.loads(x)["val_acc"] for m, p, _, c, x in rows if p == "tune"}
    best = max((0.5, 2.0), key=lambda lam: (val[("pace", lam)], -lam))
    assert finals["pace"]["lam"] == best
    table = invoke("report", "--table", "6", "--format", "csv", "--suite", "demo", db=db)
    assert table.exit_code == 0 and f"pace,tuned,lam={best:g}," in table.output


@pytest.mark.parametrize(
    ("name", "grid"),
    [
        ("figure4", ["--grid", "lam=0.01,100"]),
        ("figure5", ["--grid", "interval=3", "--grid", "copies=3", "--diagnostics", "off"]),
        ("figure6", ["--suite", "demo", "--grid", "sigma=0.5,1", "--grid", "lam=0.1,1", "--diagnostics", "off"]),
    ],
)
def test_sweep_makes_a_figure_from_an_empty_database(tmp_path, results, name, grid):
    db = f"sqlite:///{tmp_path}/{name}.db"
    args = ["sweep", name, *grid, *TINY, "--out", str(tmp_path / f"{name}.svg")]
    if "--suite" not in grid:
        args[2:2] = ["--suite", "demo"]
    result = invoke(*args, db=db)
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{name}.svg").read_bytes().lstrip().startswith(b"<?xml")
    again = invoke(*args, db=db)  # everything is done: nothing is trained twice
    assert again.exit_code == 0 and "already done" in again.output and "todo" not in again.output


def test_results_out_load_export_and_a_plain_timm_model(tmp_path, results):
    """One tiny run, then: DataFrames, csv/json/parquet export, and export-model loaded by plain timm alone, which
    scores the run's own test accuracy on the run's test split."""
    import json

    import pandas as pd
    import timm
    from safetensors import safe_open
    from safetensors.torch import load_file

    import pacebench
    from pacebench.data import DataRequest
    from pacebench.data.demo import read_demo

    db = f"sqlite:///{tmp_path}/r.db"
    assert invoke("run", "demo", "--methods", "pace", *TINY, db=db).exit_code == 0
    runs = pacebench.load_runs(db=db)
    assert len(runs) == 1 and runs.loc[0, "method"] == "pace" and runs.loc[0, "hp.lam"] == 1.0
    assert {"train.lr", "data.shots", "version.torch", "git_commit", "test_acc", "grad_norm_task_heldout"} <= set(runs)
    epochs = pacebench.load_epochs(db=db)
    assert list(epochs["epoch"]) == [0, 1] and (epochs["grad_norm_step"] > 0).all()
    assert (epochs["grad_norm_task_heldout"] > 0).all() and (epochs["method"] == "pace").all()
    predictions = pacebench.load_predictions(runs=runs, db=db)  # the last evaluation, example by example
    test = predictions[predictions["eval_set"] == "test"]
    assert 100 * test["correct"].mean() == pytest.approx(runs.loc[0, "test_acc"]) and test["example"].is_unique
    for fmt, read in (("csv", pd.read_csv), ("json", pd.read_json), ("parquet", pd.read_parquet)):
        result = invoke("export", "--format", fmt, "--out", str(tmp_path / fmt), db=db)
        assert result.exit_code == 0, result.output
        back = read(tmp_path / fmt / f"epochs.{fmt}")
        assert list(back["grad_norm_step"]) == pytest.approx(list(epochs["grad_norm_step"]))
        assert read(tmp_path / fmt / f"runs.{fmt}")["key"].tolist() == runs["key"].tolist()
        assert len(read(tmp_path / fmt / f"predictions.{fmt}")) == len(predictions)
    assert invoke("export", "--format", "xlsx", db=db).exit_code == 2

    out = tmp_path / "model.safetensors"
    result = invoke("export-model", str(runs.loc[0, "run_id"]), "--out", str(out), db=db)
    assert result.exit_code == 0, result.output
    meta = safe_open(str(out), "pt").metadata()  # from here on: timm and safetensors only
    model = timm.create_model(
        meta["timm_arch"],
        num_classes=int(meta["num_classes"]),
        img_size=int(meta["img_size"]),
        **json.loads(meta["timm_kwargs"]),
    )
    model.load_state_dict(load_file(str(out)))  # strict: exactly the plain architecture's keys
    test = read_demo(DataRequest(Path("."), "digits", "final", 5, int(meta["img_size"]), {"shots": 20})).evals["test"]
    x, y = test.base.tensors
    with torch.no_grad():
        acc = 100.0 * (model.eval()(x).argmax(-1) == y).float().mean().item()
    assert acc == pytest.approx(runs.loc[0, "test_acc"], abs=1e-4)
    assert invoke("export-model", "999", db=db).exit_code == 2


def test_help_lists_what_the_registries_hold():
    """The option help is read from the registries when shown, so it cannot fall behind them."""
    from pacebench.core.methods import ABLATIONS, EFFICIENCY, METHODS
    from pacebench.plan.spec import TRAIN_FIELDS
    from pacebench.report.select import FIGURES, table_names

    def text(*args: str) -> str:
        result = invoke(*args)
        assert_ok(result)
        return " ".join(result.output.replace("│", " ").split())

    run = text("run", "--help")
    assert all(m in run for m in METHODS.names()) and all(f in run for f in TRAIN_FIELDS)
    assert "{methods}" not in run and "{hyperparameters}" not in run
    ablate = text("ablate", "--help")
    assert all(m in ablate for m in (*ABLATIONS, *EFFICIENCY))
    assert all(t in text("report", "--help") for t in table_names())
    assert all(f in text("plot", "--help") for f in FIGURES.names())


def test_lr_steps_after_each_epoch_like_the_authors(tmp_path, results):
    """Epoch 0 trains at the warm-up start lr, epoch e at the schedule's value for e - 1 (hand-computed here)."""
    db = f"sqlite:///{tmp_path}/lr.db"
    args = [
        "--epochs",
        "4",
        "-t",
        "batch_size=16",
        "-t",
        "eval_every=4",
        "-t",
        "warmup_epochs=2",
        "-t",
        "lr=0.1",
        "-t",
        "warmup_lr=0.02",
        "-t",
        "min_lr=0.01",
        "--device",
        "cpu",
        "--seeds",
        "0",
    ]
    result = invoke("run", "demo", "--methods", "baseline", *args, db=db)
    assert result.exit_code == 0, result.output
    lrs = [r[0] for r in sqlite3.connect(tmp_path / "lr.db").execute("select lr from epochs order by epoch")]
    # s(t): warm-up 0.02 + t (0.1 - 0.02) / 2 for t < 2, then 0.01 + 0.045 (1 + cos(π t / 4))
    s0, s1, s2 = 0.02, 0.06, 0.01 + 0.045 * (1 + math.cos(math.pi / 2))
    assert lrs == pytest.approx([0.02, s0, s1, s2], rel=1e-12)
    (setup,) = sqlite3.connect(tmp_path / "lr.db").execute("select setup from runs").fetchone()
    assert json.loads(setup)["normalize"] == {"mean": [0.5] * 3, "std": [0.5] * 3}  # stored with the run


def test_table5_and_figure3_from_an_empty_database_on_a_fake_vtab_tree(tmp_path):
    """Another backbone (any timm architecture and its weights file) on vtab/cifar: one `run`, then Table 5 shows it
    beside the paper's rows and Fig. 3's grad-norm draws it, filtered by backbone and titled from the data."""
    import timm
    from fake_trees import make_vtab
    from safetensors.torch import save_file

    make_vtab(tmp_path / "data" / "vtab-1k" / "cifar", sizes={"train800": 48, "val200": 16, "train800val200": 64})
    arch = "vit_tiny_patch16_224"
    weights = tmp_path / "tiny.safetensors"
    save_file(timm.create_model(arch, pretrained=False, img_size=32).state_dict(), str(weights))
    db = f"sqlite:///{tmp_path}/t5.db"
    result = invoke(
        "run",
        "vtab",
        "--datasets",
        "cifar100",
        "--methods",
        "pace",
        "--backbone",
        arch,
        "--weights",
        str(weights),
        "--data-root",
        str(tmp_path / "data"),
        "--workers",
        "0",
        "--epochs",
        "1",
        "-t",
        "image_size=32",
        "-t",
        "batch_size=16",
        "-t",
        "eval_batch_size=64",
        "--device",
        "cpu",
        db=db,
    )
    assert result.exit_code == 0, result.output
    table = invoke("report", "--table", "5", "--format", "csv", db=db)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert any(line.startswith(f"{arch},+PACE,measured,1,") for line in lines)
    assert not any(line.startswith("swin_b_in22k,") for line in lines)  # paper rows only for measured backbones
    out = tmp_path / "fig3.pdf"
    assert_ok(invoke("plot", "grad-norm", "--dataset", "cifar", "--backbone", arch, "--out", str(out), db=db))
    assert out.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    "args, message",
    [
        (["runs", "--phase", "nosuch"], "'nosuch' is not one of 'tune', 'final'"),
        (["runs", "--nosuch"], "No such option: --nosuch"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
    ],
)
def test_click_usage_errors_are_one_line_too(args, message, tmp_path):
    result = CliRunner().invoke(app, [*args], env={"PACEBENCH_DB": f"sqlite:///{tmp_path}/x.db"})
    assert_one_line_error(result, 2, message)
