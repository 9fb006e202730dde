"""Adapter kinds in plans, suite files and commands: `--adapters` plans adapter x method x seed, each kind's size and
options resolve per suite and dataset (Table 8's per-baseline ranks, VPT's prompt lengths) without moving existing
keys, the suites' report data names registered kinds and real paper rows, and the commands (run, inspect, bench,
export-model) take every kind."""

from __future__ import annotations

import csv
import dataclasses

import pytest
from conftest import TINY_BENCH, assert_ok, assert_one_line_error
from typer.testing import CliRunner

from pacebench.cli import app
from pacebench.core.adapters import ADAPTERS, KINDS
from pacebench.errors import UsageError
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.runkey import key_payload, run_key
from pacebench.plan.suites import all_suites, load_suite

runner = CliRunner()


def planned(**request) -> list:
    return plan(PlanRequest(**request), sha=lambda backbone, weights: "abc")


def test_table2_is_one_request_with_table8s_rank_per_adapter():
    specs = planned(
        suite="fewshot",
        datasets=["oxford_pets", "stanford_cars"],
        adapters=["lora_add", "vpt_add", "lora_mul+vpt_add"],
        methods=["baseline", "pace"],
        seeds=[0, 1],
        options={"shots": [1], "split_seed": [0]},
    )
    assert len(specs) == 2 * 3 * 2 * 2
    ranks = {(s.dataset, s.train.adapter): s.train.rank for s in specs}
    assert ranks == {
        ("oxford_pets", "lora_add"): 4,
        ("oxford_pets", "vpt_add"): 1,
        ("oxford_pets", "lora_mul+vpt_add"): 18,
        ("stanford_cars", "lora_add"): 10,
        ("stanford_cars", "vpt_add"): 1,
        ("stanford_cars", "lora_mul+vpt_add"): 24,
    }
    with open(load_suite("fewshot").path.parent / "reference/table8_fewshot_hparams.csv") as f:
        table8 = {r["dataset"]: r for r in csv.DictReader(f)}
    for (dataset, adapter), rank in ranks.items():
        column = {"lora_add": "rank_lora", "vpt_add": "rank_vpt", "lora_mul+vpt_add": "rank_lora_vpt"}[adapter]
        assert rank == int(table8[dataset][column])
    assert {s.train.lr for s in specs if s.dataset == "oxford_pets"} == {2e-3}, "Table 8's lr is shared"
    order = [(s.train.adapter, s.method, s.seed) for s in specs if s.dataset == "oxford_pets"]
    assert order[:4] == [
        ("lora_add", "baseline", 0),
        ("lora_add", "baseline", 1),
        ("lora_add", "pace", 0),
        ("lora_add", "pace", 1),
    ]


def test_the_suites_own_adapter_plans_the_same_runs_with_or_without_adapters():
    own = planned(suite="fewshot", datasets=["oxford_pets"], methods=["pace"], options={"shots": [1]})
    named = planned(
        suite="fewshot",
        datasets=["oxford_pets"],
        methods=["pace"],
        options={"shots": [1]},
        adapters=["lora_mul+vpt_add"],
    )
    assert [run_key(s) for s in own] == [run_key(s) for s in named]
    assert all(s.train.adapter_scale is None and s.train.adapter_dropout is None for s in own)


def test_another_kind_takes_its_own_defaults_not_the_suites_rank():
    specs = planned(suite="demo", adapters=["lora", "adaptformer", "ssf", "vpt_deep"], methods=["baseline"])
    train = {s.train.adapter: s.train for s in specs}
    assert load_suite("demo").train["rank"] == 4  # the suite's rank is its default adapter's
    assert (train["lora"].rank, train["lora"].adapter_scale, train["lora"].adapter_dropout) == (8, 1.0, 0.1)
    assert (train["adaptformer"].rank, train["adaptformer"].adapter_scale) == (8, 0.1)
    assert (train["ssf"].rank, train["ssf"].adapter_scale, train["ssf"].adapter_dropout) == (1, None, None)
    assert train["vpt_deep"].rank == 10
    assert {t.lr for t in train.values()} == {5e-3}, "the suite's other settings stay"


def test_vtab_takes_vpts_prompt_length_and_repadapters_scale_per_dataset():
    specs = planned(
        suite="vtab", datasets=["cifar", "smallnorb_azi"], adapters=["vpt_deep", "repadapter"], methods=["baseline"]
    )
    got = {(s.dataset, s.train.adapter): (s.train.rank, s.train.adapter_scale) for s in specs}
    assert got == {
        ("cifar", "vpt_deep"): (10, None),
        ("cifar", "repadapter"): (8, 0.1),
        ("smallnorb_azi", "vpt_deep"): (200, None),
        ("smallnorb_azi", "repadapter"): (8, 10.0),
    }


def test_the_users_rank_wins_and_a_kind_without_a_size_refuses_one():
    specs = planned(
        suite="fewshot",
        datasets=["oxford_pets"],
        adapters=["lora_add"],
        methods=["baseline"],
        train={"rank": "6"},
        options={"shots": [1], "split_seed": [0]},
    )
    assert specs[0].train.rank == 6
    with pytest.raises(UsageError, match="adapter ssf has no size"):
        planned(suite="demo", adapters=["ssf"], train={"rank": "4"})
    with pytest.raises(UsageError, match="adapter bitfit has no adapter_scale"):
        planned(suite="demo", adapters=["bitfit"], train={"adapter_scale": "0.5"})
    with pytest.raises(UsageError, match="not both"):
        planned(suite="demo", adapters=["ssf"], train={"adapter": "lora"})
    with pytest.raises(UsageError, match="unknown adapter 'nosuch'"):
        planned(suite="demo", adapters=["nosuch"])


def test_a_suite_table_that_gives_a_kind_without_a_size_a_rank_is_refused_too(tmp_path, monkeypatch):
    """It would change the run's key (and so never match a finished run) without changing what trains."""
    demo = load_suite("demo").path.read_text()
    for where, table in [
        ("suite", "[adapters.ssf]\nrank = 6\n"),
        ("dataset", "[datasets.digits.adapters.ssf]\nrank = 6\n"),
    ]:
        (tmp_path / "demo.toml").write_text(demo + "\n" + table)
        monkeypatch.setenv("PACEBENCH_SUITES", str(tmp_path))
        all_suites.cache_clear()
        try:
            with pytest.raises(UsageError, match="adapter ssf has no size: leave rank unset"):
                planned(suite="demo", adapters=["ssf"])
            assert planned(suite="demo", adapters=["bitfit"]), f"the {where} table is only ssf's"
        finally:
            all_suites.cache_clear()


def test_the_new_adapter_settings_enter_a_key_only_when_set():
    legacy = planned(suite="demo", methods=["baseline"])[0]
    assert not {"adapter_scale", "adapter_dropout"} & set(key_payload(legacy)["train"])
    lora = planned(suite="demo", methods=["baseline"], adapters=["lora"])[0]
    assert key_payload(lora)["train"]["adapter_scale"] == 1.0, "a kind's resolved options are stored and keyed"
    moved = lora.with_(train=dataclasses.replace(lora.train, adapter_dropout=0.0))
    assert run_key(moved) != run_key(lora)


@pytest.mark.parametrize("suite", sorted(all_suites()))
def test_suite_adapter_tables_and_report_rows_name_registered_kinds_and_real_paper_rows(suite):
    s = load_suite(suite)
    named = set(s.adapters) | {k for ds in s.datasets.values() for k in ds.adapters}
    assert named <= set(ADAPTERS.names()), named - set(ADAPTERS.names())
    by_adapter = s.paper_table.rows_by_adapter if s.paper_table else {}
    assert set(by_adapter) <= set(KINDS)
    if by_adapter:
        with open(s.path.parent / s.reference["table"]) as f:
            rows = {r["method"] for r in csv.DictReader(f)}
        assert {row for methods in by_adapter.values() for row in methods.values()} <= rows


def test_table2_rows_by_adapter_are_its_six_rows():
    rows = load_suite("fewshot").paper_table.rows_by_adapter
    assert {(a, m): r for a, methods in rows.items() for m, r in methods.items()} == {
        ("lora_add", "baseline"): "LoRA",
        ("lora_add", "pace"): "LoRA+PACE",
        ("vpt_add", "baseline"): "VPT",
        ("vpt_add", "pace"): "VPT+PACE",
        ("lora_mul+vpt_add", "baseline"): "LoRA+VPT",
        ("lora_mul+vpt_add", "pace"): "LoRA+VPT+PACE",
    }


# ------------------------------------------------------------------------------------------------- commands


def test_demo_trains_two_kinds_with_and_without_pace_end_to_end(tmp_path, results):
    db = f"sqlite:///{tmp_path}/k.db"
    result = runner.invoke(
        app,
        [
            "run",
            "demo",
            "--adapters",
            "lora,adaptformer",
            "--methods",
            "baseline,pace",
            "--epochs",
            "1",
            "-t",
            "batch_size=16",
            "--device",
            "cpu",
            "--seeds",
            "0",
            "--db",
            db,
        ],
    )
    assert_ok(result)
    from pacebench.store import Store

    runs = Store(db).runs(suite="demo")
    assert sorted((r.adapter, r.method, r.status) for r in runs) == [
        ("adaptformer", "baseline", "done"),
        ("adaptformer", "pace", "done"),
        ("lora", "baseline", "done"),
        ("lora", "pace", "done"),
    ]
    by = {(r.adapter, r.method): r for r in runs}
    assert by[("lora", "pace")].hparams["rank"] == 8 and by[("adaptformer", "pace")].hparams["adapter_scale"] == 0.1
    assert by[("lora", "baseline")].adapter_params == 6 * 8 * (64 + 3 * 64), "r = 8 on each of 6 blocks' qkv"
    assert all(r.metrics.get("test_acc") is not None for r in runs)
    refused = runner.invoke(
        app, ["export-model", str(by[("adaptformer", "pace")].id), "--out", str(tmp_path / "m.safetensors"), "--db", db]
    )
    assert_one_line_error(refused, 2, "export-model cannot write as a plain timm checkpoint")
    assert "ReLU" in refused.output and not (tmp_path / "m.safetensors").exists()
    exported = runner.invoke(
        app, ["export-model", str(by[("lora", "pace")].id), "--out", str(tmp_path / "m.safetensors"), "--db", db]
    )
    assert_ok(exported)


@pytest.mark.parametrize(
    ("kind", "printed", "verdict"),
    [("lora", "0.29", "reproduced"), ("repadapter", "0.22", "NOT reproduced"), ("ssf", "0.24", "reproduced")],
)
def test_inspect_shows_the_printed_count_beside_the_counted_one(kind, printed, verdict):
    result = runner.invoke(app, ["inspect", "--adapter", kind, "--classes", "100"], terminal_width=250)
    assert_ok(result)
    line = next(line for line in result.output.splitlines() if f" {printed} " in line)
    assert verdict in line


def test_inspect_counts_a_kind_at_its_own_size():
    result = runner.invoke(app, ["inspect", "--adapter", "adapter", "--classes", "100"], terminal_width=250)
    assert_ok(result)
    assert "bottleneck width h = 8" in result.output and "156,768" in result.output


def test_bench_measures_every_kind_named_with_and_without_pace(tmp_path):
    db = f"sqlite:///{tmp_path}/b.db"
    args = [*TINY_BENCH, "--adapter", "ssf,vpt_deep,full", "--methods", "pace", "--steps", "1", "--db", db]
    result = runner.invoke(app, args)
    assert_ok(result)
    from pacebench.store import Store

    rows = Store(db).speed()
    assert [(r["adapter"], r["method"]) for r in rows] == [
        ("ssf", "baseline"),
        ("ssf", "pace"),
        ("vpt_deep", "baseline"),
        ("vpt_deep", "pace"),
        ("full", "baseline"),
        ("full", "pace"),
    ]
    assert [r["rank"] for r in rows[::2]] == [1, 10, 1], "each kind at its own size"
    assert " ssf, batch" in result.output and " vpt_deep r10, batch" in result.output, "no rank for a sizeless kind"
    assert all(r["flop_ratio"] > 1.5 for r in rows if r["method"] == "pace"), "PACE runs two copies"
