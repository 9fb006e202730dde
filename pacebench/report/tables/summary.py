"""Per-method summaries over any suite: the demo's table and Table 6 (the ablations), one row per data set, weight
file, method and setting, with test accuracy as mean ± std over seeds and the last evaluation's Fig. 2 readings."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pacebench.choices import GradKind, Split
from pacebench.core import methods
from pacebench.errors import PacebenchError
from pacebench.plan.suites import load_suite
from pacebench.report.compare import compare_row
from pacebench.report.labels import (
    READINGS,
    READINGS_NOTE,
    STEP,
    config_labels,
    data_key,
    data_label,
    method_rank,
    reading,
    setting_key,
    value_text,
    weights_key,
)
from pacebench.report.reference import reference_table
from pacebench.report.select import TableEntry
from pacebench.report.tables.base import TableData, gatherer, phase_notes, sort_rows
from pacebench.report.tables.cells import NAN, mean, metric, rows, std
from pacebench.store import RunRecord, Storage

TEST, TEST_STD, TRAIN, GAP = "test acc", "test acc std", "train acc", "gap (train - test)"
SUMMARY_FORMATS = {"seeds": "d", **{r.name(): ".4g" for r in READINGS}}


def _final_grad_norms(store: Storage, runs: list[RunRecord]) -> dict[int, float]:
    """Per run: the step's gradient norm in its last epoch (a finished run's metrics do not keep it)."""
    last: dict[int, float] = {}
    for e in store.epochs_of([r.id for r in runs]):  # ordered by epoch, so the last one wins
        value = getattr(e, STEP.field)
        if e.run_id is not None and value is not None:
            last[e.run_id] = value
    return last


def _summary_rows(store: Storage, runs: list[RunRecord], notes: list[str]) -> pd.DataFrame:
    """One row per (data, weights, method, setting): seeds, test/train accuracy, gap, the readings; the column "_run"
    holds one run of the row (for callers that add columns from it)."""
    labels = config_labels(runs, scope=lambda r: (data_key(r), r.method))
    grad = _final_grad_norms(store, runs)
    records = []
    for row in rows(runs, lambda r: (data_key(r), weights_key(r), r.method, setting_key(r)), notes):
        [cell] = row.cells
        first = cell.runs[0]
        test, train = cell.values(metric("test_acc")), cell.values(metric("train_acc"))
        readings = {r.name(): mean(cell.values(metric(r.field))) for r in READINGS if r is not STEP}
        records.append(
            {
                "data": data_label(first),
                "method": first.method,
                "config": labels[first.id],
                "weights": weights_key(first),
                "seeds": row.seeds,
                TEST: mean(test),
                TEST_STD: std(test),
                TRAIN: mean(train),
                GAP: mean(train) - mean(test),
                STEP.name(): mean(grad[r.id] for r in cell.runs if r.id in grad),
                **readings,
                "_run": first,
            }
        )
    frame = sort_rows(pd.DataFrame(records), lambda r: (r["data"], method_rank(r["method"]), r["config"], r["weights"]))
    alike = [c for c in ("data", "weights") if frame[c].nunique() <= 1]
    return frame.drop(columns=alike + ([] if (frame["config"] != "").any() else ["config"]))


HEADLINE = (
    "data",
    "method",
    "config",
    "weights",
    "seeds",
    TEST,
    GAP,
    reading(GradKind.task, Split.heldout).name(),
    reading(None, Split.heldout).name(),
)  # the paper's Fig. 2 readings: on held-out data


@gatherer("demo")
def demo_table(store: Storage, entry: TableEntry, suite: str | None = None, dataset: str | None = None) -> TableData:
    assert entry.reads is not None and entry.reads.suites is not None
    name = suite or entry.reads.suites[0]
    runs = entry.reads.runs(store, suite, dataset)
    if not runs:
        raise PacebenchError(f"no finished phase-final runs for suite {name}; run `pacebench run {name}` first")
    notes: list[str] = []
    frame = _summary_rows(store, runs, notes).drop(columns="_run")
    notes = [
        *phase_notes(runs),
        *notes,
        READINGS_NOTE,
        "train accuracy at the last evaluation; std over seeds (ddof=1)",
    ]
    where = data_label(runs[0]) if len({data_key(r) for r in runs}) == 1 else f"suite {name}"
    return TableData(
        f"Per-method summary: {where}", frame, notes, pm={TEST: TEST_STD}, formats=SUMMARY_FORMATS, headline=HEADLINE
    )


def _table6_mode(run: RunRecord) -> str:
    if run.origin != "tune":
        return "defaults (not tuned)"
    return "tuned" if methods.method_grid(run.method) else "defaults (no grid to search)"


def _table6_values(run: RunRecord) -> str:
    """The run's values of its method's searched hyperparameters ("lam=1 sigma=1.2"); "–" for a method without any."""
    names = sorted(methods.method_grid(run.method))
    return " ".join(f"{n}={value_text(run.method_config.get(n))}" for n in names) or "–"


PAPER_TABLE6 = "paper (Table 6)"
VS_PACE = "vs pace (95%)"


def _vs_pace(store: Storage, runs: list[RunRecord], first: RunRecord) -> str:
    """Whether the row's method (the runs of `first`'s data, weights, method and setting) differs from pace's runs
    on the same data and weights: a verdict, or "–" where there is nothing to compare (pace itself, no pace runs,
    one seed without predictions)."""
    if first.method == "pace":
        return "–"
    same = [r for r in runs if (data_key(r), weights_key(r)) == (data_key(first), weights_key(first))]
    mine = [r for r in same if r.method == first.method and setting_key(r) == setting_key(first)]
    pace = [r for r in same if r.method == "pace"]
    if not pace or len({setting_key(r) for r in pace}) > 1:
        return "–"
    try:
        out = compare_row(
            data_label(first), "test", mine, pace, store.predictions([r.id for r in (*mine, *pace)]), 0.5, 2000, (0,)
        )
    except PacebenchError:  # a run without a test score, or runs scored on different examples
        return "–"
    return "–" if isinstance(out, str) else str(out.verdict)


def _paper_ablations(runs: list[RunRecord]) -> dict[str, tuple[dict[str, float], str]]:
    """Per data label: Table 6's values by paper row and the column they come from, for the datasets whose suite
    names one (`[reference] ablation_columns`, e.g. vtab's cifar -> "cifar100_vtab")."""
    out: dict[str, tuple[dict[str, float], str]] = {}
    for run in runs:
        s = load_suite(run.suite)
        column = s.ablation_columns.get(run.dataset)
        ref = reference_table(s, "ablations") if column and data_label(run) not in out else None
        if ref is not None and column in ref.columns:
            out[data_label(run)] = (dict(zip(ref["method"], map(float, ref[column]), strict=True)), str(column))
    return out


@gatherer("ablations")
def ablations_table(
    store: Storage, entry: TableEntry, suite: str | None = None, dataset: str | None = None
) -> TableData:
    assert entry.reads is not None
    runs = entry.reads.runs(store, suite, dataset)
    if not runs:
        where = "/".join(x for x in (suite, dataset) if x)
        raise PacebenchError(
            f"no finished phase-final runs of the Table-6 methods{f' for {where}' if where else ''}; "
            f"run `pacebench ablate {dataset or 'cifar'} --suite {suite or 'vtab'}` first "
            "(offline: `pacebench ablate digits --suite demo`)"
        )
    notes: list[str] = []
    frame = _summary_rows(store, runs, notes)
    frame = frame.drop(columns=[c for c in (TRAIN, GAP, "config") if c in frame.columns])
    frame.insert(frame.columns.get_loc("seeds"), "mode", [_table6_mode(r) for r in frame["_run"]])
    frame.insert(frame.columns.get_loc("seeds"), "chosen", [_table6_values(r) for r in frame["_run"]])
    frame[VS_PACE] = [_vs_pace(store, runs, r) for r in frame["_run"]]
    frame = frame.drop(columns="_run")
    notes += [
        f"{VS_PACE}: the row's method against pace on the same data and weights (`pacebench compare`): "
        "better or worse where the 95% interval of the difference excludes 0, else within noise; paired on "
        "the test examples where predictions are stored, else over seeds"
    ]
    notes += [
        "mode: 'tuned' rows are phase-2 winners of `pacebench ablate` (each method's search grid on train -> "
        "val, the best retrained on train+val -> test); 'defaults (not tuned)' rows come from `ablate "
        "--no-tune` or `run`; chosen: the row's values of the method's searched hyperparameters"
    ]
    paper = _paper_ablations(runs)
    if paper:
        rows_by_method = methods.paper_rows()
        labels: list[Any] = list(frame["data"]) if "data" in frame.columns else [data_label(runs[0])] * len(frame)
        frame[PAPER_TABLE6] = [
            paper[label][0].get(rows_by_method.get(m, ""), NAN) if label in paper else NAN
            for m, label in zip(frame["method"], labels, strict=True)
        ]
        for label, (_, column) in sorted(paper.items()):
            notes.append(
                f"{PAPER_TABLE6} beside {label}: Table 6's {column} column (LoRA+VPT baseline, mean of three seeds)"
            )
    where = data_label(runs[0]) if len({data_key(r) for r in runs}) == 1 else "several datasets"
    return TableData(
        f"Table 6: ablations on {where}",
        frame,
        [*phase_notes(runs), *notes],
        pm={TEST: TEST_STD},
        formats=SUMMARY_FORMATS,
        headline=("data", "method", "mode", "seeds", TEST, VS_PACE, PAPER_TABLE6),
    )
