"""Every rich table and every help text reads cleanly in an 80- and a 120-column terminal: nothing cut ("…"), no line
wider than the terminal, no header split inside a word, every number and "mean ± std" on one line, and help
paragraphs that flow instead of breaking where their source lines broke."""

from __future__ import annotations

import dataclasses
import io
from datetime import timedelta

import pytest
import typer.main
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text
from test_report import W2, epochs, make_run
from typer.testing import CliRunner

from pacebench.cli import app, common
from pacebench.cli.progress import workers_table
from pacebench.plan.suites import load_suite
from pacebench.report.render import display, render
from pacebench.report.select import table_names
from pacebench.report.tables import gather
from pacebench.store import Store
from pacebench.store.records import WorkerRecord
from pacebench.store.rows import utcnow
from pacebench.terminal import Column, Fit, pieces, widths, wrap

WIDTHS = (80, 120)
runner = CliRunner()


def speed_row(method: str, ratio: float) -> dict:
    return {
        "device": "cuda",
        "device_name": "NVIDIA H100 80GB HBM3",
        "versions": {"torch": "2.4", "timm": "1.0"},
        "backbone": "vit_b16_in21k",
        "adapter": "lora_mul+vpt_add",
        "rank": 10,
        "batch": 64,
        "image_size": 224,
        "patch_size": None,
        "classes": 100,
        "precision": "bf16",
        "compile": True,
        "paths": "fast",
        "threads": 1,
        "warmup": 2,
        "steps": 6,
        "method": method,
        "ms_per_step": 101.5 * ratio,
        "images_per_s": 630.5 / ratio,
        "gflop_per_step": 2210.0 * ratio,
        "time_ratio": ratio,
        "flop_ratio": ratio * 0.9,
        "peak_mib": 12345.0,
        "mfu": 0.41,
        "times_ms": [101.0],
    }


@pytest.fixture(scope="module")
def everything(tmp_path_factory) -> tuple[Store, str]:
    """Runs behind every registered table: the demo on two weight files, VTAB (with the ablations), few-shot, FGVC,
    domain adaptation on two backbones, GLUE and GSM-8K, and a bench measurement."""
    url = f"sqlite:///{tmp_path_factory.mktemp('all')}/r.db"
    store = Store(url)
    for seed, test in enumerate([88.37, 90.9]):
        make_run(
            store,
            seed=seed,
            test=test,
            train=99.1,
            fp=0.1234,
            epochs=epochs([9.0, 5.0, 1.0], test=test),
            extra={"grad_norm_task_heldout": 0.2345, "fp_distance_heldout": 1.2345},
        )
        make_run(
            store,
            method="pace",
            seed=seed,
            test=test + 2,
            train=95.0,
            config={"lam": 1.0},
            epochs=epochs([4.0, 2.0, 0.5], test=test + 2),
        )
    make_run(store, method="pace", seed=0, weights=W2, test=50.0, train=60.0, config={"lam": 1.0})
    for ds in list(load_suite("vtab").datasets)[:5]:
        for method in ("baseline", "pace", "fpa"):
            for seed in (0, 1):
                make_run(store, suite="vtab", dataset=ds, method=method, seed=seed, test=70.0 + seed, train=99.0)
    for shots in (1, 16):
        make_run(store, suite="fewshot", dataset="fgvc_aircraft", test=33.3, options={"shots": shots, "split_seed": 0})
    for ds in load_suite("fgvc").datasets:
        make_run(store, suite="fgvc", dataset=ds, method="pace", test=88.8)
    targets = {"imagenet": 79.0, "imagenet_sketch": 31.0, "imagenet_v2": 69.0, "imagenet_a": 16.0, "imagenet_r": 35.0}
    make_run(
        store, suite="domain", dataset="imagenet", method="pace", evals=targets, options={"shots": 16, "split_seed": 0}
    )
    for ds in ("rte", "stsb", "mrpc"):
        for method in ("baseline", "pace"):
            make_run(store, suite="glue", dataset=ds, method=method, test=86.6)
    make_run(store, suite="gsm8k", dataset="gsm8k", method="pace", test=78.77)
    store.add_speed([speed_row("baseline", 1.0), speed_row("pace", 1.93), speed_row("pace_lazy", 1.21)])
    return store, url


def plain(renderable, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def assert_clean(text: str, width: int) -> None:
    assert "…" not in text, text
    assert max(cell_len(line) for line in text.splitlines()) <= width, text


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", table_names())
def test_every_table_fits_the_terminal_without_cutting_anything(everything, name, width, wide):
    store, _ = everything
    data = dataclasses.replace(gather(name, store), notes=[], title="")  # the table alone
    fit = render(data, "rich", wide=wide)
    text = plain(fit, width)
    assert_clean(text, width)
    kind, columns, _ = fit.layout(width)
    assert wide or kind != "records", f"{name} at {width}: drawn as a table, not as a list of records\n{text}"
    headers, rows, numeric = display(data)
    assert not wide or columns == list(range(len(headers))), "--wide shows every column"
    for i in columns:
        if numeric[i] or kind == "table":  # transposed, the text columns label the columns
            assert all(piece in text for word in pieces(headers[i]) for piece in word), (headers[i], text)
        for row in rows:
            if numeric[i]:
                assert row[i] in text, f"{headers[i]}: {row[i]!r} is split or cut\n{text}"  # "88.37 ± 1.30" too
            else:
                assert all(piece in text for word in pieces(row[i]) for piece in word), (row[i], text)
    assert {c for row in rows for i, c in enumerate(row) if "±" in c} <= {row[i] for row in rows for i in columns}


def test_the_demo_table_at_80_columns_keeps_its_headline_and_names_what_it_hides(everything):
    store, _ = everything
    text = plain(render(gather("demo", store), "rich"), 80)
    assert_clean(text, 80)
    assert "test acc" in text and "89.64 ± 1.79" in text and "--wide shows all" in text
    assert "column" in text and "hidden (train acc" in text
    wide = plain(render(gather("demo", store), "rich", wide=True), 80)
    assert (
        "hidden" not in wide
        and "train acc" in wide
        and "FP-distance (train)" in wide.replace("\n", " ")
        or all(p in wide for p in ("FP-", "distance", "(train)"))
    )


def test_vtab_at_80_columns_shows_the_group_means_and_transposes_with_wide(everything):
    store, _ = everything
    compact = plain(render(gather("vtab", store), "rich"), 80)
    assert (
        all(g in compact for g in ("Natural", "Specialized", "Structured", "mean"))
        and "caltech101" not in compact.split("hidden")[0]
    )
    full = plain(render(gather("vtab", store), "rich", wide=True), 80)
    assert_clean(full, 80)
    lines = {line.split()[0] for line in full.splitlines() if line.strip()}
    assert {"cifar", "caltech101", "dsprites_loc", "Natural", "mean"} <= lines, "a row per dataset: transposed"


# ---- the layout itself -----------------------------------------------------------------------------------------


def test_headers_break_only_at_spaces_and_after_separators():
    assert pieces("grad norm task (test)") == [["grad"], ["norm"], ["task"], ["(test)"]]
    assert pieces("16-shot") == [["16-", "shot"]]
    assert wrap("imagenet_sketch", 9) == "imagenet_\nsketch"
    assert wrap("grad norm task (test)", 9) == "grad norm\ntask\n(test)"
    assert wrap("gap (train - test)", 40) == "gap (train - test)"


def test_widths_never_go_below_a_columns_longest_piece_and_keep_names_whole_where_they_can():
    spans = [(8, 12, 20, 20), (12, 12, 12, 12), (5, 9, 30, 30)]  # (narrowest, longest word, cells, widest)
    assert widths(spans, ["a", "b", "c"], 100) == [20, 12, 30]
    narrow = widths(spans, ["a", "b", "c"], 30)
    assert narrow is not None and sum(narrow) == 30 and all(w >= lo for w, (lo, *_) in zip(narrow, spans, strict=True))
    assert widths(spans, ["a", "b", "c"], 33)[:2] == [12, 12], "whole words first"
    assert widths(spans, ["a", "b", "c"], 24) is None
    assert widths([(5, 5, 22, 22), (8, 8, 12, 26)], ["", "baseline vit_demo@11111111"], 40) == [22, 18], (
        "cells before headers"
    )
    even = widths([(6, 6, 6, 21), (9, 11, 6, 21)], ["grad norm task (test)", "FP-distance (test)"], 26)
    assert (
        even is not None
        and max(wrap("grad norm task (test)", even[0]).count("\n"), wrap("FP-distance (test)", even[1]).count("\n"))
        <= 1
    )


def test_a_table_that_cannot_fit_becomes_a_list_never_a_cut_table():
    fit = Fit([Column("name"), Column("value", numeric=True)], [["a" * 20, "1.00 ± 0.10"]])
    assert fit.layout(25)[0] == "records"
    text = plain(fit, 25)
    assert "…" not in text and "value: 1.00 ± 0.10" in text and "a" * 20 in text


# ---- the CLI's own tables -----------------------------------------------------------------------------------------


@pytest.fixture
def terminal(monkeypatch):
    def set_width(width: int) -> None:
        monkeypatch.setattr(common.console, "width", width)
        monkeypatch.setenv("COLUMNS", str(width))

    return set_width


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(
    "args",
    [
        ["runs"],
        ["runs", "--wide"],
        ["suites"],
        ["suites", "--wide"],
        ["methods"],
        ["inspect"],
        ["report", "--table", "demo"],
        ["report", "--table", "1"],
        ["report", "--table", "2", "--wide"],
        ["report", "--table", "speed"],
        ["data", "check", "vtab", "--root", "/nonexistent/data"],
    ],
)
def test_cli_tables_fit(everything, terminal, width, args):
    _, url = everything
    terminal(width)
    db = ["--db", url] if args[0] in ("runs", "report") else []
    result = runner.invoke(app, [*args, *db])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    table = result.output.split("\nvtab/")[0]  # data check then prints each problem whole, for the terminal to wrap
    assert_clean(table, width)


def test_runs_keep_every_id_and_key_whole_at_80_columns(everything, terminal):
    store, url = everything
    terminal(80)
    records = store.runs()
    text = runner.invoke(app, ["runs", "--db", url, "--limit", "100"]).output
    assert_clean(text, 80)
    assert {int(line.split()[0]) for line in text.splitlines() if line.split() and line.split()[0].isdigit()} == {
        r.id for r in records
    }
    wide = runner.invoke(app, ["runs", "--db", url, "--limit", "100", "--wide"]).output
    assert_clean(wide, 80)
    assert all(r.key in wide for r in records), "a key is never split"


def test_workers_fit_at_80_columns():
    now = utcnow()
    workers = [
        WorkerRecord(
            f"gpu-node-{i:03d}.cluster.example.org-12345-{i}",
            "myhost",
            12345,
            f"cuda:{i}",
            "training",
            i + 1,
            3,
            {
                "epochs": 300,
                "epoch_s": 12.5,
                "loss": 0.123456,
                "label": "vtab/diabetic_retinopathy pace lam=1 sigma=1.2 seed=0",
            },
            now - timedelta(hours=1),
            now - timedelta(seconds=2 + i),
        )
        for i in range(3)
    ]
    for width in WIDTHS:
        text = plain(workers_table(workers, 60.0), width)
        assert_clean(text, width)
        assert "1:01:40" in text and "diabetic_" in text  # (300 - 3 - 1) epochs x 12.5 s
    assert "silent" in plain(
        workers_table([dataclasses.replace(workers[0], heartbeat_at=now - timedelta(hours=1))], 60.0), 80
    )


# ---- help texts --------------------------------------------------------------------------------------------------


def command_paths() -> list[list[str]]:
    out: list[list[str]] = []

    def walk(command, path: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            out.append([*path, name])
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


def help_text(args: list[str], width: int, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_help_paragraphs_flow_instead_of_breaking_at_source_lines(path, monkeypatch):
    """In a terminal wide enough for any paragraph, each paragraph of a command's help is one line: a line break
    inside one could only come from the docstring's source lines."""
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    text = " ".join(help_text(path, 400, monkeypatch).split())  # rich pads its lines: compare words
    lines = [" ".join(line.split()) for line in help_text(path, 400, monkeypatch).splitlines()]
    for paragraph in (command.help or "").split("\n\n"):
        words = " ".join(paragraph.split())
        assert words in text
        assert any(words in line for line in lines), f"{' '.join(path)}: {paragraph!r} is broken over lines"
    assert_clean(help_text(path, 80, monkeypatch), 80)


def test_the_command_list_does_not_break_where_the_docstring_did(monkeypatch):
    text = help_text([], 80, monkeypatch)
    assert any("train -> val (phase 1)" in line for line in text.splitlines()), text
    wide = help_text([], 400, monkeypatch)
    assert any(
        "declared search grid on train -> val (phase 1), then each winner" in line for line in wide.splitlines()
    ), wide


def test_the_plan_speaks_of_the_suite_being_run(tmp_path, monkeypatch):
    from pacebench.data.base import phase_line

    assert phase_line(load_suite("vtab"), "final") == "phase 2: train on train800val200, score on test"
    assert phase_line(load_suite("vtab"), "tune") == "phase 1: train on train800, score on val200"
    assert phase_line(load_suite("demo"), "final") == "phase 2: train on train+val, score on test"
    assert phase_line(load_suite("glue"), "final") == "phase 2: train on train, score on dev"
    assert phase_line(load_suite("gsm8k"), "tune").startswith("phase 1: train on train less a fixed 10% of train")
    assert "imagenet_sketch" in phase_line(load_suite("domain"), "final")
    monkeypatch.setenv("PACEBENCH_RESULTS", str(tmp_path))
    out = runner.invoke(app, ["run", "demo", "--dry-run", "--db", f"sqlite:///{tmp_path}/r.db"]).output
    assert "phase 2: train on train+val, score on test" in " ".join(out.split())
    assert "VTAB" not in out and "text suites" not in out


def test_cells_may_be_styled():
    fit = Fit([Column("status")], [[Text("found", style="green")]])
    assert "found" in plain(fit, 80)
