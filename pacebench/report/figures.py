"""The paper's figures: each a pure gather step (store -> long DataFrame, tested without drawing) and a draw step.

A figure shows one data set (suite, dataset, data options) from one phase: curves from different data are never
overlaid. Each line is one method (plus the settings that differ between its runs, plus the weights when runs on
several weight files match); across seeds it is the mean, with a min–max band. The frame's `attrs["data"]` says
which runs were drawn and goes into the title. matplotlib is imported only when drawing, and draws off-screen (Agg).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pacebench.errors import PacebenchError, UsageError
from pacebench.registry import Registry
from pacebench.report.tables import config_labels, data_label, finished_runs, method_rank, weights_key
from pacebench.store import EpochRecord, RunRecord, Store

SPREAD = ["mean", "std", "min", "max", "n"]


@dataclass(frozen=True)
class FigureDef:
    name: str
    title: str
    gather: Callable[..., pd.DataFrame]
    draw: Callable[[pd.DataFrame, Any], None]  # (frame, matplotlib Axes)


FIGURES: Registry[FigureDef] = Registry("figure")


# ---- gather ---------------------------------------------------------------------------------------------------


def select_runs(store: Store, suite: str | None = None, dataset: str | None = None, phase: str = "final",
                options: dict[str, Any] | None = None, methods: list[str] | None = None) -> list[RunRecord]:
    """Done runs of one data set. Raises PacebenchError when none match, or when several data sets do."""
    runs = finished_runs(store, suite, dataset, phase, methods)
    if options:
        runs = [r for r in runs if all(r.data_options.get(k) == v for k, v in options.items())]
    if not runs:
        where = "/".join(x for x in (suite, dataset) if x)
        which = f" of {', '.join(methods)}" if methods else ""
        raise PacebenchError(f"no finished {phase}-phase runs{which}{f' for {where}' if where else ''}; "
                             f"run `pacebench run {suite or 'demo'}` first")
    datas = sorted({data_label(r) for r in runs})
    if len(datas) > 1:
        shown = ", ".join(datas[:4]) + (", ..." if len(datas) > 4 else "")
        raise PacebenchError(f"runs of {len(datas)} data sets match ({shown}); a figure shows one: choose it with "
                             "--suite and --dataset (and shots / split seed where the suite has them)")
    return runs


def series_labels(runs: list[RunRecord], exclude: tuple[str, ...] = ()) -> dict[int, str]:
    """Per run id: "method", plus its differing settings, plus its weights when several weight files match."""
    configs = config_labels(runs, exclude=exclude)
    several = len({weights_key(r) for r in runs}) > 1
    return {r.id: " ".join(x for x in (r.method, configs[r.id], f"[{weights_key(r)}]" if several else "") if x)
            for r in runs}


def _describe(runs: list[RunRecord], phase: str) -> str:
    weights = sorted({weights_key(r) for r in runs})
    return (f"{data_label(runs[0])}, phase {phase}, {len(runs)} runs, "
            f"{'weights ' + weights[0] if len(weights) == 1 else f'{len(weights)} weight files'}")


def _spread(rows: list[dict[str, Any]], by: list[str], runs: list[RunRecord], phase: str, what: str) -> pd.DataFrame:
    """Mean, std (ddof=1), min, max and count of `value` over seeds, per `by`."""
    if not rows:
        raise PacebenchError(f"the matching runs ({_describe(runs, phase)}) logged no {what}")
    frame = (pd.DataFrame(rows).groupby(by, sort=True, dropna=False)["value"]
             .agg(mean="mean", std="std", min="min", max="max", n="count").reset_index())
    frame.attrs["data"] = _describe(runs, phase)
    return frame


def _per_epoch(store: Store, runs: list[RunRecord], phase: str, what: str,
               values: Callable[[RunRecord, EpochRecord], dict[str, float | None]]) -> pd.DataFrame:
    labels = series_labels(runs)
    by_id = {r.id: r for r in runs}
    rows = [{"series": labels[e.run_id], "method": by_id[e.run_id].method, "metric": metric, "epoch": e.epoch,
             "value": v}
            for e in store.epochs_of(list(by_id)) if e.run_id is not None
            for metric, v in values(by_id[e.run_id], e).items() if v is not None]
    return _spread(rows, ["series", "method", "metric", "epoch"], runs, phase, what)


def grad_norm_data(store: Store, suite: str | None = None, dataset: str | None = None, phase: str = "final",
                   options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per series and epoch: the epoch's mean gradient norm (grad_norm_mean), spread over seeds."""
    runs = select_runs(store, suite, dataset, phase, options)
    return _per_epoch(store, runs, phase, "gradient norms", lambda r, e: {"grad norm": e.grad_norm_mean})


def fp_distance_data(store: Store, suite: str | None = None, dataset: str | None = None, phase: str = "final",
                     options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per series and evaluation epoch: the FP-distance to the pre-trained model, spread over seeds."""
    runs = select_runs(store, suite, dataset, phase, options)
    return _per_epoch(store, runs, phase, "FP-distance", lambda r, e: {"FP-distance": e.fp_distance})


def accuracy_data(store: Store, suite: str | None = None, dataset: str | None = None, phase: str = "final",
                  options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per series and epoch: train accuracy (every epoch) and the held-out accuracy (evaluation epochs; test in
    phase final, val in phase tune), spread over seeds. Their distance is Fig. 2c's generalisation gap."""
    runs = select_runs(store, suite, dataset, phase, options)
    held_out = "test acc" if phase == "final" else "val acc"
    return _per_epoch(store, runs, phase, "accuracies", lambda r, e: {
        "train acc": e.train_acc, held_out: e.test_acc if phase == "final" else e.val_acc})


SWEPT = ["pace", "fpa"]


def lambda_sweep_data(store: Store, suite: str | None = None, dataset: str | None = None, phase: str | None = None,
                      options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Fig. 4: per series and λ, the gradient norm averaged over all epochs of a run, spread over seeds.

    Only pace and fpa are swept; finished baseline runs of the same data come as rows with λ = NaN (a reference
    line). `phase` None takes the tune phase when it has pace/fpa runs (`pacebench tune --grid lam=...` makes them),
    else the final phase.
    """
    if phase is None:
        phase = "tune" if finished_runs(store, suite, dataset, "tune", SWEPT) else "final"
    runs = select_runs(store, suite, dataset, phase, options, methods=[*SWEPT, "baseline"])
    if not any(r.method in SWEPT for r in runs):
        raise PacebenchError(f"no finished {phase}-phase runs of pace or fpa for {data_label(runs[0])}; run e.g. "
                             f"`pacebench tune {runs[0].suite} --methods pace,fpa --grid lam=0.01,0.1,1,10` first")
    labels = series_labels(runs, exclude=("lam",))
    grad: dict[int, list[float]] = {}
    for e in store.epochs_of([r.id for r in runs]):
        if e.run_id is not None and e.grad_norm_mean is not None:
            grad.setdefault(e.run_id, []).append(e.grad_norm_mean)
    rows = [{"series": labels[r.id], "method": r.method, "lam": float(r.method_config.get("lam", math.nan)),
             "value": sum(grad[r.id]) / len(grad[r.id])} for r in runs if r.id in grad]
    frame = _spread(rows, ["series", "method", "lam"], runs, phase, "gradient norms")
    return frame


# ---- draw -----------------------------------------------------------------------------------------------------


def _series_order(frame: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = frame[["series", "method"]].drop_duplicates().itertuples(index=False)
    return sorted(((s, m) for s, m in pairs), key=lambda p: (method_rank(p[1]), p[0]))


def _curve(ax: Any, part: pd.DataFrame, x: str, label: str, color: Any, style: str = "-") -> None:
    part = part.sort_values(x)
    ax.plot(part[x], part["mean"], style, color=color, label=label, marker="o" if len(part) < 15 else None, ms=3)
    if (part["n"] > 1).any():
        ax.fill_between(part[x], part["min"], part["max"], color=color, alpha=0.15, linewidth=0)


def _draw_per_epoch(ylabel: str, log_if_wide: bool = False) -> Callable[[pd.DataFrame, Any], None]:
    def draw(frame: pd.DataFrame, ax: Any) -> None:
        styles = dict(zip(sorted(frame["metric"].unique(), key=lambda m: m != "train acc"), ["-", "--", ":"],
                          strict=False))
        for i, (series, method) in enumerate(_series_order(frame)):
            for metric, style in styles.items():
                part = frame[(frame.series == series) & (frame.method == method) & (frame.metric == metric)]
                if not part.empty:
                    label = series if len(styles) == 1 else f"{series}: {metric}"
                    _curve(ax, part, "epoch", label, f"C{i % 10}", style)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        low, high = frame["mean"].min(), frame["mean"].max()
        if log_if_wide and low > 0 and high / low > 20:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)

    return draw


def _draw_lambda_sweep(frame: pd.DataFrame, ax: Any) -> None:
    for i, (series, method) in enumerate(_series_order(frame)):
        part = frame[(frame.series == series) & (frame.method == method)]
        swept = part[part["lam"].notna()]
        if not swept.empty:
            _curve(ax, swept, "lam", series, f"C{i % 10}")
        else:  # the baseline: no λ, a horizontal reference line
            ax.axhline(float(part["mean"].mean()), color=f"C{i % 10}", linestyle="--", label=series)
    ax.set_xscale("log")
    ax.set_xlabel("λ")
    ax.set_ylabel("gradient norm (mean over training)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


for _fig in (
    FigureDef("grad-norm", "Gradient norm per epoch (Fig. 2a)", grad_norm_data,
              _draw_per_epoch("gradient norm (epoch mean)", log_if_wide=True)),
    FigureDef("fp-distance", "FP-distance per evaluation epoch (Fig. 2b)", fp_distance_data,
              _draw_per_epoch("FP-distance to the pre-trained model")),
    FigureDef("accuracy", "Train vs held-out accuracy per epoch (Fig. 2c)", accuracy_data,
              _draw_per_epoch("accuracy (%)")),
    FigureDef("lambda-sweep", "Gradient norm vs λ (Fig. 4)", lambda_sweep_data, _draw_lambda_sweep),
):
    FIGURES.register(_fig.name)(_fig)


FIGURE_FORMATS = ("png", "pdf", "svg")


def plot(name: str, store: Store, out: Path, **filters: Any) -> Path:
    """Gathers figure `name` from `store` (filters: suite, dataset, phase, options) and writes it at 150 dpi in the
    format its suffix names (png, pdf, svg; any other is refused rather than written as PNG under a wrong name).

    `out` is the file, or a folder to write NAME.png into. Returns the path written.
    """
    out = Path(out)
    if out.is_dir() or not out.suffix:
        out = out / f"{name}.png"
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise UsageError(f"cannot write a figure as {out.suffix!r} ({out}); name the file .png, .pdf or .svg")
    entry = FIGURES.get(name)
    frame = entry.gather(store, **{k: v for k, v in filters.items() if v is not None})
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # off-screen; no pyplot, so no global state
    from matplotlib.figure import Figure

    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    entry.draw(frame, ax)
    ax.set_title(f"{entry.title}\n{frame.attrs.get('data', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=150, format=fmt)
    return out
