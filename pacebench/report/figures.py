"""The paper's figures: each a pure gather step (store -> long DataFrame, tested without drawing) and a draw step.

A figure shows one data set (suite, dataset, data options) from one phase: curves from different data are never
overlaid. Each line is one method (plus the settings that differ between its runs, plus the weights when runs on
several weight files match); across seeds it is the mean, with a min–max band. The frame's `attrs["data"]` says
which runs were drawn and goes into the title. Which runs a figure reads is declared in `report.select.FIGURES`; a
figure of a sweep (Figs. 4-6) reads what the sweep (`plan.sweeps.SWEEPS`) varies, for which methods, and where plain
PACE sits on a variant's axis (`hp(equals=...)` in the method's config). matplotlib is imported only when drawing,
and draws off-screen (Agg).
"""

from __future__ import annotations

import inspect
import io
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pacebench.choices import GradKind, Phase, Split
from pacebench.core.methods import METHODS
from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.sweeps import SWEEPS, Sweep
from pacebench.registry import Registry
from pacebench.report.evidence import compare_data, draw_compare, draw_ranks, ranks_data
from pacebench.report.labels import (
    READINGS,
    Reading,
    config_labels,
    data_label,
    heldout_name,
    method_rank,
    weights_key,
)
from pacebench.report.select import FIGURES
from pacebench.store import EpochRecord, RunRecord, Storage


@dataclass(frozen=True)
class Drawing:
    """How figure `FIGURES[name]` is made: its gather step, its draw step on a matplotlib Figure, its size."""

    gather: Callable[..., pd.DataFrame]
    draw: Callable[[pd.DataFrame, Any], None]  # (frame, matplotlib Figure)
    size: tuple[float, float] = (6.4, 4.6)


DRAWINGS: Registry[Drawing] = Registry("figure drawing")


# ---- gather ---------------------------------------------------------------------------------------------------


def select_runs(
    store: Storage,
    figure: str,
    suite: str | None = None,
    dataset: str | None = None,
    phase: str | None = None,
    options: dict[str, Any] | None = None,
    backbone: str | None = None,
    one_data: bool = True,
) -> list[RunRecord]:
    """The runs `figure` reads (`select.FIGURES`) of one data set (of several with `one_data=False`), optionally on
    one backbone (Fig. 3: Swin-B).

    Raises PacebenchError when none match, or when several data sets do and `one_data` asks for one.
    """
    reads = FIGURES.get(figure).reads
    phase = phase or reads.phase()
    runs = reads.runs(store, suite, dataset, phase)
    if options:
        runs = [r for r in runs if all(r.data_options.get(k) == v for k, v in options.items())]
    if backbone:
        runs = [r for r in runs if r.backbone == backbone]
    if not runs:
        where = "/".join(x for x in (suite, dataset) if x) + (f" on {backbone}" if backbone else "")
        methods = reads.methods()
        which = f" of {', '.join(methods)}" if methods else ""
        raise PacebenchError(
            f"no finished {phase}-phase runs{which}{f' for {where}' if where else ''}; "
            f"run `pacebench {'tune' if phase == Phase.tune else 'run'} {suite or 'demo'}` first"
        )
    datas = sorted({data_label(r) for r in runs})
    if one_data and len(datas) > 1:
        shown = ", ".join(datas[:4]) + (", ..." if len(datas) > 4 else "")
        raise PacebenchError(
            f"runs of {len(datas)} data sets match ({shown}); a figure shows one: choose it with "
            "--suite and --dataset (and shots / split seed where the suite has them)"
        )
    return runs


def series_labels(runs: list[RunRecord], exclude: tuple[str, ...] = ()) -> dict[int, str]:
    """Per run id: "method", plus its differing settings, plus its weights when several weight files match."""
    configs = config_labels(runs, exclude=exclude)
    several = len({weights_key(r) for r in runs}) > 1
    return {
        r.id: " ".join(x for x in (r.method, configs[r.id], f"[{weights_key(r)}]" if several else "") if x)
        for r in runs
    }


def _describe(runs: list[RunRecord], phase: str, data: str | None = None) -> str:
    weights = sorted({weights_key(r) for r in runs})
    return (
        f"{data or data_label(runs[0])}, phase {phase}, {len(runs)} runs, "
        f"{'weights ' + weights[0] if len(weights) == 1 else f'{len(weights)} weight files'}"
    )


def _spread(
    rows: list[dict[str, Any]], by: list[str], runs: list[RunRecord], phase: str, what: str, data: str | None = None
) -> pd.DataFrame:
    """Mean, std (ddof=1), min, max and count of `value` over seeds, per `by`."""
    if not rows:
        raise PacebenchError(f"the matching runs ({_describe(runs, phase, data)}) logged no {what}")
    frame = (
        pd.DataFrame(rows)
        .groupby(by, sort=True, dropna=False)["value"]
        .agg(mean="mean", std="std", min="min", max="max", n="count")
        .reset_index()
    )
    frame.attrs["data"] = _describe(runs, phase, data)
    return frame


def _per_epoch(
    store: Storage,
    runs: list[RunRecord],
    phase: str,
    what: str,
    values: Callable[[RunRecord, EpochRecord], dict[str, float | None]],
) -> pd.DataFrame:
    labels = series_labels(runs)
    by_id = {r.id: r for r in runs}
    rows = [
        {"series": labels[e.run_id], "method": by_id[e.run_id].method, "metric": metric, "epoch": e.epoch, "value": v}
        for e in store.epochs_of(list(by_id))
        if e.run_id is not None
        for metric, v in values(by_id[e.run_id], e).items()
        if v is not None
    ]
    return _spread(rows, ["series", "method", "metric", "epoch"], runs, phase, what)


def reading(kind: str, on: str | None, phase: str) -> tuple[str, str]:
    """The epoch column and the label of gradient-norm reading (kind, on); `on` None: held-out for task, train for
    step (the optimizer only ever sees training batches)."""
    if kind not in tuple(GradKind):
        raise UsageError(f"--kind must be one of {', '.join(GradKind)}, got {kind!r}")
    return _reading(GradKind(kind), on or (Split.heldout if kind == GradKind.task else Split.train), phase)


def _reading(kind: GradKind | None, on: str, phase: str) -> tuple[str, str]:
    if on not in tuple(Split):
        raise UsageError(f"--on must be one of {', '.join(Split)}, got {on!r}")
    found: dict[tuple[GradKind | None, str], Reading] = {(r.kind, r.on): r for r in READINGS}
    if (kind, on) not in found:
        raise UsageError("--kind step is measured on the training batches only; use --on train, or --kind task")
    chosen = found[(kind, on)]
    return chosen.field, chosen.label(phase)


def _titled(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    frame.attrs["what"] = what
    return frame


def grad_norm_data(
    store: Storage,
    suite: str | None = None,
    dataset: str | None = None,
    phase: str = "final",
    options: dict[str, Any] | None = None,
    backbone: str | None = None,
    kind: str = "task",
    on: str | None = None,
) -> pd.DataFrame:
    """Fig. 2a / 3a: per series and epoch, one gradient-norm reading (`reading`), spread over seeds. The default is
    the paper's: the task loss's gradient on the held-out split."""
    column, label = reading(kind, on, phase)
    runs = select_runs(store, "grad-norm", suite, dataset, phase, options, backbone=backbone)
    return _titled(_per_epoch(store, runs, phase, label, lambda r, e: {"grad norm": getattr(e, column)}), label)


def fp_distance_data(
    store: Storage,
    suite: str | None = None,
    dataset: str | None = None,
    phase: str = "final",
    options: dict[str, Any] | None = None,
    backbone: str | None = None,
    on: str | None = None,
) -> pd.DataFrame:
    """Fig. 2b / 3b: per series and reading epoch, the FP-distance to the pre-trained model (held-out by default),
    spread over seeds."""
    column, label = _reading(None, on or Split.heldout, phase)
    runs = select_runs(store, "fp-distance", suite, dataset, phase, options, backbone=backbone)
    return _titled(_per_epoch(store, runs, phase, label, lambda r, e: {"FP-distance": getattr(e, column)}), label)


def accuracy_data(
    store: Storage,
    suite: str | None = None,
    dataset: str | None = None,
    phase: str = "final",
    options: dict[str, Any] | None = None,
    backbone: str | None = None,
) -> pd.DataFrame:
    """Fig. 2c / 3c: per series and epoch, train accuracy (every epoch) and the held-out accuracy (evaluation
    epochs; test in phase final, val in phase tune), spread over seeds. Their distance is the generalisation gap."""
    runs = select_runs(store, "accuracy", suite, dataset, phase, options, backbone=backbone)
    held_out = f"{heldout_name(phase)} acc"
    frame = _per_epoch(
        store,
        runs,
        phase,
        "accuracies",
        lambda r, e: {"train acc": e.train_acc, held_out: e.test_acc if phase == "final" else e.val_acc},
    )
    return _titled(frame, f"train and {held_out}uracy")


def sweep_of(figure: str) -> Sweep:
    """The sweep whose runs `figure` reads (`select.FIGURES`)."""
    name = FIGURES.get(figure).reads.sweep
    assert name is not None, f"figure {figure} reads no sweep"
    return SWEEPS.get(name)


def varied(sweep: Sweep) -> dict[str, str]:
    """Method -> the hyperparameter the sweep varies for it (the methods it varies one of; the others are drawn as
    references)."""
    return {m: next(iter(g)) for m, g in sweep.method_grids().items() if len(g) == 1}


def symbol(method: str, name: str) -> str:
    """How a figure writes a hyperparameter: its one-letter alias where it has one (λ, σ, N, M), else its name."""
    aliases = [a for a, field in METHODS.get(method).Config.aliases().items() if field == name and len(a) == 1]
    return aliases[0] if aliases else name


def lambda_sweep_data(
    store: Storage,
    suite: str | None = None,
    dataset: str | None = None,
    phase: str | None = None,
    options: dict[str, Any] | None = None,
    backbone: str | None = None,
    kind: str = "task",
    on: str | None = None,
) -> pd.DataFrame:
    """Fig. 4 and Appendix Figs. 7-8: per series and λ, a gradient-norm reading averaged over the epochs that have
    it, spread over seeds.

    The methods the `figure4` sweep varies λ for (pace, fpa) are the series; its other methods (the baseline) come
    as rows with λ = NaN (a reference line). `phase` None takes the sweep's phase (tune) when it has runs of the
    swept methods (`pacebench sweep figure4` or `pacebench tune --grid lam=...` make them), else the final phase.
    """
    sweep = sweep_of("lambda-sweep")
    swept = varied(sweep)
    axis = next(iter(set(swept.values())))
    if phase is None:
        tuned = FIGURES.get("lambda-sweep").reads.runs(store, suite, dataset, sweep.phase)
        phase = sweep.phase if any(r.method in swept for r in tuned) else Phase.final
    column, label = reading(kind, on, phase)
    runs = select_runs(store, "lambda-sweep", suite, dataset, phase, options, backbone=backbone)
    if len({float(r.method_config.get(axis, math.nan)) for r in runs if r.method in swept}) < 2:
        raise PacebenchError(
            f"no {symbol(next(iter(swept)), axis)} sweep among the finished {phase}-phase runs of "
            f"{' or '.join(swept)} for "
            f"{data_label(runs[0])}; run `pacebench sweep {sweep.name} --suite {runs[0].suite}` "
            "first"
        )
    labels = series_labels(runs, exclude=(axis,))
    values: dict[int, list[float]] = {}
    for e in store.epochs_of([r.id for r in runs]):
        v = getattr(e, column)
        if e.run_id is not None and v is not None and math.isfinite(v):
            values.setdefault(e.run_id, []).append(v)
    rows = [
        {
            "series": labels[r.id],
            "method": r.method,
            axis: float(r.method_config.get(axis, math.nan)) if r.method in swept else math.nan,
            "value": sum(values[r.id]) / len(values[r.id]),
        }
        for r in runs
        if r.id in values
    ]
    frame = _spread(rows, ["series", "method", axis], runs, phase, label)
    frame.attrs["x"] = (axis, symbol(next(iter(swept)), axis))
    return _titled(frame, f"average {label}")


def efficiency_data(
    store: Storage,
    suite: str | None = None,
    dataset: str | None = None,
    phase: str = "final",
    options: dict[str, Any] | None = None,
    backbone: str | None = None,
) -> pd.DataFrame:
    """Fig. 5: per panel (one per hyperparameter the `figure5` sweep varies: lazy interval N, networks M) and
    setting, test accuracy and relative cost, over seeds.

    Relative cost is a run's median epoch wall time divided by the mean of the baseline's medians on the same data
    with the same adapter kind (NaN without such baseline runs). Each adapter kind is its own curve: runs of
    different kinds are never pooled. A method a variant amounts to at some value (PACE: N = 1, M = 2; `hp(equals=...)`)
    is drawn at that point of each panel; the sweep's other methods (the baseline) are a reference line (rows with
    x = NaN). `pacebench ablate --efficiency` (one N, one M) or `pacebench sweep figure5` (a range) make the runs.
    """
    sweep = sweep_of("efficiency")
    variants = varied(sweep)
    panels = {m: f"{m}: {name} {symbol(m, name)}" for m, name in variants.items()}
    places: dict[str, list[tuple[str, float]]] = {}  # method -> its (panel, x) points
    for m, name in variants.items():
        equivalent = METHODS.get(m).equivalents().get(name)
        if equivalent is not None:
            other, at = equivalent
            places.setdefault(other, []).append((panels[m], float(at)))
    runs = select_runs(store, "efficiency", suite, dataset, phase, options, backbone=backbone)
    if not any(r.method in variants for r in runs):
        raise PacebenchError(
            f"no finished runs of {' or '.join(variants)} for {data_label(runs[0])}; run "
            f"`pacebench sweep {sweep.name} --suite {runs[0].suite}` first"
        )
    walls: dict[int, list[float]] = {}
    for e in store.epochs_of([r.id for r in runs]):
        if e.run_id is not None and e.wall_time is not None:
            walls.setdefault(e.run_id, []).append(e.wall_time)
    wall = {rid: statistics.median(ws) for rid, ws in walls.items()}
    base: dict[str, list[float]] = {}  # adapter kind -> its baseline runs' median epoch times
    for r in runs:
        if r.method == "baseline" and r.id in wall:
            base.setdefault(r.adapter, []).append(wall[r.id])
    unit = {kind: statistics.fmean(times) for kind, times in base.items()}
    rows = []
    for r in runs:
        acc = r.metrics.get("test_acc" if phase == Phase.final else "val_acc")
        points = (
            [(panels[r.method], float(r.method_config[variants[r.method]]))]
            if r.method in variants
            else places.get(r.method) or [(panel, math.nan) for panel in panels.values()]
        )
        cost = wall[r.id] / unit.get(r.adapter, math.nan) if r.id in wall else None
        for panel, x in points:
            for metric, value in (("accuracy", acc), ("relative cost", cost)):
                if value is not None:
                    rows.append(
                        {
                            "panel": panel,
                            "adapter": r.adapter,
                            "method": r.method,
                            "x": x,
                            "metric": metric,
                            "value": value,
                        }
                    )
    frame = _spread(rows, ["panel", "adapter", "method", "x", "metric"], runs, phase, "accuracies")
    frame.attrs["panels"] = list(panels.values())
    return _titled(frame, f"{heldout_name(phase)} accuracy and relative cost (epoch wall time / baseline's)")


def sensitivity_data(
    store: Storage,
    suite: str | None = None,
    dataset: str | None = None,
    phase: str | None = None,
    options: dict[str, Any] | None = None,
    backbone: str | None = None,
) -> pd.DataFrame:
    """Fig. 6: per shots and point of the `figure6` sweep's grid (σ × λ of pace), the held-out accuracy of its runs
    (phase tune: validation), mean over seeds and split seeds.

    `pacebench sweep figure6` (or `pacebench tune fewshot --datasets oxford_pets --grid sigma=... --grid lam=...`)
    makes the runs. Runs without shots (a suite without few-shot splits) form one panel; each adapter kind has its
    own panels (runs of different kinds are never pooled). Without suite and dataset
    it reads the sweep's own data set: few-shot Oxford Pets.
    """
    sweep = sweep_of("sensitivity")
    [(method, grid)] = sweep.method_grids().items()  # one method over a grid of two hyperparameters
    y, x = grid
    if suite is None and dataset is None and sweep.datasets:
        suite, dataset = sweep.suite, sweep.datasets[0]
    phase = phase or sweep.phase
    runs = select_runs(store, "sensitivity", suite, dataset, phase, options, backbone=backbone, one_data=False)
    if len({(r.suite, r.dataset) for r in runs}) > 1:
        raise PacebenchError("runs of several datasets match; choose one with --suite and --dataset")
    rows = [
        {
            "adapter": r.adapter,
            "shots": int(r.data_options.get("shots", 0)),
            y: float(r.method_config[y]),
            x: float(r.method_config[x]),
            "value": r.metrics.get("val_acc" if phase == Phase.tune else "test_acc"),
        }
        for r in runs
        if y in r.method_config and x in r.method_config
    ]
    rows = [row for row in rows if row["value"] is not None]
    names = f"{symbol(method, y)} × {symbol(method, x)}"
    if len({(row[y], row[x]) for row in rows}) < 2:
        raise PacebenchError(
            f"no {names} grid among the {phase}-phase {method} runs of {runs[0].suite}/"
            f"{runs[0].dataset}; run `pacebench sweep {sweep.name}` first"
        )
    where = f"{runs[0].suite}/{runs[0].dataset}"
    frame = _spread(rows, ["adapter", "shots", y, x], runs, phase, "accuracies", data=where)
    frame.attrs["axes"] = ((y, symbol(method, y)), (x, symbol(method, x)))
    return _titled(frame, f"{method}: {heldout_name(phase)} accuracy over {names}")


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
    def draw(frame: pd.DataFrame, fig: Any) -> None:
        ax = fig.add_subplot()
        styles = dict(
            zip(sorted(frame["metric"].unique(), key=lambda m: m != "train acc"), ["-", "--", ":"], strict=False)
        )
        for i, (series, method) in enumerate(_series_order(frame)):
            for metric, style in styles.items():
                part = frame[(frame.series == series) & (frame.method == method) & (frame.metric == metric)]
                if not part.empty:
                    label = series if len(styles) == 1 else f"{series}: {metric}"
                    _curve(ax, part, "epoch", label, f"C{i % 10}", style)
        from matplotlib.ticker import MaxNLocator  # lazy: matplotlib

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        low, high = frame["mean"].min(), frame["mean"].max()
        if log_if_wide and low > 0 and high / low > 20:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)

    return draw


def _draw_lambda_sweep(frame: pd.DataFrame, fig: Any) -> None:
    ax = fig.add_subplot()
    axis, name = frame.attrs["x"]
    for i, (series, method) in enumerate(_series_order(frame)):
        part = frame[(frame.series == series) & (frame.method == method)]
        swept = part[part[axis].notna()]
        if not swept.empty:
            _curve(ax, swept, axis, series, f"C{i % 10}")
        else:  # the baseline: no λ, a horizontal reference line
            ax.axhline(float(part["mean"].mean()), color=f"C{i % 10}", linestyle="--", label=series)
    ax.set_xscale("log")
    low, high = frame["mean"].min(), frame["mean"].max()
    if low > 0 and high / low > 20:  # a log axis only where the norms span decades (FPA's explosions)
        ax.set_yscale("log")
    ax.set_xlabel(name)
    ax.set_ylabel("gradient norm (mean over the epochs read)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def _by_x(part: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`metric`'s swept points (x set) of one panel, pooled per x over the methods that share it."""
    return (
        part[(part.metric == metric) & part.x.notna()]
        .groupby("x", as_index=False)
        .agg(mean=("mean", "mean"), min=("min", "min"), max=("max", "max"), n=("n", "sum"))
    )


def _draw_efficiency(frame: pd.DataFrame, fig: Any) -> None:
    from matplotlib.ticker import MaxNLocator  # lazy: matplotlib

    panels = frame.attrs["panels"]
    kinds = sorted(frame["adapter"].unique())
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        twin = None
        for j, kind in enumerate(kinds):
            part = frame[(frame.panel == panel) & (frame.adapter == kind)]
            of = f" ({kind})" if len(kinds) > 1 else ""
            acc = _by_x(part, "accuracy")
            if not acc.empty:
                _curve(ax, acc, "x", f"PACE accuracy{of}", f"C{1 + 3 * j}")
            base = part[(part.metric == "accuracy") & part.x.isna()]
            if not base.empty:
                ax.axhline(
                    float(base["mean"].mean()), color=f"C{3 * j}", linestyle="--", label=f"baseline accuracy{of}"
                )
            cost = _by_x(part, "relative cost")
            if not cost.empty and cost["mean"].notna().any():
                twin = twin or ax.twinx()
                _curve(twin, cost, "x", f"relative cost{of}", f"C{2 + 3 * j}", "--")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(panel)
        ax.set_ylabel("accuracy (%)")
        if twin is not None:
            twin.set_ylabel("relative cost (× baseline epoch time)")
            twin.legend(fontsize=7, loc="upper right")
        ax.legend(fontsize=7, loc="lower left")
        ax.grid(alpha=0.3)


def _draw_sensitivity(frame: pd.DataFrame, fig: Any) -> None:
    (y, y_name), (x, x_name) = frame.attrs["axes"]
    panels = sorted(frame[["adapter", "shots"]].drop_duplicates().itertuples(index=False))
    several = frame["adapter"].nunique() > 1
    low, high = frame["mean"].min(), frame["mean"].max()
    fig.set_size_inches(1.5 + 3.4 * len(panels), 3.8)  # one square-ish panel per adapter kind and shot count
    for k, (kind, n) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        grid = frame[(frame.adapter == kind) & (frame.shots == n)].pivot_table(index=y, columns=x, values="mean")
        image = ax.imshow(grid.to_numpy(), origin="lower", cmap="viridis", vmin=low, vmax=high, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns], fontsize=7)
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index], fontsize=7)
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6, color="w")
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name if k == 0 else "")
        ax.set_title((f"{kind}, " if several else "") + (f"{n}-shot" if n else "all data"), fontsize=9)
    fig.colorbar(image, ax=fig.axes, shrink=0.8, label="accuracy (%)")


for _name, _drawing in (
    ("grad-norm", Drawing(grad_norm_data, _draw_per_epoch("gradient norm", log_if_wide=True))),
    ("fp-distance", Drawing(fp_distance_data, _draw_per_epoch("FP-distance to the pre-trained model"))),
    ("accuracy", Drawing(accuracy_data, _draw_per_epoch("accuracy (%)"))),
    ("lambda-sweep", Drawing(lambda_sweep_data, _draw_lambda_sweep)),
    ("efficiency", Drawing(efficiency_data, _draw_efficiency, size=(10, 4.2))),
    ("sensitivity", Drawing(sensitivity_data, _draw_sensitivity, size=(13, 3.6))),
    ("compare", Drawing(compare_data, draw_compare)),
    ("ranks", Drawing(ranks_data, draw_ranks)),
):
    DRAWINGS.register(_name)(_drawing)

FIGURE_FORMATS = ("png", "pdf", "svg")


def figure_path(name: str, out: Path) -> tuple[Path, str]:
    """`out` as a file path and its format: an existing folder gets NAME.png inside it, a name without a suffix gets
    .png added (never a new folder); the suffix picks PNG, PDF or SVG; anything else is refused."""
    out = Path(out)
    if out.is_dir():
        out = out / f"{name}.png"
    elif not out.suffix:
        out = out.with_suffix(".png")
    kind = out.suffix.lower().lstrip(".")
    if kind not in FIGURE_FORMATS:
        raise UsageError(f"cannot write a figure as {out.suffix!r} ({out}); name the file .png, .pdf or .svg")
    return out, kind


def gather_figure(name: str, store: Storage, **filters: Any) -> pd.DataFrame:
    """Runs figure `name`'s gather step with the filters it accepts (None values dropped)."""
    drawing = DRAWINGS.get(FIGURES.get(name).name)
    accepted = inspect.signature(drawing.gather).parameters
    return drawing.gather(store, **{k: v for k, v in filters.items() if v is not None and k in accepted})


def title_of(name: str, frame: pd.DataFrame) -> str:
    """What was measured on what: the quantity, then which runs (data, phase, count, weights)."""
    entry = FIGURES.get(name)
    return f"{entry.title}: {frame.attrs.get('what', '')}\n{frame.attrs.get('data', '')}"


def render_figure(name: str, frame: pd.DataFrame, out: Path | None = None, kind: str = "png") -> bytes:
    """Draws a gathered frame off-screen (no pyplot, so no global state); writes `out` if given, returns the bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib
    from matplotlib.figure import Figure  # lazy: matplotlib

    drawing = DRAWINGS.get(FIGURES.get(name).name)
    fig = Figure(figsize=drawing.size, layout="constrained")
    FigureCanvasAgg(fig)
    drawing.draw(frame, fig)
    fig.suptitle(title_of(name, frame), fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=150, format=kind, bbox_inches="tight")
    data = buffer.getvalue()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    return data


def plot(name: str, store: Storage, out: Path, **filters: Any) -> Path:
    """Gathers figure `name` from `store` (filters: suite, dataset, phase, options, backbone, kind, on, ...) and
    writes it at `out`: PNG (150 dpi), PDF or SVG by the suffix, or NAME.png into a folder. Returns the path."""
    path, kind = figure_path(name, out)
    render_figure(name, gather_figure(name, store, **filters), path, kind)
    return path
