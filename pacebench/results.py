"""Results out of the database as pandas DataFrames: one row per run, or one per epoch, ready for a notebook.

    import pacebench
    runs = pacebench.load_runs(db="sqlite:///results/pacebench.db", suite="demo")
    epochs = pacebench.load_epochs(runs=runs)
    predictions = pacebench.load_predictions(runs=runs)

Nested fields become flat columns: training settings `train.lr`, method hyperparameters `hp.lam`, data options
`data.shots`, metrics as they are (`test_acc`, `val_acc`, ...) with evaluation sets `eval.imagenet_r`, library
versions `version.torch`. Epoch frames carry each run's identity columns (key, suite, dataset, method, seed, phase,
backbone) beside the epoch's numbers; the gradient norm the optimizer saw is `grad_norm_step` there. Prediction
frames hold one row per (run, evaluation set, example) of each run's last evaluation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pacebench.errors import UsageError
from pacebench.settings import default_db_url
from pacebench.store import RunRecord, Storage, Store

RUN_IDENTITY = ["run_id", "key", "suite", "dataset", "method", "seed", "phase", "backbone", "status"]
FLAT = {"hparams": "train", "method_config": "hp", "data_options": "data", "versions": "version"}
EPOCH_NAMES = {"grad_norm_mean": "grad_norm_step", "grad_norm_max": "grad_norm_step_max"}


def _store(db: str | Storage | None) -> Storage:
    if db is None or isinstance(db, str):
        return Store(db or default_db_url(), readonly=True)
    return db


def _run_row(run: RunRecord) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for f in dataclasses.fields(RunRecord):
        value = getattr(run, f.name)
        if f.name in FLAT:
            row.update({f"{FLAT[f.name]}.{k}": v for k, v in sorted(value.items())})
        elif f.name == "metrics":
            evals = value.get("evals") or {}
            row.update({"eval_epoch" if k == "epoch" else k: v for k, v in value.items() if k != "evals"})
            row.update({f"eval.{k}": v for k, v in sorted(evals.items())})
        else:
            row["run_id" if f.name == "id" else f.name] = value
    return row


def load_runs(db: str | Storage | None = None, **filters: Any) -> pd.DataFrame:
    """One row per run (filters as in `Store.runs`: suite, dataset, method, phase, status, key, ...; a list means
    'any of'), hyperparameters, metrics and provenance as columns. `db` is a URL, a store, or None for the default
    database."""
    runs = _store(db).runs(**filters)
    frame = pd.DataFrame([_run_row(r) for r in runs])
    if frame.empty:
        return pd.DataFrame(columns=RUN_IDENTITY)
    return frame[RUN_IDENTITY + [c for c in frame.columns if c not in RUN_IDENTITY]]


def load_epochs(db: str | Storage | None = None, runs: pd.DataFrame | None = None, **filters: Any) -> pd.DataFrame:
    """One row per (run, epoch): the epoch's numbers (loss parts as `part.NAME`, evaluations as `eval.NAME`) beside
    its run's identity columns. `runs` (a frame from `load_runs`) picks the runs; else `filters` do."""
    store = _store(db)
    if runs is None:
        runs = load_runs(store, **filters)
    identity = runs[RUN_IDENTITY].set_index("run_id") if not runs.empty else pd.DataFrame()
    rows = []
    for e in store.epochs_of([int(i) for i in runs.get("run_id", [])]):
        row = {EPOCH_NAMES.get(k, k): v for k, v in dataclasses.asdict(e).items() if k not in ("parts", "evals")}
        row.update({f"part.{k}": v for k, v in sorted(e.parts.items())})
        row.update({f"eval.{k}": v for k, v in sorted(e.evals.items())})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=[*RUN_IDENTITY, "epoch"])
    frame = frame.join(identity, on="run_id")
    first = [*RUN_IDENTITY, "epoch"]
    return frame[first + [c for c in frame.columns if c not in first]]


PREDICTION_COLUMNS = ["eval_set", "example", "predicted", "target", "correct", "metric"]


def load_predictions(db: str | Storage | None = None, runs: pd.DataFrame | None = None, **filters: Any) -> pd.DataFrame:
    """One row per (run, evaluation set, example) of each run's last evaluation: the example's id (its image's
    path inside the image folder, or its index in the split), the predicted class / score / number, the gold one,
    whether it was right (empty for a regression) and the set's metric, beside the run's identity columns. Runs
    stored before predictions were kept have no rows. `runs` (a frame from `load_runs`) picks the runs; else
    `filters` do."""
    store = _store(db)
    if runs is None:
        runs = load_runs(store, **filters)
    ids = [int(i) for i in runs.get("run_id", [])]
    frames = [
        pd.DataFrame(
            {
                "run_id": run_id,
                "eval_set": eval_set,
                "example": list(p.ids),
                "predicted": p.predicted,
                "target": p.target,
                "correct": p.correct if p.correct is not None else None,
                "metric": p.metric,
            }
        )
        for (run_id, eval_set), p in sorted(store.predictions(ids).items())
    ]
    if not frames:
        return pd.DataFrame(columns=[*RUN_IDENTITY, *PREDICTION_COLUMNS])
    frame = pd.concat(frames, ignore_index=True).join(runs[RUN_IDENTITY].set_index("run_id"), on="run_id")
    return frame[[*RUN_IDENTITY, *PREDICTION_COLUMNS]]


EXPORT_FORMATS = ("csv", "parquet", "json")


def export(db: str | Storage | None, out: Path, fmt: str, **filters: Any) -> list[Path]:
    """Writes runs.FMT, epochs.FMT and predictions.FMT into the folder `out`; returns the paths. JSON is
    records-oriented, one object per row; parquet needs pyarrow (`pip install pacebench[parquet]`)."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError(
                "parquet export needs pyarrow: pip install 'pacebench[parquet]', or use --format csv"
            ) from None
    store = _store(db)
    runs = load_runs(store, **filters)
    frames = {"runs": runs, "epochs": load_epochs(store, runs=runs), "predictions": load_predictions(store, runs=runs)}
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in frames.items():
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "json":
            frame.to_json(path, orient="records", date_format="iso", indent=1)
        else:  # nested values (dicts) are stored as JSON text, which every parquet reader can hold
            flat = frame.map(lambda v: json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict | list) else v)
            flat.to_parquet(path, index=False)
        paths.append(path)
    return paths
