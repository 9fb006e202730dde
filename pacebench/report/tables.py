"""The paper's tables, each a pure gather step: store -> `TableData` (a title, a DataFrame, notes). Nothing draws here.

Every table reads only finished phase-2 runs (phase "final", status "done": trained on train+val, scored on test),
and never averages runs made on different weight files: each (backbone, weights sha256) gets its own rows. Runs an
earlier pacebench made before a change that alters their result (`runkey.is_current` is False) are left out, with a
note, rather than averaged with new ones.
Frames hold numbers (NaN where nothing was measured; the renderers print "–"); a column named in `TableData.pm`
has its standard deviation over seeds (ddof=1) in a sibling column, rendered as "mean ± std".

The paper's per-suite tables (Tables 1-4) are declared by the suite files (`[reference.report]`: name, number,
layout, the paper's row names, notes) and gathered by `paper_table`, so a new suite's table is that file alone.
A table over any suite (the demo summary, Table 6) is one function with a `@table(...)` line. `pacebench report
--table NAME` finds either kind by name or alias (`tables()`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pandas as pd

from pacebench.errors import PacebenchError
from pacebench.plan.runkey import is_current
from pacebench.plan.suites import PaperTable, Suite, all_suites, load_suite
from pacebench.registry import Registry
from pacebench.report.reference import group_means, reference_table
from pacebench.store import RunRecord, Storage

PHASE_NOTE = "phase-2 runs only (train+val -> test)"
ACC = ".2f"
NAN = math.nan


@dataclass
class TableData:
    """One gathered table: numbers in `frame`, what a reader must know in `notes`.

    `pm` maps a mean column to its std column ("mean ± std" when rendered); `formats` gives a column's format spec
    (default ".2f" for numbers).
    """

    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    pm: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)


Gather = Callable[..., TableData]


@dataclass(frozen=True)
class TableDef:
    name: str
    description: str
    gather: Gather
    aliases: tuple[str, ...] = ()


CODE_TABLES: list[TableDef] = []  # tables defined in code, over any suite (`@table`)


def table(name: str, description: str, aliases: tuple[str, ...] = ()) -> Callable[[Gather], Gather]:
    """Registers a gather function `(store, *, suite=None, dataset=None) -> TableData` under `name` and `aliases`."""

    def decorator(fn: Gather) -> Gather:
        CODE_TABLES.append(TableDef(name, description, fn, aliases))
        return fn

    return decorator


def tables() -> Registry[TableDef]:
    """Every table by name and alias: each suite file's paper table in the paper's order, then the code's tables.
    A name used twice (by two suite files, or a suite file and the code) is an error naming it."""
    found = Registry[TableDef]("table")
    declared = sorted(((s.name, s.paper_table) for s in all_suites().values() if s.paper_table is not None),
                      key=lambda item: item[1].number)
    entries = [TableDef(t.name, t.description, partial(paper_table, owner=owner), t.aliases) for owner, t in declared]
    for entry in [*entries, *CODE_TABLES]:
        for key in (entry.name, *entry.aliases):
            if key in found:
                raise PacebenchError(f"table name {key!r} is declared twice (suite files' [reference.report] and "
                                     "the @table functions); rename one")
            found.register(key)(entry)
    return found


def table_names() -> list[str]:
    """Canonical table names (aliases left out), in order."""
    return list(dict.fromkeys(entry.name for _, entry in tables().items()))


def gather(name: str, store: Storage, suite: str | None = None, dataset: str | None = None) -> TableData:
    """The table `name` (or an alias: "1", "vtab", "table1", ...) gathered from `store`."""
    data = tables().get(name).gather(store, suite=suite, dataset=dataset)
    outdated = [r for r in store.runs(phase="final", status="done", suite=suite) if not is_current(r)]
    if outdated:
        data.notes.append(f"{len(outdated)} finished run(s) made before a pacebench change that alters their "
                          "results are left out; run them again (their settings now give new run keys)")
    from pacebench.plan.protocol import excluded_points

    excluded = excluded_points(store.runs(phase="tune", suite=suite))
    if excluded:
        data.notes.append(f"{len(excluded)} phase-1 grid point(s) failed all their attempts and were left out of the "
                          "choice: " + "; ".join(excluded))
    return data


# ---- selecting and labelling runs (shared with figures.py) --------------------------------------------------------


def finished_runs(store: Storage, suite: str | None = None, dataset: str | None = None, phase: str = "final",
                  methods: Iterable[str] | None = None) -> list[RunRecord]:
    """Done runs of `phase` that today's code would still give the same key, optionally of one suite / dataset (a
    dataset alias means its canonical name; without a suite, in whichever suites define it)."""
    names: str | list[str] | None = dataset
    if suite is not None and dataset is not None:
        names = load_suite(suite).dataset(dataset).name
    elif dataset is not None:
        names = sorted({ds.name for s in all_suites().values() for ds in s.datasets.values()
                        if dataset in (ds.name, *ds.aliases)}) or dataset
    method_list = list(methods) if methods is not None else None
    runs = store.runs(phase=phase, status="done", suite=suite, dataset=names, method=method_list)
    return [r for r in runs if is_current(r)]


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def data_key(run: RunRecord) -> tuple[str, str, str]:
    return run.suite, run.dataset, dumps(run.data_options)


def data_label(run: RunRecord) -> str:
    options = "".join(f" {k}={v}" for k, v in sorted(run.data_options.items()))
    return f"{run.suite}/{run.dataset}{options}"


def weights_key(run: RunRecord) -> str:
    """Which pre-trained weights a run started from; runs with different keys are never averaged together."""
    return f"{run.backbone}@{run.weights_sha256[:8] or 'none'}"


def settings(run: RunRecord) -> dict[str, Any]:
    """A run's training settings and method hyperparameters in one flat dict."""
    return {**run.hparams, **run.method_config}


def setting_key(run: RunRecord) -> str:
    return dumps({"method_config": run.method_config, "train": run.hparams})


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def config_labels(runs: list[RunRecord], scope: Callable[[RunRecord], Any] = lambda r: r.method,
                  exclude: Iterable[str] = ()) -> dict[int, str]:
    """Per run id: the settings that differ between the runs of its scope ("lam=0.5 lr=0.001"), "" where all agree."""
    groups: dict[Any, list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[scope(run)].append(run)
    skip = set(exclude)
    labels = {}
    for members in groups.values():
        flat = {r.id: settings(r) for r in members}
        names = sorted(set().union(*flat.values()) - skip)
        varying = [n for n in names if len({dumps(f.get(n)) for f in flat.values()}) > 1]
        for rid, f in flat.items():
            labels[rid] = " ".join(f"{n}={_value(f.get(n))}" for n in varying)
    return labels


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: registration order (the baseline, PACE and the Table-6 ablations, the efficiency variants), then
    names no longer registered."""
    from pacebench.core.methods import METHODS

    order = METHODS.names()
    return (order.index(method) if method in order else len(order), method)


def weights_note(runs: list[RunRecord]) -> list[str]:
    keys = sorted({weights_key(r) for r in runs})
    if len(keys) < 2:
        return []
    return [f"runs on {len(keys)} different weight files ({', '.join(keys)}); each kept in its own rows, "
            "never averaged together"]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else NAN


def std(values: list[float]) -> float:
    """Sample standard deviation over seeds (ddof=1); NaN for fewer than two."""
    return statistics.stdev(values) if len(values) > 1 else NAN


def _metric(run: RunRecord, name: str) -> float | None:
    value = run.metrics.get(name)
    return None if value is None else float(value)


def one_setting(runs: list[RunRecord], where: str, notes: list[str]) -> list[RunRecord]:
    """The runs of one table cell that share one setting. A cell holding several settings (say two λ) keeps the one
    with the most seeds, then the most recently finished, and says so in `notes`: they are never averaged."""
    by_setting: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_setting[setting_key(run)].append(run)
    if len(by_setting) == 1:
        return runs
    chosen = max(by_setting.values(), key=lambda rs: (len(rs), max(r.finished_at or r.created_at for r in rs)))
    label = config_labels(runs, scope=lambda r: 0)[chosen[0].id]
    notes.append(f"{where}: {len(by_setting)} settings in the store; showing the one with most seeds ({label})")
    return chosen


def sort_rows(frame: pd.DataFrame, key: Callable[[pd.Series], Any]) -> pd.DataFrame:
    """The frame's rows ordered by `key(row)`, renumbered from 0."""
    if frame.empty:
        return frame
    keys = [key(r) for _, r in frame.iterrows()]
    return frame.iloc[sorted(range(len(frame)), key=keys.__getitem__)].reset_index(drop=True)


# ---- paper-shaped tables: methods x columns --------------------------------------------------------------------

Summary = Callable[[dict[str, float]], dict[str, float]]  # a row's values -> its summary columns (means)


def _paper_rows(suite: Suite, labels: Mapping[str, str], columns: list[str], summary: Summary
                ) -> list[dict[str, Any]]:
    """The reference CSV's rows `labels` (method -> paper row name), with our summary columns filled in from them
    unless the paper prints its own (its "mean" is kept as printed)."""
    ref = reference_table(suite)
    if ref is None:
        return []
    rows = []
    for method, paper_name in labels.items():
        match = ref[ref["method"] == paper_name]
        if match.empty:
            continue
        values = {c: float(match.iloc[0][c]) for c in columns if c in match.columns}
        row = {**summary(values), **values}
        if "mean" in match.columns:
            row["mean"] = float(match.iloc[0]["mean"])
        rows.append({"method": method, "source": f"paper ({paper_name})", "weights": "", "seeds": NAN, **row})
    return rows


def _wide_table(title: str, suite: Suite, runs: list[RunRecord], columns: list[str],
                values: Callable[[RunRecord], dict[str, float]], summary: Summary, paper: Mapping[str, str],
                notes: list[str]) -> TableData:
    """Rows = (weights, method), columns = `columns` (mean over seeds of `values(run)`), then `summary(row)`."""
    known = [r for r in runs if r.dataset in suite.datasets]
    if len(known) < len(runs):
        notes.append(f"{len(runs) - len(known)} runs on datasets not in suite {suite.name} left out")
    cells: dict[tuple[str, str, tuple[str, str, str]], list[RunRecord]] = defaultdict(list)
    for run in known:
        cells[(weights_key(run), run.method, data_key(run))].append(run)
    rows: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[tuple[str, str], list[int]] = defaultdict(list)
    for (wkey, method, _), members in cells.items():
        members = one_setting(members, f"{data_label(members[0])} {method}", notes)
        seeds[(wkey, method)].append(len(members))
        for run in members:
            for col, v in values(run).items():
                rows[(wkey, method)][col].append(v)
    records = []
    for (wkey, method), by_col in rows.items():
        row = {c: mean(by_col.get(c, [])) for c in columns}
        records.append({"method": method, "source": "measured", "weights": wkey, "seeds": min(seeds[(wkey, method)]),
                        **row, **summary(row)})
    records += _paper_rows(suite, paper, columns, summary)
    if not known:
        notes.append(f"no finished phase-final runs of suite {suite.name} yet; run `pacebench run {suite.name}`")
    summary_cols = list(summary({c: NAN for c in columns}))
    frame = pd.DataFrame(records, columns=["method", "source", "weights", "seeds", *columns, *summary_cols])
    frame = sort_rows(frame, lambda r: (method_rank(r["method"]), r["source"] != "measured", r["weights"]))
    if len(set(frame.loc[frame.source == "measured", "weights"])) <= 1:
        frame = frame.drop(columns="weights")
    notes[:0] = [PHASE_NOTE, *weights_note(known)]
    return TableData(title, frame, notes, formats={"seeds": "d"})


def _test_acc(run: RunRecord) -> dict[str, float]:
    acc = _metric(run, "test_acc")
    return {} if acc is None else {run.dataset: acc}


def _suite_summary(suite: Suite) -> Summary:
    """Group means (when the suite has groups) and the paper's mean of the group means (NaN if any is missing)."""

    def summary(values: dict[str, float]) -> dict[str, float]:
        groups = group_means({k: v for k, v in values.items() if not math.isnan(v)}, suite)
        out = {} if list(groups) == [""] else dict(groups)
        out["mean"] = mean(list(groups.values()))
        return out

    return summary


def _evals(columns: tuple[str, ...]) -> Callable[[RunRecord], dict[str, float]]:
    def values(run: RunRecord) -> dict[str, float]:
        evals = run.metrics.get("evals") or {}
        return {k: float(evals[k]) for k in columns if evals.get(k) is not None}

    return values


def _plain_mean(values: dict[str, float]) -> dict[str, float]:
    return {"mean": mean(list(values.values()))}  # NaN in -> NaN out: a partial row gets no mean


def paper_table(store: Storage, suite: str | None = None, dataset: str | None = None, *, owner: str) -> TableData:
    """A suite's paper table, laid out as its file's [reference.report] says, from the runs of `suite` (default: the
    suite that declares the table)."""
    s = load_suite(suite or owner)
    layout = s.paper_table or load_suite(owner).paper_table
    assert layout is not None
    title = f"Table {layout.number}: {s.description}"
    runs = finished_runs(store, s.name, dataset)
    if layout.layout == "shots":
        return _shots_table(title, s, layout, runs)
    notes = list(layout.notes)
    if layout.layout == "evals":
        return _wide_table(title, s, runs, list(layout.columns), _evals(layout.columns), _plain_mean, layout.rows,
                           notes)
    return _wide_table(title, s, runs, list(s.datasets), _test_acc, _suite_summary(s), layout.rows, notes)


def _shots_table(title: str, s: Suite, layout: PaperTable, runs: list[RunRecord]) -> TableData:
    """Rows = (dataset, weights, method) and the datasets' average, columns = shots (few-shot, Table 2)."""
    runs = [r for r in runs if r.dataset in s.datasets]
    notes: list[str] = []
    shots = sorted({int(k) for ds in s.datasets.values() for k in ds.options.get("shots", [])})
    columns = [f"{k}-shot" for k in shots]
    # cell (weights, method, dataset, shots): mean over training seeds per split seed, then over split seeds
    per_split: dict[tuple[str, str, str, int], list[float]] = defaultdict(list)
    seeds: dict[tuple[str, str], list[int]] = defaultdict(list)
    cells: dict[tuple[str, str, tuple[str, str, str]], list[RunRecord]] = defaultdict(list)
    for run in runs:
        cells[(weights_key(run), run.method, data_key(run))].append(run)
    for (wkey, method, _), members in cells.items():
        members = one_setting(members, f"{data_label(members[0])} {method}", notes)
        accs = [a for a in (_metric(r, "test_acc") for r in members) if a is not None]
        if accs and "shots" in members[0].data_options:
            per_split[(wkey, method, members[0].dataset, int(members[0].data_options["shots"]))].append(mean(accs))
            seeds[(wkey, method)].append(len(accs))
    values: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for (wkey, method, ds, k), split_means in per_split.items():
        values[(wkey, method, ds)][f"{k}-shot"] = mean(split_means)
    records = []
    for wkey, method in seeds:
        per_ds = {ds: {c: values.get((wkey, method, ds), {}).get(c, NAN) for c in columns} for ds in s.datasets}
        per_ds["average"] = {c: mean([per_ds[ds][c] for ds in s.datasets]) for c in columns}
        for ds, row in per_ds.items():
            records.append({"dataset": ds, "method": method, "source": "measured", "weights": wkey,
                            "seeds": min(seeds[(wkey, method)]), **row})
    ref = reference_table(s)
    if ref is not None:
        for method, paper_name in layout.rows.items():
            rows = ref[ref["method"] == paper_name]
            for ds in [*s.datasets, "average"]:
                got = rows[rows["dataset"] == ds]
                row = {f"{int(k)}-shot": float(v) for k, v in zip(got["shots"], got["top1"], strict=True)}
                records.append({"dataset": ds, "method": method, "source": f"paper ({paper_name})", "weights": "",
                                "seeds": NAN, **{c: row.get(c, NAN) for c in columns}})
    frame = pd.DataFrame(records, columns=["dataset", "method", "source", "weights", "seeds", *columns])
    order = {ds: i for i, ds in enumerate([*s.datasets, "average"])}
    frame = sort_rows(frame, lambda r: (order[r["dataset"]], method_rank(r["method"]), r["source"] != "measured",
                                        r["weights"]))
    if len(set(frame.loc[frame.source == "measured", "weights"])) <= 1:
        frame = frame.drop(columns="weights")
    if not runs:
        notes.append(f"no finished phase-final runs of suite {s.name} yet; run `pacebench run {s.name}`")
    notes[:0] = [PHASE_NOTE, *weights_note(runs), *layout.notes]
    return TableData(title, frame, notes, formats={"seeds": "d"})


# ---- per-method summaries: demo and Table 6 ---------------------------------------------------------------------


def _final_grad_norms(store: Storage, runs: list[RunRecord]) -> dict[int, float]:
    """Per run: grad_norm_mean of its last epoch."""
    last: dict[int, float] = {}
    for e in store.epochs_of([r.id for r in runs]):  # ordered by epoch, so the last one wins
        if e.run_id is not None and e.grad_norm_mean is not None:
            last[e.run_id] = e.grad_norm_mean
    return last


# Fig. 2's readings a finished run keeps in its metrics (at its last evaluation), by the column that shows them
READING_COLUMNS = {"grad norm task (test)": "grad_norm_task_heldout", "grad norm task (train)": "grad_norm_task_train",
                   "FP-distance (test)": "fp_distance_heldout", "FP-distance (train)": "fp_distance"}


def _summary_rows(store: Storage, runs: list[RunRecord], notes: list[str], keep_runs: bool = False) -> pd.DataFrame:
    """One row per (data, weights, method, setting): seeds, test/train accuracy, gap, grad norm, FP-distance; with
    `keep_runs` a column "_run" holds one run of the row (for callers that add columns from it)."""
    groups: dict[tuple[Any, ...], list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[(data_key(run), weights_key(run), run.method, setting_key(run))].append(run)
    labels = config_labels(runs, scope=lambda r: (data_key(r), r.method))
    grad = _final_grad_norms(store, runs)
    records = []
    for (_, wkey, method, _), members in groups.items():
        test = [a for a in (_metric(r, "test_acc") for r in members) if a is not None]
        train = [a for a in (_metric(r, "train_acc") for r in members) if a is not None]
        readings = {column: mean([a for a in (_metric(r, key) for r in members) if a is not None])
                    for column, key in READING_COLUMNS.items()}
        records.append({
            "data": data_label(members[0]), "method": method, "config": labels[members[0].id], "weights": wkey,
            "seeds": len(members), "test acc": mean(test), "test acc std": std(test), "train acc": mean(train),
            "gap (train - test)": mean(train) - mean(test),
            "grad norm step (train)": mean([grad[r.id] for r in members if r.id in grad]), **readings,
            "_run": members[0],
        })
    frame = sort_rows(pd.DataFrame(records), lambda r: (r["data"], method_rank(r["method"]), r["config"],
                                                        r["weights"]))
    for col, keep in (("data", frame["data"].nunique() > 1), ("config", (frame["config"] != "").any()),
                      ("weights", frame["weights"].nunique() > 1), ("_run", keep_runs)):
        if not keep:
            frame = frame.drop(columns=col)
    notes[:0] = [PHASE_NOTE, *weights_note(runs)]
    return frame


SUMMARY_FORMATS = {"seeds": "d", "grad norm step (train)": ".4g", **{c: ".4g" for c in READING_COLUMNS}}
READINGS_NOTE = ("grad norm step (train): the whole training objective's gradient at each optimizer step (noise, "
                 "DropPath, regulariser included), mean over the last epoch's steps; grad norm task: the "
                 "cross-entropy gradient of the clean model (the paper's Fig. 2a reading), mean over mini-batches of "
                 "the named split; FP-distance: paper Eq. 5 on the named split; all at the last evaluation, mean "
                 "over seeds")


@table("demo", "Per method: seeds, test accuracy (mean ± std), train accuracy, gap, final grad norm, FP-distance")
def demo_table(store: Storage, suite: str | None = None, dataset: str | None = None) -> TableData:
    name = suite or "demo"
    runs = finished_runs(store, name, dataset)
    if not runs:
        raise PacebenchError(f"no finished phase-final runs for suite {name}; run `pacebench run {name}` first")
    notes: list[str] = []
    frame = _summary_rows(store, runs, notes)
    notes += [READINGS_NOTE, "train accuracy at the last evaluation; std over seeds (ddof=1)"]
    where = data_label(runs[0]) if len({data_key(r) for r in runs}) == 1 else f"suite {name}"
    return TableData(f"Per-method summary: {where}", frame, notes, pm={"test acc": "test acc std"},
                     formats=SUMMARY_FORMATS)


def _table6_mode(run: RunRecord) -> str:
    from pacebench.core.methods import method_grid

    if run.origin != "tune":
        return "defaults (not tuned)"
    return "tuned" if method_grid(run.method) else "defaults (no grid to search)"


def _table6_values(run: RunRecord) -> str:
    """The run's values of its method's searched hyperparameters ("lam=1 sigma=1.2"); "–" for a method without any."""
    from pacebench.core.methods import method_grid

    names = sorted(method_grid(run.method))
    return " ".join(f"{n}={_value(run.method_config.get(n))}" for n in names) or "–"


PAPER_TABLE6 = "paper (Table 6)"


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


@table("ablations", "Table 6: the ablations on one dataset, measured mean ± std, the paper's column beside",
       aliases=("6", "table6"))
def ablations_table(store: Storage, suite: str | None = None, dataset: str | None = None) -> TableData:
    from pacebench.core.methods import ABLATIONS, paper_rows

    runs = finished_runs(store, suite, dataset, methods=ABLATIONS)
    if not runs:
        where = "/".join(x for x in (suite, dataset) if x)
        raise PacebenchError(f"no finished phase-final runs of the Table-6 methods{f' for {where}' if where else ''}; "
                             f"run `pacebench ablate {dataset or 'cifar'} --suite {suite or 'vtab'}` first "
                             "(offline: `pacebench ablate digits --suite demo`)")
    notes: list[str] = []
    frame = _summary_rows(store, runs, notes, keep_runs=True)
    frame = frame.drop(columns=[c for c in ("train acc", "gap (train - test)", "config") if c in frame.columns])
    frame.insert(frame.columns.get_loc("seeds"), "mode", [_table6_mode(r) for r in frame["_run"]])
    frame.insert(frame.columns.get_loc("seeds"), "chosen", [_table6_values(r) for r in frame["_run"]])
    frame = frame.drop(columns="_run")
    notes += ["mode: 'tuned' rows are phase-2 winners of `pacebench ablate` (each method's search grid on train -> "
              "val, the best retrained on train+val -> test); 'defaults (not tuned)' rows come from `ablate "
              "--no-tune` or `run`; chosen: the row's values of the method's searched hyperparameters"]
    paper = _paper_ablations(runs)
    if paper:
        rows = paper_rows()
        labels = frame["data"] if "data" in frame.columns else [data_label(runs[0])] * len(frame)
        frame[PAPER_TABLE6] = [paper[label][0].get(rows.get(m, ""), NAN) if label in paper else NAN
                               for m, label in zip(frame["method"], labels, strict=True)]
        for label, (_, column) in sorted(paper.items()):
            notes.append(f"{PAPER_TABLE6} beside {label}: Table 6's {column} column (LoRA+VPT baseline, mean of "
                         "three seeds)")
    where = data_label(runs[0]) if len({data_key(r) for r in runs}) == 1 else "several datasets"
    return TableData(f"Table 6: ablations on {where}", frame, notes, pm={"test acc": "test acc std"},
                     formats=SUMMARY_FORMATS)


# ---- Table 5: other backbones -----------------------------------------------------------------------------------

def _domain_targets() -> tuple[str, ...]:
    """Table 5's ImageNet columns: the domain suite's evaluation sets, as its [reference.report] names them."""
    layout = load_suite("domain").paper_table
    return layout.columns if layout is not None else ()


PAPER_ADAPTERS = {"lora_add": "LoRA_add", "vpt_add": "VPT_add", "lora_mul": "LoRA_mul",
                  "lora_add+vpt_add": "LoRA_add+VPT_add", "lora_mul+vpt_add": "LoRA_mul+VPT_add"}
PAPER_BACKBONES = {"swin_b_in22k": "swin_b_in21k"}  # the paper calls Microsoft's Swin-B 22k release "ImageNet-21K"


def table5_label(run: RunRecord) -> str:
    """A run's row name in Table 5's terms: the baseline by its adapter, PACE as "+PACE" on the LoRA+VPT adapter."""
    adapter = PAPER_ADAPTERS.get(run.adapter, run.adapter)
    if run.method == "baseline":
        return adapter
    return "+PACE" if run.method == "pace" and adapter == "LoRA_mul+VPT_add" else f"+{run.method} ({adapter})"


def _table5_values(run: RunRecord) -> dict[str, float]:
    if run.suite == "domain":
        return _evals(_domain_targets())(run)
    acc = _metric(run, "test_acc")
    return {} if acc is None or run.dataset != "cifar" else {"cifar100": acc}


@table("backbones", "Table 5: other backbones (ViT-B IN-21k, ViT-B LAION-2B->IN-12k, Swin-B) on CIFAR-100 and "
       "domain adaptation", aliases=("5", "table5"))
def backbones_table(store: Storage, suite: str | None = None, dataset: str | None = None) -> TableData:
    """Rows (backbone, method) from phase-2 runs of vtab/cifar and of the domain suite; the paper's rows of the same
    backbone and method beside (all three backbones' LoRA+VPT and +PACE while nothing is measured)."""
    runs = [r for r in finished_runs(store, "vtab", "cifar") + finished_runs(store, "domain")
            if suite in (None, r.suite)]
    targets = _domain_targets()
    columns = ("cifar100", *targets)
    notes: list[str] = []
    cells: dict[tuple[str, str, str, str], list[RunRecord]] = defaultdict(list)
    for run in runs:
        cells[(run.backbone, weights_key(run), table5_label(run), run.suite)].append(run)
    values: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for (backbone, wkey, label, _), members in cells.items():
        members = one_setting(members, f"{data_label(members[0])} {label} on {wkey}", notes)
        seeds[(backbone, wkey, label)].append(len(members))
        for run in members:
            for col, v in _table5_values(run).items():
                values[(backbone, wkey, label)][col].append(v)
    records = [{"backbone": backbone, "method": label, "source": "measured", "weights": wkey,
                "seeds": min(seeds[(backbone, wkey, label)]), **{c: mean(cols.get(c, [])) for c in columns}}
               for (backbone, wkey, label), cols in values.items()]
    ref = reference_table(load_suite("vtab"), "backbones")
    if ref is not None:
        wanted = ({(PAPER_BACKBONES.get(b, b), label) for b, _, label in values} or
                  {(b, label) for b in ref["backbone"] for label in ("LoRA_mul+VPT_add", "+PACE")})
        for _, paper in ref.iterrows():
            if (paper["backbone"], paper["method"]) in wanted:
                ours = {v: k for k, v in PAPER_BACKBONES.items()}.get(paper["backbone"], paper["backbone"])
                records.append({"backbone": ours, "method": paper["method"], "source": "paper", "weights": "",
                                "seeds": NAN, "cifar100": float(paper["cifar100_vtab"]),
                                **{c: float(paper[c]) for c in targets}})
    frame = pd.DataFrame(records, columns=["backbone", "method", "source", "weights", "seeds", *columns])
    order = {label: i for i, label in enumerate([*PAPER_ADAPTERS.values(), "+PACE"])}
    frame = sort_rows(frame, lambda r: (r["backbone"], order.get(r["method"], len(order)), r["method"],
                                        r["source"] != "measured", r["weights"]))
    if len(set(frame.loc[frame.source == "measured", "weights"])) <= 1:
        frame = frame.drop(columns="weights")
    if not runs:
        notes.append("no finished phase-final runs of vtab/cifar or the domain suite yet; e.g. `pacebench run vtab "
                     "--datasets cifar --backbone swin_b_in22k` and `pacebench run domain --backbone swin_b_in22k`")
    notes[:0] = [PHASE_NOTE, *weights_note(runs),
                 "cifar100: vtab/cifar test accuracy; imagenet*: the domain suite's targets (one run scores all "
                 "five); mean over seeds", "paper rows: Table 5, for the backbones and methods measured here"]
    return TableData("Table 5: other backbones, CIFAR-100 (VTAB-1k) and domain adaptation", frame, notes,
                     formats={"seeds": "d"})


# ---- trainable parameters: counted from the code, measured in runs, printed in the paper -------------------------


@table("params", "Trainable parameters (M) per suite: counted on the suite's settings, measured in finished runs, "
       "and the paper's printed 'params (M)'", aliases=("parameters",))
def params_table(store: Storage, suite: str | None = None, dataset: str | None = None) -> TableData:
    from pacebench.core.footprint import describe

    names = [suite] if suite else [n for n, s in all_suites().items() if s.reference.get("params")]
    records = []
    for name in names:
        s = load_suite(name)
        datasets = [s.dataset(dataset)] if dataset else list(s.datasets.values())
        counted, measured = [], []
        for ds in datasets:
            t = s.resolve_train(ds)
            counted.append(describe(s.backbone, t.adapter, t.rank, ds.classes, 0.0, "code", t.image_size))
            got = [r.trainable_params for r in finished_runs(store, s.name, ds.name)
                   if r.backbone == s.backbone and r.trainable_params]
            if got:
                measured.append(mean([float(g) for g in got]))
        ref = reference_table(s, "params")
        printed = [float(v) for v in ref[ref["suite"] == s.name]["params_m"]] if ref is not None else []
        records.append({
            "suite": s.name, "backbone": s.backbone, "datasets": len(datasets),
            "code (M)": mean([(c.adapter + c.head) / 1e6 for c in counted]),
            "measured (M)": mean(measured) / 1e6 if len(measured) == len(datasets) else NAN,
            "paper (M)": printed[0] if printed and not dataset else NAN,
        })
    notes = ["code (M): adapter + head parameters counted on the suite's backbone, adapter, rank and class count per "
             "dataset, as the authors' code builds them, averaged over the datasets",
             "measured (M): the trainable_params of finished phase-2 runs on the suite's backbone (NaN until every "
             "dataset has one); paper (M): the mean printed in the suite's Appendix D table",
             "the paper's printed means are smaller than what its code trains (e.g. VTAB-1k 1.81 M printed, 2.32 M "
             "counted); pacebench follows the code and shows both"]
    return TableData("Trainable parameters (M): code, measured, paper", pd.DataFrame(records), notes,
                     formats={"datasets": "d", "code (M)": ".2f", "measured (M)": ".2f", "paper (M)": ".2f"})


SPEED_FORMATS = {"ms/step": ".1f", "images/s": ".0f", "GFLOP/step": ".1f", "time ratio": ".2f", "FLOP ratio": ".2f",
                 "time/FLOP": ".2f", "peak MiB": ".0f", "MFU %": ".1f", "batch": "d", "px": "d"}


@table("speed", "`pacebench bench` measurements: ms/step, images/s, FLOP and time ratios to the baseline, MFU")
def speed_table(store: Storage, suite: str | None = None, dataset: str | None = None) -> TableData:
    rows = store.speed()
    if not rows:
        raise PacebenchError("no speed measurements stored; run `pacebench bench` first")
    frame = pd.DataFrame([{
        "when": r["created_at"].strftime("%Y-%m-%d %H:%M"), "device": r["device_name"],
        "backbone": r["backbone"], "precision": r["precision"] + (" compiled" if r["compile"] else "")
        + ("" if r.get("paths", "fast") == "fast" else f", {r['paths']} paths"),
        "batch": r["batch"], "px": r["image_size"], "method": r["method"], "ms/step": r["ms_per_step"],
        "images/s": r["images_per_s"], "GFLOP/step": r["gflop_per_step"], "time ratio": r["time_ratio"],
        "FLOP ratio": r["flop_ratio"], "time/FLOP": r["time_ratio"] / r["flop_ratio"],
        "peak MiB": NAN if r["peak_mib"] is None else r["peak_mib"],
        "MFU %": NAN if r["mfu"] is None else 100 * r["mfu"],
    } for r in rows])
    versions = sorted({f"torch {r['versions'].get('torch', '?')}, timm {r['versions'].get('timm', '?')}"
                       for r in rows})
    notes = ["ratios are to the first method of the same measurement (the baseline); time/FLOP = time ratio / FLOP "
             "ratio, 1.0 when a method costs exactly what its FLOPs predict",
             "peak memory and MFU are measured on CUDA only; MFU = counted FLOPs/s over the GPU's dense peak",
             f"versions: {'; '.join(versions)}"]
    return TableData("Training-step speed (`pacebench bench`)", frame, notes, formats=SPEED_FORMATS)
