"""`pacebench compare`: runs gathered per data set, paired on examples where predictions exist, seed level where
they do not (labelled), Holm over the rows, and a suite line; refusals in one line."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import written_run

from pacebench import stats
from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.spec import RunSpec, TrainConfig
from pacebench.report.compare import PAIRED, SEED_LEVEL, Side, compare, parse_side
from pacebench.report.tables.compare import as_tables
from pacebench.store import MemoryStore
from pacebench.store.records import Predictions

PACE = {"lam": 1.0, "sigma": 1.2}


def spec(method: str, seed: int, dataset: str = "cifar", **config) -> RunSpec:
    return RunSpec(
        suite="vtab",
        dataset=dataset,
        method=method,
        seed=seed,
        train=TrainConfig(epochs=1),
        backbone="vit_b16_in21k",
        weights_sha256="ab",
        method_config=config or ({} if method == "baseline" else PACE),
    )


def world(correct: dict[tuple[str, str, int], np.ndarray]) -> tuple[MemoryStore, dict]:
    """Runs whose test accuracy comes from their per-example correctness, with those predictions."""
    store, preds = MemoryStore(), {}
    for (method, dataset, seed), hits in correct.items():
        acc = 100.0 * hits.mean()
        run = written_run(store, spec(method, seed, dataset), {"evals": {"test": acc}, "test_acc": acc})
        ids = tuple(f"{dataset}/{i}" for i in range(len(hits)))
        preds[(run.id, "test")] = Predictions("test", ids, hits.astype(int), np.ones(len(hits), int), hits)
    return store, preds


def sim(seed: int, p: float, n: int = 500) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < p


def test_a_real_gain_is_better_on_each_dataset_and_over_the_suite():
    store, preds = world(
        {
            (m, d, s): sim(i, 0.9 if m == "pace" else 0.6)
            for i, (m, d, s) in enumerate(
                (m, d, s) for m in ("pace", "baseline") for d in ("cifar", "dtd") for s in range(3)
            )
        }
    )
    result = compare(store.runs(), lambda ids: preds, parse_side("pace"), parse_side("baseline"))
    assert [(r.data, r.eval_set, r.level) for r in result.rows] == [
        ("vtab/cifar", "test", PAIRED),
        ("vtab/dtd", "test", PAIRED),
    ]
    assert all(r.verdict == stats.Verdict.better and r.p_holm >= r.difference.p_value for r in result.rows)
    assert result.suite is not None and result.suite.mean.low > 0 and result.suite.tally == (2, 0, 0)
    assert result.rows[0].difference.mean_a == pytest.approx(
        np.mean([100 * preds[(r.id, "test")].correct.mean() for r in store.runs(method="pace", dataset="cifar")])
    )
    table, suite = as_tables(result)
    assert list(table.frame["verdict"]) == ["better", "better"] and "P(pace > baseline)" in list(suite.frame.iloc[:, 0])
    wider = compare(store.runs(), lambda ids: preds, parse_side("pace"), parse_side("baseline"), delta=2)
    assert "seeds for Δ=2" in as_tables(wider)[0].frame and "seeds for Δ=0.5" in table.frame  # sized for --delta


def test_runs_without_predictions_are_compared_at_the_seed_level_and_labelled_so():
    store, preds = world({(m, "cifar", s): sim(s * 7 + len(m), 0.7) for m in ("pace", "baseline") for s in range(3)})
    result = compare(store.runs(), lambda ids: {}, Side("pace"), Side("baseline"))  # an old database: none kept
    [row] = result.rows
    assert row.level == SEED_LEVEL and row.examples is None and any("seed level" in n for n in result.notes)
    assert row.difference.estimate == pytest.approx(row.difference.mean_a - row.difference.mean_b)


def test_runs_scored_on_different_examples_are_never_paired():
    store, preds = world({(m, "cifar", s): sim(s, 0.7) for m in ("pace", "baseline") for s in range(2)})
    run = store.runs(method="pace")[0]
    old = preds[(run.id, "test")]
    preds[(run.id, "test")] = Predictions("test", ("other",) + old.ids[1:], old.predicted, old.target, old.correct)
    with pytest.raises(PacebenchError, match="scored on different examples"):
        compare(store.runs(), lambda ids: preds, Side("pace"), Side("baseline"))


def two_kinds() -> tuple[MemoryStore, dict]:
    """PACE and the baseline on LoRA (80 / 90 %) and on VPT (50 / 60 %), three seeds each, on one data set."""
    store, preds = MemoryStore(), {}
    for i, (kind, method, seed) in enumerate(
        (k, m, s) for k in ("lora", "vpt_add") for m in ("pace", "baseline") for s in range(3)
    ):
        hits = sim(i, {"lora": 0.8, "vpt_add": 0.5}[kind] + (0.1 if method == "pace" else 0.0))
        run_spec = spec(method, seed)
        run_spec = RunSpec(**{**run_spec.__dict__, "train": TrainConfig(epochs=1, adapter=kind)})
        acc = 100.0 * hits.mean()
        run = written_run(store, run_spec, {"evals": {"test": acc}, "test_acc": acc})
        preds[(run.id, "test")] = Predictions("test", tuple(map(str, range(len(hits)))), hits, np.ones(500), hits)
    return store, preds


def test_each_adapter_kind_is_compared_within_itself():
    """Table 2's question, PACE against the baseline on each adapter kind: runs of two kinds are two rows, never
    one side at two settings, and each row pairs runs of one kind only."""
    store, preds = two_kinds()
    result = compare(store.runs(), lambda ids: preds, parse_side("pace"), parse_side("baseline"))
    assert [r.data for r in result.rows] == ["vtab/cifar adapter=lora", "vtab/cifar adapter=vpt_add"]
    lora, vpt = result.rows
    assert lora.difference.mean_b == pytest.approx(80, abs=3) and vpt.difference.mean_b == pytest.approx(50, abs=3)
    assert (lora.seeds_a, lora.seeds_b) == (3, 3) and lora.verdict == stats.Verdict.better


def test_sides_that_name_their_kinds_meet_across_kinds():
    """Which PEFT method does PACE serve best: pace@lora against pace@vpt_add, paired on the same test examples."""
    store, preds = two_kinds()
    [row] = compare(store.runs(), lambda ids: preds, parse_side("pace@lora"), parse_side("pace@vpt_add")).rows
    assert row.data == "vtab/cifar" and row.level == PAIRED and (row.seeds_a, row.seeds_b) == (3, 3)
    assert row.difference.mean_a == pytest.approx(90, abs=3) and row.difference.mean_b == pytest.approx(60, abs=3)
    assert parse_side("pace@lora:lam=0.5").label == "pace@lora:lam=0.5"
    with pytest.raises(UsageError, match="name the adapter kind, e.g. baseline@"):
        compare(store.runs(), lambda ids: preds, parse_side("pace@lora"), parse_side("baseline"))
    with pytest.raises(UsageError, match="unknown adapter 'lorra'"):
        parse_side("pace@lorra")


def test_a_side_at_two_settings_must_be_named_and_a_named_setting_is_used():
    store = MemoryStore()
    for seed, lam in ((0, 0.5), (1, 0.5), (0, 1.0), (1, 1.0)):
        written_run(store, spec("pace", seed, lam=lam, sigma=1.2), {"evals": {"test": 80.0 + lam + seed}})
    for seed in (0, 1):
        written_run(store, spec("baseline", seed), {"evals": {"test": 79.0 + seed}})
    with pytest.raises(UsageError, match=r"pace has 2 settings on vtab/cifar; name the values, e.g. pace:lam="):
        compare(store.runs(), lambda ids: {}, parse_side("pace"), parse_side("baseline"))
    side = parse_side("pace:lambda=0.5")  # an alias, typed by the method's config
    assert side == Side("pace", {"lam": 0.5}) and side.label == "pace:lam=0.5"
    [row] = compare(store.runs(), lambda ids: {}, side, parse_side("baseline")).rows
    assert row.difference.mean_a == pytest.approx(81.0)


def test_nothing_in_common_is_one_clear_error():
    store = MemoryStore()
    written_run(store, spec("pace", 0), {"evals": {"test": 80.0}})
    with pytest.raises(PacebenchError, match="no data set has finished final-phase runs of both pace and baseline"):
        compare(store.runs(), lambda ids: {}, Side("pace"), Side("baseline"))
    with pytest.raises(UsageError, match="unknown method"):
        parse_side("nosuch")


def stored_world(score: dict[str, float], datasets=("cifar", "dtd", "eurosat"), seeds=3) -> MemoryStore:
    """Runs with their predictions kept in the store, as a worker keeps them: method m is right on an example with
    probability score[m]."""
    store = MemoryStore()
    for i, (m, d, s) in enumerate((m, d, s) for m in score for d in datasets for s in range(seeds)):
        hits = sim(i, score[m] - 0.02 * datasets.index(d), 400)
        acc = 100.0 * hits.mean()
        kept = Predictions(
            "test", tuple(f"{d}/{k}" for k in range(len(hits))), hits.astype(int), np.ones(len(hits), int), hits
        )
        config = {} if m == "baseline" else PACE if m == "pace" else {"lam": 1.0}
        written_run(
            store, spec(m, s, d, **config), {"evals": {"test": acc}, "test_acc": acc}, predictions={"test": kept}
        )
    return store


def test_plot_compare_draws_each_dataset_and_the_suite_line(tmp_path):
    from pacebench.report.figures import gather_figure, plot

    store = stored_world({"pace": 0.85, "baseline": 0.6})
    frame = gather_figure("compare", store, suite="vtab")
    assert list(frame["label"]) == ["vtab/cifar", "vtab/dtd", "vtab/eurosat", "suite mean", "suite IQM"]
    assert set(frame["verdict"]) == {"better"} and (frame["low"] > 0).all() and set(frame["level"]) >= {PAIRED}
    assert "wins/ties/losses 3/0/0" in frame.attrs["data"]
    flipped = gather_figure("compare", store, suite="vtab", methods=["baseline", "pace"])
    assert list(flipped["estimate"]) == pytest.approx(list(-frame["estimate"]))
    assert plot("compare", store, tmp_path / "forest").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UsageError, match="two methods"):
        gather_figure("compare", store, methods=["pace"])


def test_plot_ranks_orders_the_methods_and_joins_those_within_the_critical_difference(tmp_path):
    from pacebench.report.figures import gather_figure, plot

    store = stored_world(
        {"pace": 0.9, "pace_fast": 0.89, "baseline": 0.5}, datasets=("a", "b", "c", "d", "e", "f"), seeds=1
    )
    frame = gather_figure("ranks", store, suite="vtab")
    ranks = frame.set_index("method")["rank"]
    assert set(ranks.index) == {"pace", "pace_fast", "baseline"} and ranks.sum() == 6  # 1 + 2 + 3 on each data set
    assert ranks["baseline"] == 3.0  # last on every data set
    assert frame.attrs["cd"] == pytest.approx(stats.critical_difference(3, 6))
    assert any(set(c) == {"pace", "pace_fast"} for c in frame.attrs["cliques"]), "1.5 apart at most: one clique"
    assert plot("ranks", store, tmp_path / "cd.svg").read_text().startswith("<?xml")
    with pytest.raises(PacebenchError, match="3 or more methods"):
        gather_figure("ranks", store, suite="vtab", methods=["pace", "baseline"])


def test_report_all_shows_the_evidence_figures_once_per_suite():
    from pacebench.report.page import figure_sections

    sections = figure_sections(stored_world({"pace": 0.85, "pace_fast": 0.8, "baseline": 0.6}))
    headings = [s.heading for s in sections]
    assert headings.count("Is PACE's gain real: vtab") == 1 and headings.count("Critical-difference diagram: vtab") == 1
    assert "pacebench plot ranks --suite vtab" in next(s.body for s in sections if "Critical" in s.heading)
