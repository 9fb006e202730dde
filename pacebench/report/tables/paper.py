"""The paper's tables: each suite file's own (Tables 1-4 and the slides' text tables, laid out by `LAYOUTS`), Table 5
(other backbones, across two suites) and the trainable-parameter counts. Measured rows sit beside the paper's.

A suite file's `[reference.report]` (`plan.suites.PaperTable`) names its table's layout, so a new suite's table is
that file alone; its rows are the cell aggregator's (`cells.rows`): one per (weights, method), mean over seeds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from pacebench.choices import TableLayout
from pacebench.core.adapters import PART_KINDS
from pacebench.core.footprint import describe
from pacebench.plan.suites import PaperTable, Suite, all_suites, load_suite
from pacebench.registry import Registry
from pacebench.report.labels import method_rank, weights_key
from pacebench.report.reference import group_means, reference_table
from pacebench.report.select import TableEntry
from pacebench.report.tables.base import TableData, gatherer, one_weights_file, phase_notes, sort_rows
from pacebench.report.tables.cells import NAN, mean, metric, rows, std
from pacebench.store import RunRecord, Storage

LABELS = ["method", "adapter", "source", "weights", "seeds"]  # a measured or paper row's label columns, in order
Values = Callable[[RunRecord], dict[str, float]]  # a run -> its numbers by column
Summary = Callable[[dict[str, float]], dict[str, float]]  # a row's values -> its summary columns (means)
Layout = Callable[[str, Suite, PaperTable, list[RunRecord]], TableData]  # (title, suite, table, runs) -> table
LAYOUTS: Registry[Layout] = Registry("table layout")  # keyed by `choices.TableLayout`

test_acc = metric("test_acc")


def paper_table(store: Storage, entry: TableEntry, suite: str | None = None, dataset: str | None = None) -> TableData:
    """A suite file's table from the runs of `suite` (default: the suite that declares it), laid out as that suite's
    own table says (the declaring suite's where it has none)."""
    assert entry.paper is not None and entry.reads is not None and entry.suite is not None
    s = load_suite(suite or entry.suite)
    table = s.paper_table or entry.paper
    runs = entry.reads.runs(store, suite, dataset)
    return LAYOUTS.get(table.layout)(f"{table.heading}: {s.description}", s, table, runs)


def _no_runs(suite: Suite) -> str:
    return f"no finished phase-final runs of suite {suite.name} yet; run `pacebench run {suite.name}`"


def paper_labels(table: PaperTable, measured: set[str]) -> dict[str, Mapping[str, str]]:
    """Per adapter label ("" for the suite's own adapter, else a kind's name), which method is which paper row: the
    suite's own always, another kind's where it was measured (its paper row beside its measured one); each paper row
    once (a kind whose rows are the suite's own adapter's is that adapter)."""
    own = set(table.rows.values())
    return {
        "": table.rows,
        **{
            kind: rows
            for kind, rows in table.rows_by_adapter.items()
            if kind in measured and not set(rows.values()) <= own
        },
    }


def adapter_label(suite: Suite, table: PaperTable) -> Callable[[RunRecord], str]:
    """A run's adapter as its table row names it: "" for the paper's own rows (the adapter the suite trains the
    dataset with, which may differ by dataset, or any other kind of the paper's family that the table gives no row
    of its own), else the kind's name (Table 1's Full, LoRA, ...; Table 2's LoRA and VPT)."""

    def label(run: RunRecord) -> str:
        own = run.dataset in suite.datasets and run.adapter == suite.own_adapter(suite.datasets[run.dataset])
        family = run.adapter in PART_KINDS and run.adapter not in table.rows_by_adapter
        return "" if own or family else run.adapter

    return label


def _paper_rows(
    suite: Suite, table: PaperTable, columns: list[str], summary: Summary, measured: set[str]
) -> list[dict[str, Any]]:
    """The reference CSV's rows the table names, each beside the adapter and method it matches, with our summary
    columns filled in from them unless the paper prints its own (its "mean" is kept as printed)."""
    ref = reference_table(suite)
    if ref is None:
        return []
    out = []
    for adapter, labels in paper_labels(table, measured).items():
        for method, paper_name in labels.items():
            match = ref[ref["method"] == paper_name]
            if match.empty:
                continue
            values = {c: float(match.iloc[0][c]) for c in columns if c in match.columns}
            row = {**summary(values), **values}
            if "mean" in match.columns:
                row["mean"] = float(match.iloc[0]["mean"])
            out.append(
                {
                    "method": method,
                    "adapter": adapter,
                    "source": f"paper ({paper_name})",
                    "weights": "",
                    "seeds": NAN,
                    **row,
                }
            )
    return out


def spread_columns(columns: list[str]) -> dict[str, tuple[str, str]]:
    """Each measured column's (std over seeds, seed count) columns, for `base.intervals`."""
    return {c: (f"{c} std", f"{c} n") for c in columns}


def drop_alike_adapter(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without its "adapter" column when every row is the suite's own adapter."""
    return frame.drop(columns="adapter") if (frame["adapter"] == "").all() else frame


def _wide(
    title: str,
    suite: Suite,
    table: PaperTable,
    runs: list[RunRecord],
    columns: list[str],
    values: Values,
    summary: Summary,
) -> TableData:
    """Rows = (weights, method), columns = `columns` (mean over seeds of `values(run)`), then `summary(row)`."""
    notes: list[str] = []
    known = [r for r in runs if r.dataset in suite.datasets]
    if len(known) < len(runs):
        notes.append(f"{len(runs) - len(known)} runs on datasets not in suite {suite.name} left out")
    records: list[dict[str, Any]] = []
    spread = spread_columns(columns)
    spread_of: tuple[Callable[[list[float]], float], ...] = (std, len)  # a column's values -> its `spread` columns
    label = adapter_label(suite, table)
    for row in rows(known, lambda r: (weights_key(r), label(r), r.method), notes):
        wkey, adapter, method = row.key
        got = row.columns(values)
        cells = {c: mean(got.get(c, [])) for c in columns}
        extra = {n: f(got.get(c, [])) for c, names in spread.items() for n, f in zip(names, spread_of, strict=True)}
        records.append(
            {
                "method": method,
                "adapter": adapter,
                "source": "measured",
                "weights": wkey,
                "seeds": row.seeds,
                **cells,
                **summary(cells),
                **extra,
            }
        )
    records += _paper_rows(suite, table, columns, summary, {r["adapter"] for r in records})
    if not known:
        notes.append(_no_runs(suite))
    summaries = list(summary({c: NAN for c in columns}))
    hidden = [c for pair in spread.values() for c in pair]
    frame = pd.DataFrame(records, columns=[*LABELS, *columns, *summaries, *hidden])
    frame = sort_rows(
        frame, lambda r: (r["adapter"], method_rank(r["method"]), r["source"] != "measured", r["weights"])
    )
    frame = drop_alike_adapter(one_weights_file(frame))
    labels = [c for c in LABELS if c in frame.columns]
    return TableData(
        title,
        frame,
        [*phase_notes(known), *table.notes, *notes],
        formats={"seeds": "d"},
        headline=(*labels, *summaries) if summaries else (),
        spread=spread,
    )


@LAYOUTS.register(TableLayout.datasets)
def by_dataset(title: str, suite: Suite, table: PaperTable, runs: list[RunRecord]) -> TableData:
    """A column per dataset (its test score, under the reference CSV's name for it); with several datasets, the group
    means (when the suite has groups) and the mean of the group means (NaN while any is missing)."""
    names = {ds: table.dataset_columns.get(ds, ds) for ds in suite.datasets}

    def values(run: RunRecord) -> dict[str, float]:
        acc = test_acc(run)
        return {} if acc is None or run.dataset not in names else {names[run.dataset]: acc}

    def summary(row: dict[str, float]) -> dict[str, float]:
        by_dataset = {ds: row[c] for ds, c in names.items() if c in row and not math.isnan(row[c])}
        groups = group_means(by_dataset, suite)
        out = {} if list(groups) == [""] else dict(groups)
        out["mean"] = mean(groups.values())
        return out

    return _wide(title, suite, table, runs, list(names.values()), values, summary if len(names) > 1 else lambda row: {})


def evals(columns: tuple[str, ...]) -> Values:
    """A run's scores on the evaluation sets `columns` (metrics["evals"]), where it has them."""

    def values(run: RunRecord) -> dict[str, float]:
        got = run.metrics.get("evals") or {}
        return {k: float(got[k]) for k in columns if got.get(k) is not None}

    return values


@LAYOUTS.register(TableLayout.evals)
def by_eval(title: str, suite: Suite, table: PaperTable, runs: list[RunRecord]) -> TableData:
    """A column per evaluation set in `columns` (one run scores them all), then their plain mean (NaN while any is
    missing)."""
    return _wide(
        title, suite, table, runs, list(table.columns), evals(table.columns), lambda row: {"mean": mean(row.values())}
    )


@LAYOUTS.register(TableLayout.shots)
def by_shots(title: str, suite: Suite, table: PaperTable, runs: list[RunRecord]) -> TableData:
    """Rows = (dataset, weights, method) and the datasets' average, columns = shots (few-shot, Table 2). A cell is the
    mean over training seeds per split seed, then over split seeds."""
    runs = [r for r in runs if r.dataset in suite.datasets]
    notes: list[str] = []
    shots = sorted({int(k) for ds in suite.datasets.values() for k in ds.options.get("shots", [])})
    columns = [f"{k}-shot" for k in shots]
    records = []
    label = adapter_label(suite, table)
    for row in rows(runs, lambda r: (weights_key(r), label(r), r.method), notes):
        wkey, adapter, method = row.key
        per_split: dict[tuple[str, str], list[float]] = defaultdict(list)
        seeds = []
        for cell in row.cells:
            accs, options = cell.values(test_acc), cell.runs[0].data_options
            if accs and "shots" in options:
                per_split[(cell.runs[0].dataset, f"{int(options['shots'])}-shot")].append(mean(accs))
                seeds.append(len(accs))
        if not seeds:
            continue
        per_ds = {ds: {c: mean(per_split.get((ds, c), [])) for c in columns} for ds in suite.datasets}
        per_ds["average"] = {c: mean(per_ds[ds][c] for ds in suite.datasets) for c in columns}
        records += [
            {
                "dataset": ds,
                "method": method,
                "adapter": adapter,
                "source": "measured",
                "weights": wkey,
                "seeds": min(seeds),
                **values,
            }
            for ds, values in per_ds.items()
        ]
    ref = reference_table(suite)
    if ref is not None:
        for adapter, labels in paper_labels(table, {label(r) for r in runs}).items():
            for method, paper_name in labels.items():
                paper = ref[ref["method"] == paper_name]
                for ds in [*suite.datasets, "average"]:
                    got = paper[paper["dataset"] == ds]
                    values = {f"{int(k)}-shot": float(v) for k, v in zip(got["shots"], got["top1"], strict=True)}
                    records.append(
                        {
                            "dataset": ds,
                            "method": method,
                            "adapter": adapter,
                            "source": f"paper ({paper_name})",
                            "weights": "",
                            "seeds": NAN,
                            **{c: values.get(c, NAN) for c in columns},
                        }
                    )
    frame = pd.DataFrame(records, columns=["dataset", *LABELS, *columns])
    order = {ds: i for i, ds in enumerate([*suite.datasets, "average"])}
    frame = sort_rows(
        frame,
        lambda r: (
            order[r["dataset"]],
            r["adapter"],
            method_rank(r["method"]),
            r["source"] != "measured",
            r["weights"],
        ),
    )
    if not runs:
        notes.append(_no_runs(suite))
    frame = drop_alike_adapter(one_weights_file(frame))
    shown = [c for c in ("dataset", *LABELS) if c in frame.columns and c != "seeds"]
    return TableData(
        title, frame, [*phase_notes(runs), *table.notes, *notes], formats={"seeds": "d"}, headline=(*shown, *columns)
    )


# ---- Table 5: other backbones -----------------------------------------------------------------------------------

PAPER_ADAPTERS = {
    "lora_add": "LoRA_add",
    "vpt_add": "VPT_add",
    "lora_mul": "LoRA_mul",
    "lora_add+vpt_add": "LoRA_add+VPT_add",
    "lora_mul+vpt_add": "LoRA_mul+VPT_add",
}
PAPER_BACKBONES = {"swin_b_in22k": "swin_b_in21k"}  # the paper calls Microsoft's Swin-B 22k release "ImageNet-21K"
CIFAR = "cifar100"  # Table 5's column of the one dataset it reads of an image-classification suite


def table5_label(run: RunRecord) -> str:
    """A run's row name in Table 5's terms: the baseline by its adapter, PACE as "+PACE" on the LoRA+VPT adapter."""
    adapter = PAPER_ADAPTERS.get(run.adapter, run.adapter)
    if run.method == "baseline":
        return adapter
    return "+PACE" if run.method == "pace" and adapter == "LoRA_mul+VPT_add" else f"+{run.method} ({adapter})"


def _targets(entry: TableEntry) -> tuple[str, tuple[str, ...]]:
    """Table 5's ImageNet columns: the suite it reads whose table has a column per evaluation set, and those sets."""
    assert entry.reads is not None and entry.reads.suites is not None
    for name in entry.reads.suites:
        table = load_suite(name).paper_table
        if table is not None and table.layout == TableLayout.evals:
            return name, table.columns
    return "", ()


@gatherer("backbones")
def backbones_table(
    store: Storage, entry: TableEntry, suite: str | None = None, dataset: str | None = None
) -> TableData:
    """Rows (backbone, method) from phase-2 runs of vtab/cifar and of the domain suite; the paper's rows of the same
    backbone and method beside (all three backbones' LoRA+VPT and +PACE while nothing is measured)."""
    assert entry.reads is not None and entry.reads.suites is not None
    runs = entry.reads.runs(store, suite, dataset)
    domain, targets = _targets(entry)
    columns = (CIFAR, *targets)
    by_evals = evals(targets)

    def values(run: RunRecord) -> dict[str, float]:
        acc = test_acc(run)
        return by_evals(run) if run.suite == domain else {} if acc is None else {CIFAR: acc}

    notes: list[str] = []
    records: list[dict[str, Any]] = []
    for row in rows(
        runs,
        lambda r: (r.backbone, weights_key(r), table5_label(r)),
        notes,
        where=lambda r: f"{table5_label(r)} on {weights_key(r)}",
    ):
        backbone, wkey, label = row.key
        got = row.columns(values)
        records.append(
            {
                "backbone": backbone,
                "method": label,
                "source": "measured",
                "weights": wkey,
                "seeds": row.seeds,
                **{c: mean(got.get(c, [])) for c in columns},
            }
        )
    ref = reference_table(load_suite(entry.reads.suites[0]), "backbones")
    if ref is not None:
        measured = {(PAPER_BACKBONES.get(r["backbone"], r["backbone"]), r["method"]) for r in records}
        wanted = measured or {(b, label) for b in ref["backbone"] for label in ("LoRA_mul+VPT_add", "+PACE")}
        ours = {v: k for k, v in PAPER_BACKBONES.items()}
        for _, paper in ref.iterrows():
            if (paper["backbone"], paper["method"]) in wanted:
                records.append(
                    {
                        "backbone": ours.get(paper["backbone"], paper["backbone"]),
                        "method": paper["method"],
                        "source": "paper",
                        "weights": "",
                        "seeds": NAN,
                        CIFAR: float(paper["cifar100_vtab"]),
                        **{c: float(paper[c]) for c in targets},
                    }
                )
    frame = pd.DataFrame(records, columns=["backbone", "method", "source", "weights", "seeds", *columns])
    order = {label: i for i, label in enumerate([*PAPER_ADAPTERS.values(), "+PACE"])}
    frame = sort_rows(
        frame,
        lambda r: (
            r["backbone"],
            order.get(r["method"], len(order)),
            r["method"],
            r["source"] != "measured",
            r["weights"],
        ),
    )
    if not runs:
        notes.append(
            "no finished phase-final runs of vtab/cifar or the domain suite yet; e.g. `pacebench run vtab "
            "--datasets cifar --backbone swin_b_in22k` and `pacebench run domain --backbone swin_b_in22k`"
        )
    notes[:0] = [
        *phase_notes(runs),
        f"{CIFAR}: vtab/cifar test accuracy; imagenet*: the domain suite's targets (one "
        "run scores all five); mean over seeds",
        "paper rows: Table 5, for the backbones and methods measured here",
    ]
    return TableData(
        "Table 5: other backbones, CIFAR-100 (VTAB-1k) and domain adaptation",
        one_weights_file(frame),
        notes,
        formats={"seeds": "d"},
        headline=("backbone", "method", "source", "weights", CIFAR, *targets[:1]),
    )


# ---- trainable parameters: counted from the code, measured in runs, printed in the paper -------------------------


@gatherer("params")
def params_table(store: Storage, entry: TableEntry, suite: str | None = None, dataset: str | None = None) -> TableData:
    assert entry.reads is not None
    names = [suite] if suite else [n for n, s in all_suites().items() if s.reference.get("params")]
    records = []
    for name in names:
        s = load_suite(name)
        datasets = [s.dataset(dataset)] if dataset else list(s.datasets.values())
        counted, measured = [], []
        for ds in datasets:
            t = s.resolve_train(ds)
            counted.append(describe(s.backbone, t.adapter, t.rank, ds.classes, 0.0, "code", t.image_size))
            got = [
                r.trainable_params
                for r in entry.reads.runs(store, s.name, ds.name)
                if r.backbone == s.backbone and r.trainable_params
            ]
            if got:
                measured.append(mean(float(g) for g in got))
        ref = reference_table(s, "params")
        printed = [float(v) for v in ref[ref["suite"] == s.name]["params_m"]] if ref is not None else []
        records.append(
            {
                "suite": s.name,
                "backbone": s.backbone,
                "datasets": len(datasets),
                "code (M)": mean((c.adapter + c.head) / 1e6 for c in counted),
                "measured (M)": mean(measured) / 1e6 if len(measured) == len(datasets) else NAN,
                "paper (M)": printed[0] if printed and not dataset else NAN,
            }
        )
    notes = [
        "code (M): adapter + head parameters counted on the suite's backbone, adapter, rank and class count per "
        "dataset, as the authors' code builds them, averaged over the datasets",
        "measured (M): the trainable_params of finished phase-2 runs on the suite's backbone (NaN until every "
        "dataset has one); paper (M): the mean printed in the suite's Appendix D table",
        "the paper's printed means are smaller than what its code trains (e.g. VTAB-1k 1.81 M printed, 2.32 M "
        "counted); pacebench follows the code and shows both",
    ]
    return TableData(
        "Trainable parameters (M): code, measured, paper",
        pd.DataFrame(records),
        notes,
        formats={"datasets": "d", "code (M)": ".2f", "measured (M)": ".2f", "paper (M)": ".2f"},
    )
