"""Tables and figures from a store filled with synthetic runs: the gathered numbers, what is left out, the renderers.

Every number asserted here is worked out by hand from the runs written below.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest
from conftest import rewrite_run, written_run
from rich.console import Console

from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.plan.suites import load_suite
from pacebench.report.figures import accuracy_data, fp_distance_data, grad_norm_data, lambda_sweep_data, plot
from pacebench.report.reference import reference_table
from pacebench.report.render import render, render_table, to_csv, to_latex, to_markdown
from pacebench.report.select import FIGURES, table_names, tables
from pacebench.report.tables import TableData, gather
from pacebench.store import EpochRecord, RunRecord, Store

W1, W2 = "1" * 64, "2" * 64
TRAIN = TrainConfig(epochs=3)


def make_run(
    store: Store,
    *,
    suite: str = "demo",
    dataset: str = "digits",
    method: str = "baseline",
    seed: int = 0,
    phase: str = "final",
    status: str = "done",
    weights: str = W1,
    options: dict | None = None,
    config: dict | None = None,
    train_cfg: TrainConfig = TRAIN,
    test: float | None = None,
    train: float | None = None,
    val: float | None = None,
    fp: float | None = None,
    evals: dict | None = None,
    epochs: Sequence[EpochRecord] = (),
    extra: dict | None = None,
    origin: str = "direct",
) -> RunRecord:
    """A run written the way the scheduler writes one: add, claim, epochs, then finish (or fail after finishing, so
    a failed run still carries numbers that must not show up)."""
    spec = RunSpec(
        suite=suite,
        dataset=dataset,
        method=method,
        seed=seed,
        train=train_cfg,
        backbone="vit_demo",
        weights_sha256=weights,
        method_config=config or {},
        data_options=options or {},
        phase=phase,
    )  # type: ignore[arg-type]
    metrics = {
        "train_acc": train,
        "val_acc": val,
        "test_acc": test,
        "evals": evals or {},
        "fp_distance": fp,
        "epoch": 2,
        **(extra or {}),
    }
    return written_run(store, spec, metrics, status=status, epochs=epochs, origin=origin)


def epochs(
    grad: Sequence[float],
    train: Sequence[float] = (50.0, 60.0, 70.0),
    test: float | None = None,
    fp: dict[int, float] | None = None,
) -> list[EpochRecord]:
    """Three epochs; the last one is an evaluation epoch with `test` (and FP-distances where `fp` says). Fig. 2's
    readings, known numbers: the task gradient norm is 10 x the step's on train and 100 x on held-out (read at the
    evaluation epoch only), the held-out FP-distance 10 x the train one."""
    fp = fp or {}
    return [
        EpochRecord(
            epoch=i,
            grad_norm_mean=g,
            train_acc=t,
            test_acc=test if i == 2 else None,
            fp_distance=fp.get(i),
            evals={"test": test} if i == 2 and test is not None else {},
            grad_norm_task_train=10 * g if i == 2 else None,
            grad_norm_task_heldout=100 * g if i == 2 else None,
            fp_distance_heldout=10 * fp[i] if i in fp else None,
        )
        for i, (g, t) in enumerate(zip(grad, train, strict=True))
    ]


def row(frame: pd.DataFrame, **where: object) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for column, value in where.items():
        mask &= frame[column] == value
    assert mask.sum() == 1, f"expected one row for {where}, got {mask.sum()}:\n{frame}"
    return frame[mask].iloc[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """demo/digits: baseline x3 and pace x2 on weights W1, pace x1 on W2, plus a tune run and a failed run."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('demo')}/r.db")
    for seed, (test, train, fp, last) in enumerate([(80, 90, 0.1, 1.0), (82, 91, 0.2, 2.0), (84, 92, 0.3, 3.0)]):
        make_run(
            store,
            seed=seed,
            test=test,
            train=train,
            fp=fp,
            epochs=epochs([9.0, 5.0, last], test=test),
            extra={"grad_norm_task_heldout": 10 * last, "fp_distance_heldout": 100 * fp},
        )
    for seed, (test, last) in enumerate([(85, 0.5), (87, 1.5)]):
        make_run(
            store,
            method="pace",
            seed=seed,
            test=test,
            train=88,
            fp=0.05,
            config={"lam": 1.0},
            epochs=epochs([4.0, 2.0, last], test=test),
        )
    make_run(store, method="pace", seed=0, weights=W2, test=50, train=60, fp=1.0, config={"lam": 1.0})
    make_run(store, method="pace", seed=7, phase="tune", test=99, train=99, val=99, config={"lam": 1.0})
    make_run(store, method="pace", seed=8, status="failed", test=1, train=1, config={"lam": 1.0})
    make_run(store, method="pace", seed=9, status="running", config={"lam": 1.0})
    return store


# ---- registry ---------------------------------------------------------------------------------------------------


def test_table_names_and_aliases():
    assert table_names() == [
        "vtab",
        "fewshot",
        "fgvc",
        "domain",
        "demo",
        "ablations",
        "backbones",
        "params",
        "speed",
        "glue",
        "gsm8k",
    ]  # paper tables first, then the code's (the slides' text last)
    for alias, name in [
        ("1", "vtab"),
        ("table1", "vtab"),
        ("2", "fewshot"),
        ("3", "fgvc"),
        ("4", "domain"),
        ("6", "ablations"),
        ("demo", "demo"),
    ]:
        assert tables().get(alias).name == name
    titles = " ".join(entry.title for _, entry in FIGURES.items())
    assert all(f"Fig. {n}" in titles for n in ("2a/3a", "2b/3b", "2c/3c", "4", "5", "6")) and "Figs. 7-8" in titles
    assert set(FIGURES.names()) == {
        "grad-norm",
        "fp-distance",
        "accuracy",
        "lambda-sweep",
        "efficiency",
        "sensitivity",
        "compare",
        "ranks",
    }  # the last two: the evidence figures, over a suite


def test_each_table_and_figure_has_one_gather_step_and_reads_what_its_sweep_makes():
    from pacebench.plan.sweeps import SWEEPS
    from pacebench.report.figures import DRAWINGS
    from pacebench.report.select import CODE_TABLES
    from pacebench.report.tables.base import GATHERS

    assert sorted(GATHERS.names()) == sorted(t.name for t in CODE_TABLES)
    assert DRAWINGS.names() == FIGURES.names()
    readers = {e.reads.sweep: name for name, e in FIGURES.items() if e.reads.sweep}
    readers |= {e.reads.sweep: f"table:{e.aliases[0]}" for e in CODE_TABLES if e.reads and e.reads.sweep}
    assert {s.name: s.draws for _, s in SWEEPS.items()} == readers, "a sweep draws what reads its runs"
    assert FIGURES.get("lambda-sweep").reads.methods() == ["baseline", "pace", "fpa"]


# ---- demo table ---------------------------------------------------------------------------------------------------


def test_demo_table_numbers_and_exclusions(demo):
    data = gather("demo", demo)
    frame = data.frame
    assert "phase-2 runs only (train+val -> test)" in data.notes
    assert list(frame["method"]) == ["baseline", "pace", "pace"]  # baseline first; tune/failed/running runs left out
    base = row(frame, method="baseline")
    assert base["seeds"] == 3
    assert base["test acc"] == pytest.approx(82.0)
    assert base["test acc std"] == pytest.approx(2.0)  # sample std of 80, 82, 84
    assert base["train acc"] == pytest.approx(91.0)
    assert base["gap (train - test)"] == pytest.approx(9.0)
    assert base["grad norm step (train)"] == pytest.approx(2.0)  # last-epoch grad norms 1, 2, 3
    assert base["FP-distance (train)"] == pytest.approx(0.2)
    assert base["grad norm task (test)"] == pytest.approx(20.0) and base["FP-distance (test)"] == pytest.approx(20.0)
    assert math.isnan(base["grad norm task (train)"])  # not read in these runs: shown as missing, never as 0
    assert any(note.startswith("grad norm step (train): the whole training objective") for note in data.notes)


def test_demo_table_never_averages_across_weights(demo):
    frame = gather("demo", demo).frame
    assert "weights" in frame.columns
    on_w1 = row(frame, method="pace", weights=f"vit_demo@{W1[:8]}")
    on_w2 = row(frame, method="pace", weights=f"vit_demo@{W2[:8]}")
    step = "grad norm step (train)"
    assert (on_w1["seeds"], on_w1["test acc"], on_w1[step]) == (2, pytest.approx(86.0), pytest.approx(1.0))
    assert (on_w2["seeds"], on_w2["test acc"]) == (1, pytest.approx(50.0))
    assert math.isnan(on_w2["test acc std"]) and math.isnan(on_w2[step])  # one seed; no epochs logged
    assert any("2 different weight files" in note for note in gather("demo", demo).notes)


def test_demo_table_separates_settings_and_needs_runs(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    with pytest.raises(PacebenchError, match="pacebench run demo"):
        gather("demo", store)
    make_run(store, method="pace", config={"lam": 1.0}, test=80, train=90)
    make_run(store, method="pace", config={"lam": 0.1}, test=70, train=90)
    frame = gather("demo", store).frame
    assert "weights" not in frame.columns
    assert row(frame, config="lam=1")["test acc"] == 80
    assert row(frame, config="lam=0.1")["test acc"] == 70


# ---- paper tables ---------------------------------------------------------------------------------------------


def test_vtab_table_partial(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    make_run(store, suite="vtab", dataset="cifar", seed=0, test=70)
    make_run(store, suite="vtab", dataset="cifar", seed=1, test=72)
    make_run(store, suite="vtab", dataset="dtd", seed=0, test=60)
    make_run(store, suite="vtab", dataset="dtd", seed=1, test=10, phase="tune")
    data = gather("1", store)
    frame = data.frame
    assert list(frame.columns[:3]) == ["method", "source", "seeds"]  # one adapter: no adapter column
    assert list(frame.columns[3:22]) == list(load_suite("vtab").datasets)
    assert list(frame.columns[22:]) == ["Natural", "Specialized", "Structured", "mean"]
    base = row(frame, method="baseline", source="measured")
    assert (base["cifar"], base["dtd"], base["seeds"]) == (71.0, 60.0, 1)
    assert math.isnan(base["svhn"]) and math.isnan(base["Natural"]) and math.isnan(base["mean"])
    paper = row(frame, method="baseline", source="paper (Baseline)")
    assert (paper["cifar"], paper["mean"]) == (74.9, 76.4)
    assert paper["Natural"] == pytest.approx(statistics.fmean([74.9, 93.3, 72.0, 99.4, 91.0, 91.5, 54.8]))
    assert row(frame, method="pace", source="paper (+PACE)")["cifar"] == 79.0
    assert list(frame["source"]) == ["measured", "paper (Baseline)", "paper (+PACE)"]
    md = render(data, "md")
    assert "| baseline | measured | 1 | 71.00 | 93.30" not in md  # caltech101 was not measured
    assert "| baseline | measured | 1 | 71.00 | – | 60.00 | – |" in md


def test_vtab_mean_is_the_mean_of_group_means(tmp_path):
    """Measured values equal to the paper's +PACE row must give its 79.0 (not the 19-dataset mean, 76.9)."""
    store = Store(f"sqlite:///{tmp_path}/r.db")
    suite = load_suite("vtab")
    ref = reference_table(suite)
    pace = ref[ref["method"] == "+PACE"].iloc[0]
    for ds in suite.datasets:
        make_run(store, suite="vtab", dataset=ds, method="pace", config={"lam": 1.0}, test=float(pace[ds]))
    measured = row(gather("vtab", store).frame, method="pace", source="measured")
    assert measured["mean"] == pytest.approx(79.0, abs=0.01)
    assert measured["Natural"] == pytest.approx(84.33, abs=0.01)
    assert statistics.fmean(float(pace[ds]) for ds in suite.datasets) == pytest.approx(76.93, abs=0.01)


def test_paper_table_cell_keeps_one_setting(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    for seed, test in enumerate([80, 82]):
        make_run(store, suite="vtab", dataset="cifar", method="pace", seed=seed, config={"lam": 1.0}, test=test)
    make_run(store, suite="vtab", dataset="cifar", method="pace", seed=0, config={"lam": 0.1}, test=10)
    data = gather("vtab", store)
    assert row(data.frame, method="pace", source="measured")["cifar"] == 81.0
    assert any("2 settings" in n and "lam=1" in n for n in data.notes)


def test_vtab_table_weights_rows(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    make_run(store, suite="vtab", dataset="cifar", test=70, weights=W1)
    make_run(store, suite="vtab", dataset="cifar", test=50, weights=W2)
    frame = gather("vtab", store).frame
    assert row(frame, source="measured", weights=f"vit_demo@{W1[:8]}")["cifar"] == 70
    assert row(frame, source="measured", weights=f"vit_demo@{W2[:8]}")["cifar"] == 50


def test_fewshot_table_means_over_seeds_then_splits(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    runs = [(0, 0, 10.0), (0, 1, 20.0), (1, 0, 30.0)]  # (split seed, seed, test): split means 15 and 30
    for split, seed, test in runs:
        make_run(
            store,
            suite="fewshot",
            dataset="fgvc_aircraft",
            seed=seed,
            test=test,
            options={"shots": 1, "split_seed": split},
        )
    frame = gather("fewshot", store).frame
    assert list(frame.columns) == [
        "dataset",
        "method",
        "source",
        "seeds",
        "1-shot",
        "2-shot",
        "4-shot",
        "8-shot",
        "16-shot",
    ]
    cell = row(frame, dataset="fgvc_aircraft", method="baseline", source="measured")
    assert cell["1-shot"] == pytest.approx(22.5)  # not 20.0, the flat mean over three runs
    assert math.isnan(cell["2-shot"])
    assert math.isnan(row(frame, dataset="average", method="baseline", source="measured")["1-shot"])
    ref = reference_table(load_suite("fewshot"))
    expected = ref[(ref.method == "LoRA+VPT+PACE") & (ref.dataset == "food101") & (ref.shots == 16)]["top1"].item()
    assert row(frame, dataset="food101", method="pace", source="paper (LoRA+VPT+PACE)")["16-shot"] == expected


def test_fgvc_and_domain_tables(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    for ds, test in zip(load_suite("fgvc").datasets, [80, 70, 99, 90, 86], strict=True):
        make_run(store, suite="fgvc", dataset=ds, test=test)
    fgvc = gather("3", store).frame
    assert row(fgvc, source="measured")["mean"] == pytest.approx(85.0)
    assert row(fgvc, source="paper (+PACE)")["mean"] == 91.5
    targets = {"imagenet": 79.0, "imagenet_sketch": 31.0, "imagenet_v2": 69.0, "imagenet_a": 16.0, "imagenet_r": 35.0}
    make_run(
        store,
        suite="domain",
        dataset="imagenet",
        method="pace",
        seed=0,
        evals=targets,
        options={"shots": 16, "split_seed": 0},
    )
    make_run(
        store,
        suite="domain",
        dataset="imagenet",
        method="pace",
        seed=1,
        evals={**targets, "imagenet_a": 18.0},
        options={"shots": 16, "split_seed": 0},
    )
    make_run(
        store,
        suite="domain",
        dataset="imagenet",
        method="baseline",
        evals={"imagenet": 78.0},
        options={"shots": 16, "split_seed": 0},
    )
    domain = gather("domain", store).frame
    pace = row(domain, method="pace", source="measured")
    assert (pace["imagenet_a"], pace["mean"]) == (17.0, pytest.approx(46.2))
    base = row(domain, method="baseline", source="measured")
    assert base["imagenet"] == 78.0 and math.isnan(base["imagenet_r"]) and math.isnan(base["mean"])


def test_paper_tables_without_runs_show_paper_rows_only(tmp_path):
    data = gather("fgvc", Store(f"sqlite:///{tmp_path}/r.db"))
    assert list(data.frame["source"]) == ["paper (LoRA+VPT)", "paper (+PACE)"]
    assert any("pacebench run fgvc" in n for n in data.notes)


def test_ablations_table(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    with pytest.raises(PacebenchError, match="pacebench ablate"):
        gather("ablations", store)
    for method, tests in [("baseline", [74, 76]), ("pace", [79]), ("fpa", [77]), ("pace_lazy", [90])]:
        for seed, test in enumerate(tests):
            make_run(store, suite="vtab", dataset="cifar", method=method, seed=seed, test=test, train=95)
    make_run(store, suite="demo", dataset="digits", method="sam", test=60)
    data = gather("6", store, suite="vtab", dataset="cifar100")  # an alias of cifar
    frame = data.frame
    assert list(frame["method"]) == ["baseline", "pace", "fpa"]  # Table-6 order; pace_lazy is not an ablation
    base = row(frame, method="baseline")
    assert (base["test acc"], base["test acc std"], base["paper (Table 6)"]) == (75.0, pytest.approx(2**0.5), 74.9)
    assert row(frame, method="fpa")["paper (Table 6)"] == 76.6
    assert gather("ablations", store, dataset="cifar-100").frame.equals(frame)  # alias, no suite named
    both = gather("ablations", store).frame  # any suite: one row per data set, paper values only beside vtab/cifar
    assert math.isnan(row(both, method="sam")["paper (Table 6)"])
    assert row(both, method="sam", data="demo/digits")["test acc"] == 60
    assert set(frame["mode"]) == {"defaults (not tuned)"}


def test_ablations_table_shows_tuned_winners_with_their_values(tmp_path, monkeypatch):
    import pacebench.core.methods

    grids = {"pace": {"lam": [0.5, 1.0], "sigma": [0.8, 1.2]}, "fpa": {"lam": [0.1, 1.0]}}
    monkeypatch.setattr(pacebench.core.methods, "method_grid", lambda m: grids.get(m, {}))
    store = Store(f"sqlite:///{tmp_path}/r.db")
    make_run(store, method="baseline", test=70, origin="tune")
    make_run(store, method="pace", config={"lam": 0.5, "sigma": 0.8}, test=80, origin="tune")
    make_run(store, method="pace", config={"lam": 0.5, "sigma": 0.8}, seed=1, test=82, origin="tune")
    make_run(store, method="pace", config={"lam": 1.0, "sigma": 1.2}, test=75)  # ablate --no-tune
    make_run(store, method="fpa", config={"lam": 0.1}, test=77, origin="tune")
    frame = gather("6", store, suite="demo").frame
    tuned = row(frame, method="pace", mode="tuned")
    assert (tuned["chosen"], tuned["seeds"], tuned["test acc"]) == ("lam=0.5 sigma=0.8", 2, 81.0)
    fixed = row(frame, method="pace", mode="defaults (not tuned)")
    assert (fixed["chosen"], fixed["test acc"]) == ("lam=1 sigma=1.2", 75.0)
    assert row(frame, method="baseline")["chosen"] == "–" and row(frame, method="fpa")["chosen"] == "lam=0.1"
    assert row(frame, method="baseline")["mode"] == "defaults (no grid to search)"


# ---- renderers --------------------------------------------------------------------------------------------------


@pytest.fixture
def small() -> TableData:
    frame = pd.DataFrame(
        {
            "method": ["baseline", "pace_h"],
            "seeds": [2, 1],
            "test acc": [81.0, math.nan],
            "test acc std": [1.0, math.nan],
            "grad norm": [0.012345, 2.5],
        }
    )
    return TableData(
        "Demo: 5% of x_y",
        frame,
        ["phase-2 runs only (train+val -> test)"],
        pm={"test acc": "test acc std"},
        formats={"seeds": "d", "grad norm": ".3g"},
    )


def test_markdown(small):
    assert to_markdown(small) == (
        "**Demo: 5% of x_y**\n\n"
        "| method | seeds | test acc | grad norm |\n"
        "| --- | ---: | ---: | ---: |\n"
        "| baseline | 2 | 81.00 ± 1.00 | 0.0123 |\n"
        "| pace_h | 1 | – | 2.5 |\n\n"
        "- phase-2 runs only (train+val -> test)\n"
    )


def test_csv(small):
    assert to_csv(small) == (
        "method,seeds,test acc,test acc std,grad norm\nbaseline,2,81,1,0.012345\npace_h,1,–,–,2.5\n"
    )


def test_latex(small):
    text = to_latex(small)
    assert r"\begin{tabular}{lrrr}" in text
    assert r"\caption{Demo: 5\% of x\_y}" in text
    lines = [line.strip() for line in text.splitlines()]
    assert (
        lines.index(r"\toprule")
        < lines.index(r"method & seeds & test acc & grad norm \\")
        < lines.index(r"\midrule")
        < lines.index(r"baseline & 2 & 81.00 $\pm$ 1.00 & 0.0123 \\")
        < lines.index(r"pace\_h & 1 & -- & 2.5 \\")
        < lines.index(r"\bottomrule")
    )
    assert r"train+val $\rightarrow$ test" in text


def test_rich_and_render_table(small, demo):
    console = Console(record=True, width=160)
    console.print(render(small, "rich"))
    text = console.export_text()
    assert "81.00 ± 1.00" in text and "–" in text and "phase-2 runs only" in text
    assert render_table("demo", demo, "csv").startswith("method,weights,seeds,test acc,test acc std,train acc")
    with pytest.raises(PacebenchError, match="unknown format"):
        render(small, "docx")
    html = render(small, "html")
    assert html.startswith("<table>") and '<td class="num">81.00 ± 1.00</td>' in html and "-&gt; test" in html


# ---- figures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curves(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """demo/digits: baseline x2 and pace x1 with per-epoch logs; a λ sweep of pace and fpa in the tune phase."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('curves')}/r.db")
    make_run(store, seed=0, test=80, epochs=epochs([3, 2, 1], train=(50, 60, 70), test=80, fp={2: 0.2}))
    make_run(store, seed=1, test=84, epochs=epochs([5, 4, 3], train=(52, 62, 74), test=84, fp={2: 0.4}))
    make_run(store, method="pace", config={"lam": 1.0}, test=90, epochs=epochs([1, 1, 1], test=90, fp={2: 0.1}))
    sweep = [
        ("pace", 0.1, 0, [2, 2, 2]),
        ("pace", 0.1, 1, [4, 4, 4]),
        ("pace", 1.0, 0, [1, 1, 1]),
        ("fpa", 1.0, 0, [3, 3, 3]),
        ("baseline", None, 0, [6, 6, 6]),
    ]
    for method, lam, seed, grad in sweep:
        make_run(
            store,
            method=method,
            seed=seed,
            phase="tune",
            val=50,
            config={} if lam is None else {"lam": lam},
            epochs=epochs(grad),
        )
    return store


def test_grad_norm_gather(curves):
    frame = grad_norm_data(curves, kind="step")
    base = frame[frame.series == "baseline"].set_index("epoch")
    assert list(base["mean"]) == [4.0, 3.0, 2.0]
    assert list(base["min"]) == [3.0, 2.0, 1.0] and list(base["max"]) == [5.0, 4.0, 3.0]
    assert list(base["n"]) == [2, 2, 2]
    assert set(frame.series) == {"baseline", "pace"}  # the tune-phase sweep is not mixed in
    assert "demo/digits, phase final, 3 runs" in frame.attrs["data"]
    assert "optimizer step" in frame.attrs["what"]


def test_grad_norm_reads_the_task_loss_on_held_out_by_default(curves):
    frame = grad_norm_data(curves)  # the paper's reading: held-out split, task loss, evaluation epochs only
    base = frame[frame.series == "baseline"]
    assert (list(base["epoch"]), list(base["mean"])) == ([2], [200.0])  # 100 x mean(1, 3)
    assert "task loss" in frame.attrs["what"] and "test split" in frame.attrs["what"]
    train = grad_norm_data(curves, on="train")
    assert train[train.series == "baseline"]["mean"].item() == 20.0
    with pytest.raises(UsageError, match="--kind step is measured on the training batches only"):
        grad_norm_data(curves, kind="step", on="heldout")
    with pytest.raises(UsageError, match="--on must be one of"):
        grad_norm_data(curves, on="val")


def test_fp_distance_and_accuracy_gather(curves):
    fp = fp_distance_data(curves, on="train")
    assert list(fp["epoch"]) == [2, 2]  # only evaluation epochs have an FP-distance
    assert fp.set_index("series").loc["baseline", "mean"] == pytest.approx(0.3)
    held = fp_distance_data(curves)  # held-out by default
    assert held.set_index("series").loc["baseline", "mean"] == pytest.approx(3.0)
    assert "test split" in held.attrs["what"]
    acc = accuracy_data(curves)
    base = acc[acc.series == "baseline"]
    assert list(base[base.metric == "train acc"]["mean"]) == [51.0, 61.0, 72.0]
    test = base[base.metric == "test acc"]
    assert (list(test["epoch"]), list(test["mean"])) == ([2], [82.0])


def test_lambda_sweep_gather(curves):
    frame = lambda_sweep_data(curves, kind="step")  # takes the tune phase, where the sweep is
    pace = frame[frame.method == "pace"].set_index("lam")
    assert (pace.loc[0.1, "mean"], pace.loc[0.1, "n"], pace.loc[1.0, "mean"]) == (3.0, 2, 1.0)
    assert set(frame.series) == {"baseline", "pace", "fpa"}  # λ is the x axis, not part of the label
    assert math.isnan(frame[frame.method == "baseline"]["lam"].item())
    assert "phase tune" in frame.attrs["data"]


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in FIGURES.names()
        if n not in ("efficiency", "sensitivity")  # see below
        and not FIGURES.get(n).suite_wide
    ],
)  # test_compare.py draws those over a suite
def test_each_figure_writes_a_png(curves, tmp_path, name):
    path = plot(name, curves, tmp_path / "figs" / f"{name}.png", suite="demo", dataset="digits5-9")
    assert path == tmp_path / "figs" / f"{name}.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_figures_say_which_runs_are_missing(tmp_path, curves):
    empty = Store(f"sqlite:///{tmp_path}/r.db")
    with pytest.raises(PacebenchError, match="no finished final-phase runs for demo; run `pacebench run demo`"):
        plot("grad-norm", empty, tmp_path / "x.png", suite="demo")
    make_run(empty, suite="vtab", dataset="cifar", test=1, epochs=epochs([1, 1, 1]))
    make_run(empty, suite="vtab", dataset="dtd", test=1, epochs=epochs([1, 1, 1]))
    with pytest.raises(PacebenchError, match="2 data sets match"):
        plot("grad-norm", empty, tmp_path / "x.png")
    with pytest.raises(PacebenchError, match="no finished final-phase runs of baseline, pace, fpa"):
        plot("lambda-sweep", empty, tmp_path / "x.png", suite="demo")
    assert not (tmp_path / "x.png").exists()


def test_plot_into_a_folder(curves, tmp_path: Path):
    assert plot("grad-norm", curves, tmp_path) == tmp_path / "grad-norm.png"


# ---- Figures 3-6 ----------------------------------------------------------------------------------------------


def walls(seconds: float, n: int = 3) -> list[EpochRecord]:
    return [EpochRecord(epoch=i, wall_time=seconds) for i in range(n)]


def pets_tune_run(store: Store, **fields) -> RunRecord:
    """A Fig. 6 run: PACE in phase tune on few-shot Oxford Pets."""
    return make_run(store, suite="fewshot", dataset="oxford_pets", method="pace", phase="tune", **fields)


@pytest.fixture
def figure_store(tmp_path) -> Store:
    """Known numbers for Figs. 3, 5 and 6."""
    store = Store(f"sqlite:///{tmp_path}/f.db")
    # Fig. 5: baseline 1 s per epoch, PACE 2 s, lazy N=2 1.5 s, N=4 1.25 s, multi M=3 3 s
    make_run(store, method="baseline", test=70, epochs=walls(1.0))
    make_run(store, method="pace", config={"lam": 1.0}, test=80, epochs=walls(2.0))
    make_run(store, method="pace_lazy", config={"interval": 2}, test=78, epochs=walls(1.5))
    make_run(store, method="pace_lazy", config={"interval": 4}, test=76, epochs=walls(1.25))
    make_run(store, method="pace_lazy", config={"interval": 4}, seed=1, test=74, epochs=walls(1.25))
    make_run(store, method="pace_multi", config={"copies": 3}, test=81, epochs=walls(3.0))
    # Fig. 6: tune runs on few-shot pets, 2 shots x 2 σ x 2 λ, two split seeds at one point
    for shots in (1, 2):
        for sigma in (0.5, 1.0):
            for lam in (0.1, 1.0):
                pets_tune_run(
                    store,
                    options={"shots": shots, "split_seed": 0},
                    config={"sigma": sigma, "lam": lam},
                    val=10 * shots + sigma + lam,
                )
    pets_tune_run(store, options={"shots": 1, "split_seed": 1}, config={"sigma": 0.5, "lam": 0.1}, val=0.0)
    # Fig. 3: a Swin run beside the ViT ones on other data
    spec = RunSpec(
        suite="vtab",
        dataset="patch_camelyon",
        method="pace",
        seed=0,
        train=TRAIN,
        backbone="swin_b_in22k",
        weights_sha256=W1,
    )
    written_run(store, spec, {"test_acc": 80}, epochs=[EpochRecord(epoch=0, grad_norm_task_heldout=7.0)])
    return store


def test_efficiency_gather(figure_store):
    from pacebench.report.figures import efficiency_data

    frame = efficiency_data(figure_store, suite="demo")
    lazy = frame[(frame.panel == "pace_lazy: interval N")]
    acc = lazy[lazy.metric == "accuracy"].set_index("x")
    assert acc.loc[1.0, "mean"] == 80 and acc.loc[4.0, "mean"] == 75 and acc.loc[4.0, "n"] == 2  # N=1 is PACE
    cost = lazy[lazy.metric == "relative cost"].set_index("x")
    assert (cost.loc[1.0, "mean"], cost.loc[2.0, "mean"], cost.loc[4.0, "mean"]) == (2.0, 1.5, 1.25)
    multi = frame[(frame.panel == "pace_multi: copies M") & (frame.metric == "relative cost")].set_index("x")
    assert (multi.loc[2.0, "mean"], multi.loc[3.0, "mean"]) == (2.0, 3.0)
    base = frame[(frame.method == "baseline") & (frame.metric == "accuracy")]
    assert base["x"].isna().all() and set(base["mean"]) == {70.0}


def test_efficiency_and_sensitivity_keep_adapter_kinds_apart(figure_store, tmp_path):
    """Fig. 5 and 6 over runs of two adapter kinds: each kind is its own curve or panel, and a kind's relative cost
    is against its own baseline (pooling would average 70 with 60 and divide by a mixed baseline time)."""
    from pacebench.report.figures import efficiency_data, sensitivity_data

    lora = dataclasses.replace(TRAIN, adapter="lora")
    make_run(figure_store, method="baseline", train_cfg=lora, test=60, epochs=walls(4.0))
    make_run(figure_store, method="pace_lazy", config={"interval": 2}, train_cfg=lora, test=66, epochs=walls(6.0))
    frame = efficiency_data(figure_store, suite="demo")
    assert set(frame["adapter"]) == {TRAIN.adapter, "lora"}
    lazy = frame[(frame.panel == "pace_lazy: interval N") & (frame.x == 2.0)].set_index(["adapter", "metric"])
    assert lazy.loc[("lora", "relative cost"), "mean"] == 1.5 and lazy.loc[("lora", "accuracy"), "mean"] == 66
    assert (
        lazy.loc[(TRAIN.adapter, "relative cost"), "mean"] == 1.5
        and lazy.loc[(TRAIN.adapter, "accuracy"), "mean"] == 78
    )
    base = frame[(frame.method == "baseline") & (frame.metric == "accuracy")].set_index("adapter")["mean"]
    assert base.to_dict() == {TRAIN.adapter: 70.0, "lora": 60.0}
    pets_tune_run(
        figure_store, options={"shots": 1, "split_seed": 0}, config={"sigma": 0.5, "lam": 0.1}, train_cfg=lora, val=50.0
    )
    grid = sensitivity_data(figure_store).set_index(["adapter", "shots", "sigma", "lam"])["mean"]
    assert grid[("lora", 1, 0.5, 0.1)] == 50.0 and grid[(TRAIN.adapter, 1, 0.5, 0.1)] == pytest.approx(5.3)
    for name in ("efficiency", "sensitivity"):
        assert plot(name, figure_store, tmp_path / f"{name}.png", suite="demo" if name == "efficiency" else None)


def test_sensitivity_gather_reads_tune_runs(figure_store):
    from pacebench.report.figures import sensitivity_data

    frame = sensitivity_data(figure_store).set_index(["shots", "sigma", "lam"])
    assert frame.loc[(2, 1.0, 1.0), "mean"] == 22.0
    assert frame.loc[(1, 0.5, 0.1), "mean"] == pytest.approx(5.3) and frame.loc[(1, 0.5, 0.1), "n"] == 2
    assert len(frame) == 8 and "phase tune" in frame.attrs["data"]


def test_figure3_filters_by_backbone_and_titles_from_the_data(figure_store):
    from pacebench.report.figures import title_of

    frame = grad_norm_data(figure_store, dataset="camelyon", backbone="swin_b_in22k")
    assert frame["mean"].item() == 7.0
    assert "vtab/patch_camelyon" in title_of("grad-norm", frame) and "swin_b_in22k" in title_of("grad-norm", frame)
    with pytest.raises(PacebenchError, match="on vit_b16_in21k"):
        grad_norm_data(figure_store, dataset="camelyon", backbone="vit_b16_in21k")


@pytest.mark.parametrize(("name", "filters"), [("efficiency", {"suite": "demo"}), ("sensitivity", {})])
@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_new_figures_draw_in_each_format(figure_store, tmp_path, name, filters, suffix):
    path = plot(name, figure_store, tmp_path / f"{name}{suffix}", **filters)
    head = path.read_bytes()[:8]
    assert {
        ".png": head.startswith(b"\x89PNG"),
        ".pdf": head.startswith(b"%PDF"),
        ".svg": b"<?xml" in head or b"<svg" in head,
    }[suffix]


def test_figure_format_is_refused_unless_png_pdf_svg(curves, tmp_path):
    with pytest.raises(UsageError, match="name the file .png, .pdf or .svg"):
        plot("grad-norm", curves, tmp_path / "x.jpg")


# ---- Table 5 ------------------------------------------------------------------------------------------------


def test_backbones_table(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/t5.db")
    empty = gather("5", store).frame
    assert set(empty["source"]) == {"paper"} and len(empty) == 6  # LoRA+VPT and +PACE on three backbones
    swin = dataclasses.replace(TRAIN, adapter="lora_mul+vpt_add")
    for seed, acc in enumerate([70.0, 72.0]):
        spec = RunSpec(
            suite="vtab",
            dataset="cifar",
            method="pace",
            seed=seed,
            train=swin,
            backbone="swin_b_in22k",
            weights_sha256=W1,
        )
        written_run(store, spec, {"test_acc": acc})
    spec = RunSpec(
        suite="domain",
        dataset="imagenet",
        method="pace",
        seed=0,
        train=swin,
        backbone="swin_b_in22k",
        weights_sha256=W1,
    )
    written_run(
        store,
        spec,
        {
            "test_acc": 0,
            "evals": {
                t: 10.0 + i
                for i, t in enumerate(["imagenet", "imagenet_sketch", "imagenet_v2", "imagenet_a", "imagenet_r"])
            },
        },
    )
    data = gather("table5", store)
    measured = row(data.frame, source="measured")
    assert (measured["backbone"], measured["method"], measured["seeds"]) == ("swin_b_in22k", "+PACE", 1)
    assert measured["cifar100"] == 71.0 and measured["imagenet_r"] == 14.0
    paper = row(data.frame, source="paper")
    assert (paper["backbone"], paper["cifar100"], paper["imagenet_r"]) == ("swin_b_in22k", 78.9, 38.0)


# ---- the HTML page ----------------------------------------------------------------------------------------------


def test_html_page_structure(curves, tmp_path):
    """Every table with runs (and only those), every figure whose runs exist as an embedded PNG, provenance per
    table, the paper's rows marked, nothing fetched from elsewhere."""
    import re
    from html.parser import HTMLParser

    from pacebench.report.page import build_page

    make_run(curves, suite="vtab", dataset="cifar", test=75.0, config={"lam": 1.0}, method="pace")
    assert "table-ablations" not in build_page(curves)  # baseline and PACE only: the summary shows them
    make_run(curves, suite="vtab", dataset="cifar", test=74.0, method="sam")
    page = build_page(curves)

    class Parser(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.sections, self.images, self.paper_rows, self.provenance = [], [], 0, 0

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "section":
                self.sections.append(a["id"])
            if tag == "img":
                self.images.append(a["src"])
            if tag == "tr" and a.get("class") == "paper":
                self.paper_rows += 1
            if tag == "div" and a.get("class") == "provenance":
                self.provenance += 1

    parser = Parser()
    parser.feed(page)
    tables = [s for s in parser.sections if s.startswith("table-")]
    assert tables == ["table-vtab", "table-demo", "table-ablations", "table-backbones"]  # not fgvc, params: no runs
    assert parser.provenance == len(tables) and parser.paper_rows >= 2
    figures = [s for s in parser.sections if s.startswith("figure-")]
    assert {re.sub(r"-\d+$", "", s) for s in figures} == {
        "figure-grad-norm",
        "figure-fp-distance",
        "figure-accuracy",
        "figure-lambda-sweep",
        "figure-compare",
    }
    assert len(parser.images) == len(figures) and all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "http://" not in page and "https://" not in page
    assert page.count('href="#') == len(parser.sections)  # the contents list links every section
    old = make_run(curves, suite="vtab", dataset="cifar", test=10.0, method="sam", seed=9)
    rewrite_run(curves, old.id, key="made-before-a-change")  # an outdated run: the tables leave it out
    vtab = build_page(curves).split('id="table-vtab"')[1].split("</section>")[0]
    assert "left out" in vtab and "2 finished phase-2 runs; methods: pace (1), sam (1)" in vtab, "provenance too"


def test_runs_from_before_a_change_that_alters_them_are_left_out_with_a_note(tmp_path):
    """A run stored under the key an earlier pacebench gave it (here: before the lr step moved after the epoch) is
    not averaged with new runs of the same setting."""
    store = Store(f"sqlite:///{tmp_path}/r.db")
    make_run(store, seed=0, test=80, train=90)
    old = make_run(store, seed=1, test=10, train=90)
    rewrite_run(store, old.id, key="0123456789abcdef")  # a key today's code no longer gives this spec
    data = gather("demo", store)
    assert row(data.frame, method="baseline")["seeds"] == 1
    assert row(data.frame, method="baseline")["test acc"] == pytest.approx(80.0)
    assert any("1 finished run(s) made before a pacebench change" in note for note in data.notes)


def test_params_table_shows_counted_measured_and_printed(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/r.db")
    empty = gather("params", store, suite="domain").frame.iloc[0]
    # ViT-B/16, LoRA_mul+VPT_add rank 10: per block qkv 33,024 + 7,690, proj 16,128 + 7,690, fc1 41,472 + 7,690,
    # fc2 39,168 + 30,730 (D, U, δb + P_d, P_u) = 183,592; x 12 blocks = 2,203,104; head 768 x 1000 + 1000
    assert empty["code (M)"] == pytest.approx((12 * 183_592 + 769_000) / 1e6, rel=1e-12)
    assert empty["paper (M)"] == pytest.approx(2.39) and math.isnan(empty["measured (M)"])
    spec = RunSpec(
        suite="domain",
        dataset="imagenet",
        method="baseline",
        seed=0,
        train=TrainConfig(epochs=3),
        backbone="vit_b16_in21k",
        data_options={"shots": 16, "split_seed": 0},
    )
    written_run(store, spec, {"test_acc": 1.0}, facts={"trainable_params": 3_000_000})
    assert gather("params", store, suite="domain").frame.iloc[0]["measured (M)"] == pytest.approx(3.0)


def test_a_new_table_is_an_entry_in_select_and_a_gather_step(tmp_path, monkeypatch):
    """What docs/extending.md promises: a `TableEntry` in `select.CODE_TABLES` and an `@gatherer` function are all a
    table over any suite needs; `--table`, the help list and the HTML page find it, reading the runs it declares."""
    from pacebench.report import select
    from pacebench.report.page import table_sections
    from pacebench.report.select import Reads, TableEntry
    from pacebench.report.tables.base import GATHERS, gatherer

    entry = TableEntry("seedcount", "finished seeds per method", Reads(suites=("demo",)), aliases=("sc",))
    monkeypatch.setattr(select, "CODE_TABLES", (*select.CODE_TABLES, entry))
    monkeypatch.setattr(GATHERS, "_items", dict(GATHERS._items))

    @gatherer("seedcount")
    def seeds(store, entry, suite=None, dataset=None) -> TableData:
        runs = entry.reads.runs(store, suite, dataset)
        return TableData("seeds", pd.DataFrame({"method": [r.method for r in runs], "seed": [r.seed for r in runs]}))

    store = Store(f"sqlite:///{tmp_path}/r.db")
    make_run(store, test=80.0)
    make_run(store, suite="vtab", dataset="cifar", test=70.0)  # not read: the table declares the demo suite
    assert "seedcount" in table_names() and list(gather("sc", store).frame["method"]) == ["baseline"]
    page = {s.anchor: s.body for s in table_sections(store)}
    assert "1 finished phase-2 runs" in page["table-seedcount"]


def test_the_page_shows_the_speed_table_when_bench_rows_exist(tmp_path):
    from pacebench.report.page import table_sections

    store = Store(f"sqlite:///{tmp_path}/r.db")
    make_run(store, test=80.0)
    assert "table-speed" not in [s.anchor for s in table_sections(store)]
    row = {
        "device": "cpu",
        "device_name": "CPU",
        "versions": {"torch": "2"},
        "backbone": "test_vit",
        "adapter": "lora_mul+vpt_add",
        "rank": 2,
        "batch": 2,
        "image_size": 16,
        "patch_size": 8,
        "classes": 3,
        "precision": "fp32",
        "compile": False,
        "paths": "fast",
        "threads": 1,
        "warmup": 0,
        "steps": 2,
        "method": "baseline",
        "ms_per_step": 10.0,
        "images_per_s": 200.0,
        "gflop_per_step": 0.1,
        "time_ratio": 1.0,
        "flop_ratio": 1.0,
        "peak_mib": None,
        "mfu": None,
        "times_ms": [10.0, 10.0],
    }
    store.add_speed([row])
    sections = {s.anchor: s.body for s in table_sections(store)}
    assert "table-speed" in sections and '<td class="num">10.0</td>' in sections["table-speed"]
