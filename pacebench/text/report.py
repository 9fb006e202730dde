"""`pacebench report --table glue|gsm8k`: the slides' text tables, measured rows beside the slides' numbers.

Cells are each run's `test_acc`, which for text runs holds the reported split's score in the task's metric (GLUE:
MCC for CoLA, Pearson for STS-B, accuracy otherwise, on dev; GSM-8K: exact match on test), mean over seeds.
"""

from __future__ import annotations

from pacebench.plan.suites import load_suite
from pacebench.report.tables import TableData, _plain_mean, _wide_table, finished_runs, table
from pacebench.store import RunRecord, Storage
from pacebench.text.data import GLUE_TASKS

SHORT = {"mcc": "mcc", "pearson": "pearson", "accuracy": "acc"}  # the slides CSV's column suffixes


def glue_column(dataset: str) -> str:
    return f"{dataset}_{SHORT[GLUE_TASKS[dataset].metric]}"


def _glue_value(run: RunRecord) -> dict[str, float]:
    value = run.metrics.get("test_acc")
    return {} if value is None or run.dataset not in GLUE_TASKS else {glue_column(run.dataset): float(value)}


@table("glue", "Slides: GLUE dev with RoBERTa-base (MCC / Pearson / accuracy) and their mean")
def glue_table(store: Storage, suite: str | None = None, dataset: str | None = None) -> TableData:
    s = load_suite(suite or "glue")
    notes = ["cells: mean over seeds of the last dev evaluation; CoLA: Matthews correlation, STS-B: Pearson, "
             "others: accuracy (x100); 'mean' is the plain mean of the six",
             "paper rows: the slides' LoRA (the LoRA paper's RoBERTa-base row, a median of 5 runs) and +PACE"]
    columns = [glue_column(ds) for ds in s.datasets if ds in GLUE_TASKS]
    return _wide_table(f"GLUE: {s.description}", s, finished_runs(store, s.name, dataset), columns, _glue_value,
                       _plain_mean, {"baseline": "LoRA", "pace": "+PACE"}, notes)


def _accuracy(run: RunRecord) -> dict[str, float]:
    value = run.metrics.get("test_acc")
    return {} if value is None else {"accuracy": float(value)}


@table("gsm8k", "Slides: GSM-8K test exact match with Phi-3-mini-4k-instruct (Pre-trained, LoRA, +PACE)")
def gsm8k_table(store: Storage, suite: str | None = None, dataset: str | None = None) -> TableData:
    s = load_suite(suite or "gsm8k")
    notes = ["cells: exact match (%) of the final number under greedy decoding on test, mean over seeds",
             "paper rows: the slides' Pre-trained, LoRA and +PACE (prompt and settings not published)"]
    return _wide_table(f"GSM-8K: {s.description}", s, finished_runs(store, s.name, dataset), ["accuracy"],
                       _accuracy, lambda values: {}, {"pretrained": "Pre-trained", "baseline": "LoRA",
                                                      "pace": "+PACE"}, notes)
