"""docs/extending.md's "Files that change (N): ..." lines, checked against the code.

Each section of the doc starts with such a line. For each, this test writes exactly the files the line names into a
copy of the package (a minimal but real extension: a method that trains, a kind that injects, a table that gathers),
imports that copy in a fresh interpreter (one per section) and checks that the extension is live there. The same
interpreter then imports, afresh, copies that each leave one of the named files out (torch and the other heavy
libraries stay imported: that keeps a section to a few seconds), and each of those must fail the same check. So the
doc can neither leave out a file the extension needs (the check fails) nor name one it does not (a copy without it
passes), and the count must match the paths it lists.

The copy is laid out as the wheel is (`setup.py` ships benchmarks/ as `pacebench.benchmarks`), so it reads its own
suite files; the interpreter finds it through PYTHONPATH (before the editable install's finder in site-packages)
and checks that it did. The names (`mymethod`, `mykind`, ...) are the doc's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "extending.md"
LINE = re.compile(r"Files that change \((\d+)\): (.+)")
ENTRY = re.compile(r"(\S+) \(([^()]+)\)")


def doc_sections() -> dict[str, tuple[int, list[tuple[str, str]]]]:
    """Heading -> (the count N, [(path, what changes)]) of every "Files that change" line of the doc; each must be
    the first line of its section."""
    sections: dict[str, tuple[int, list[tuple[str, str]]]] = {}
    heading, first = "", False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            heading, first = line.lstrip("#").strip(), True
            continue
        if not line.strip():
            continue
        if line.startswith("Files that change"):
            match = LINE.fullmatch(line)
            assert match, f"{heading}: not of the form 'Files that change (N): path (what), ...': {line!r}"
            assert first, f"{heading}: its 'Files that change' line must be the section's first line"
            entries = ENTRY.findall(match[2])
            assert ", ".join(f"{p} ({w})" for p, w in entries) == match[2], f"{heading}: unreadable list {match[2]!r}"
            assert heading not in sections, f"two sections are called {heading!r}"
            sections[heading] = (int(match[1]), entries)
        first = False
    return sections


# ---- what an extension writes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class New:
    """A new file."""

    text: str


@dataclass(frozen=True)
class Edit:
    """A registration in an existing file: each (after, text) inserts `text` right after the one match of the
    regular expression `after` ("" for the end of the file)."""

    inserts: tuple[tuple[str, str], ...]


def edit(*inserts: tuple[str, str]) -> Edit:
    return Edit(inserts)


def append(text: str) -> Edit:
    return Edit((("", text),))


def enum_member(enum: str, line: str) -> Edit:
    """A member added at the end of the StrEnum `enum` of choices.py."""
    return edit((rf"^class {enum}\(StrEnum\):\n(?:.*\S.*\n|\n(?=    ))*", f"    {line}\n"))


@dataclass(frozen=True)
class Extension:
    """The files one section's extension writes (repository paths), and the Python that checks, in the copy's
    interpreter, that it is live (it raises where not). The check may use `TMP`, an empty folder of its own,
    `finished(store, spec, **metrics)`, which writes a finished run as a worker does, and `tiny_vit()`."""

    files: dict[str, New | Edit]
    check: str


PRELUDE = """
def finished(store, spec, **metrics):
    from pacebench.store import Claimant
    (run,) = store.enqueue([spec])
    run = store.claim_next(Claimant(3600.0), keys=[run.key])
    store.finish_claimed(run.id, run.claim, {"epoch": 0, **metrics}, None)
    return store.get_run(run.id)


def tiny_vit():
    import timm
    import torch
    torch.manual_seed(0)
    return timm.create_model("test_vit", num_classes=3, img_size=32, patch_size=8)  # 6 blocks, width 64
"""

# ---- a method --------------------------------------------------------------------------------------------------

METHOD_MODULE = '''"""mymethod: cross-entropy plus λ times the logits' mean square."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from pacebench.core.methods.base import Method, MethodConfig, StepOutput, ce_only, hp, register


@dataclass(frozen=True)
class MyConfig(MethodConfig):
    lam: float = hp(0.1, "weight λ of the logits' mean square", grid=[0.01, 0.1, 1.0], aliases=("lambda", "λ"))

    def validate(self) -> list[tuple[str, bool, str]]:
        return [("lam", self.lam >= 0, "λ >= 0")]


@register
class MyMethod(Method[MyConfig]):
    name = "mymethod"
    description = "CE + λ·mean(logits²)"
    Config = MyConfig
    parts = ("ce", "logits")

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, idx: Tensor) -> StepOutput:
        out = ce_only(model, x, y, self.objective)
        penalty = out.logits.float().pow(2).mean()
        return StepOutput(out.loss + self.cfg.lam * penalty, out.logits, {**out.parts, "logits": penalty})
'''


def table6_method() -> str:
    """The method as a Table-6 ablation: tagged for `pacebench ablate`, with its row name in the paper's table."""
    module = METHOD_MODULE.replace("import Method,", "import TABLE6, Method,")
    return module.replace(
        '    parts = ("ce", "logits")\n',
        '    parts = ("ce", "logits")\n    tags = frozenset({TABLE6})\n    paper_row = "+Mine"\n',
    )


METHOD = Extension(
    {
        "pacebench/core/methods/mymethod.py": New(METHOD_MODULE),
        "pacebench/core/methods/__init__.py": edit((r"^MODULES = \([^)]*", ', "mymethod"')),
    },
    """
import torch
from pacebench.core.methods import METHODS, SetupInfo
from pacebench.core.prepare import attach
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.runkey import run_key

assert "mymethod" in METHODS.names(), METHODS.names()
[spec] = plan(PlanRequest(suite="demo", methods=["mymethod"], method={"lambda": 0.5}))
assert (spec.method, spec.method_config) == ("mymethod", {"lam": 0.5}) and run_key(spec), spec
ready = attach(tiny_vit(), "mymethod", SetupInfo(4, 3), rank=2, method_config=spec.method_config)
batch = (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]), torch.arange(4))
out = ready.method.step(ready.model, batch, torch.optim.SGD(ready.params, lr=0.1), ready.params)
assert set(out.parts) == {"ce", "logits"} and out.loss > out.parts["ce"] and out.grad_norm > 0
""",
)

TABLE6_METHOD = Extension(
    {
        "pacebench/core/methods/mymethod.py": New(table6_method()),
        "pacebench/core/methods/__init__.py": edit((r"^MODULES = \([^)]*", ', "mymethod"')),
        "benchmarks/reference/table6_ablations.csv": append("+Mine,75.5,78.0,31.0,68.0,14.0,33.0\n"),
    },
    """
import pandas as pd
from pacebench.core.methods import ABLATIONS, METHODS
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.sweeps import ablation_methods
from pacebench.report.tables import gather
from pacebench.settings import builtin_suites_dir
from pacebench.store import MemoryStore

assert ABLATIONS[-1] == "mymethod" and "mymethod" in ablation_methods(efficiency=False)  # `pacebench ablate` runs it
[spec] = plan(PlanRequest(suite="vtab", datasets=["cifar"], methods=["mymethod"]), sha=lambda name, weights: "1" * 64)
store = MemoryStore()
finished(store, spec, test_acc=76.0)
frame = gather("6", store).frame.set_index("method")
assert frame.loc["mymethod", ["test acc", "paper (Table 6)"]].tolist() == [76.0, 75.5], frame
paper = list(pd.read_csv(builtin_suites_dir() / "reference" / "table6_ablations.csv")["method"])
assert [METHODS.get(m).paper_row for m in ABLATIONS] == paper, "Table 6's rows, in the paper's order"
""",
)

# ---- an adapter kind -------------------------------------------------------------------------------------------

KIND = Extension(
    {
        "pacebench/core/adapters/mykind.py": New('''"""`mykind`: a bottleneck after each block's MLP, h = rank."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pacebench.core.adapters.base import Adapter, Noisy
from pacebench.core.adapters.kinds import Kind, Settings, register
from pacebench.core.adapters.layout import Layout


class MyAdapter(Noisy, Adapter):
    def __init__(self, inner: nn.Module, dim: int, width: int, position: int) -> None:
        super().__init__(position)
        self.inner, self.down, self.up = inner, nn.Linear(dim, width), nn.Linear(width, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inner(x)
        if not self.enabled:
            return h
        return self.add_delta(h, self.up(torch.relu(self.down(h))))


def build(model: nn.Module, layout: Layout, settings: Settings) -> None:
    for block, position in layout.blocks:
        block.mlp = MyAdapter(block.mlp, block.norm2.normalized_shape[0], settings.size, position)


register(Kind("mykind", "a bottleneck after each block's MLP, h = rank", "an example of docs/extending.md",
              "the bottleneck's output", build, size="bottleneck width h", default_size=8,
              why_not_mergeable="its ReLU sits between two projections"))
'''),
        "pacebench/core/adapters/__init__.py": edit((r"^MODULES = \([^)]*", ', "mykind"')),
    },
    """
import torch
from pacebench.core import adapters
from pacebench.core.methods import SetupInfo
from pacebench.core.prepare import attach
from pacebench.plan.planner import PlanRequest, plan

assert "mykind" in adapters.KINDS, adapters.KINDS
model = tiny_vit()
adapters.inject(model, "mykind", 4)
assert adapters.count_parameters(model).adapter == 6 * (64 * 4 + 4 + 4 * 64 + 64)
ready = attach(tiny_vit(), "pace", SetupInfo(4, 3), "mykind", 4)
noisy = [m for m in adapters.noisy_layers(ready.model) if type(m).__name__ == "MyAdapter"]
assert len(noisy) == 6 and all(m.noise.sigma > 0 for m in noisy[1:]), "PACE's noise reaches the kind's modules"
batch = (torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]), torch.arange(4))
ready.method.step(ready.model, batch, torch.optim.SGD(ready.params, lr=0.1), ready.params)
[spec] = plan(PlanRequest(suite="demo", adapters=["mykind"], methods=["pace"]))
assert (spec.train.adapter, spec.train.rank) == ("mykind", 8), spec.train  # demo's rank 4 is its own adapter's
""",
)

# ---- a part of the paper's adapter family ----------------------------------------------------------------------

PART = Extension(
    {
        "pacebench/core/adapters/mypart.py": New('''"""`mypart`: ΔW = diag(s) W0, Δb = s ⊙ b0."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pacebench.core.adapters.base import PARTS, AdapterPart


@PARTS.register("mypart")
class MyPart(AdapterPart):
    name = "mypart"
    description = "mypart: ΔW = diag(s) W0, Δb = s ⊙ b0"

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(base.out_features))

    def delta_weight(self, base: nn.Linear) -> Tensor:
        return self.scale[:, None] * base.weight

    def delta_bias(self, base: nn.Linear) -> Tensor | None:
        return None if base.bias is None else self.scale * base.bias
'''),
        "pacebench/core/adapters/parts.py": edit(
            (
                r"^from pacebench\.core\.adapters import .*\n",
                "from pacebench.core.adapters import mypart  # noqa: F401  (registration)\n",
            )
        ),
    },
    """
import torch
from pacebench.core import adapters

assert {"mypart", "mypart+vpt_add"} <= set(adapters.PART_KINDS), adapters.PART_KINDS
model = tiny_vit().eval()
adapters.inject(model, "mypart+vpt_add", 2)
with torch.no_grad():
    for p in adapters.adapter_parameters(model):
        p.normal_(0, 0.1)  # a merge test with zero adapters proves nothing
x = torch.randn(2, 3, 32, 32)
with torch.no_grad():
    unmerged = model(x)
    with adapters.merged(model):
        merged = model(x)
torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-4)
""",
)

# ---- a suite and its paper table -------------------------------------------------------------------------------

SUITE = Extension(
    {
        "benchmarks/mysuite.toml": New("""# My suite: two data sets in VTAB-1k's layout, ViT-B/16 (ImageNet-21k).
name = "mysuite"
description = "My suite: two VTAB-1k-style data sets, ViT-B/16 (IN-21k)"
reader = "vtab"
backbone = "vit_b16_in21k"
data_dir = "mysuite"

[reference]
table = "reference/table11_mysuite.csv"

[reference.report]
name = "mysuite"
number = 11
aliases = ["11", "table11"]
layout = "datasets"
description = "Table 11: my suite"
rows = { baseline = "LoRA+VPT", pace = "+PACE" }
notes = ["cells: mean test accuracy over seeds; 'mean' is the plain mean of the datasets"]

[train]
epochs = 100

[datasets.alpha]
classes = 10
aliases = ["a"]

[datasets.beta]
classes = 5
"""),
        "benchmarks/reference/table11_mysuite.csv": New(
            "method,alpha,beta,mean\nLoRA+VPT,70.0,80.0,75.0\n+PACE,72.0,83.0,77.5\n"
        ),
    },
    """
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.suites import all_suites
from pacebench.report.select import tables
from pacebench.report.tables import gather
from pacebench.store import MemoryStore

assert "mysuite" in all_suites()
entry = tables().get("table11")
assert (entry.name, entry.suite, entry.paper.number) == ("mysuite", "mysuite", 11), entry
specs = plan(PlanRequest(suite="mysuite", methods=["baseline", "pace"]), sha=lambda backbone, weights: "1" * 64)
assert [(s.dataset, s.method, s.train.epochs) for s in specs] == [
    ("alpha", "baseline", 100), ("alpha", "pace", 100), ("beta", "baseline", 100), ("beta", "pace", 100)]
store = MemoryStore()
for spec, acc in zip(specs, [71.0, 73.0, 81.0, 84.0]):
    finished(store, spec, test_acc=acc)
frame = gather("mysuite", store).frame.set_index(["method", "source"])
assert frame.loc[("pace", "measured"), ["alpha", "beta", "mean"]].tolist() == [73.0, 84.0, 78.5], frame
assert frame.loc[("pace", "paper (+PACE)"), ["alpha", "beta", "mean"]].tolist() == [72.0, 83.0, 77.5], frame
""",
)

# ---- a table over any suite ------------------------------------------------------------------------------------

TABLE = Extension(
    {
        "pacebench/report/select.py": edit(
            (
                r"^CODE_TABLES = \((?:\n    .*)*",
                '\n    TableEntry("mytable", "Per data set and method: test accuracy, mean ± std over seeds", Reads(),'
                '\n               aliases=("mine",)),',
            )
        ),
        "pacebench/report/tables/summary.py": append('''

@gatherer("mytable")
def my_table(store: Store, entry: TableEntry, suite: str | None = None, dataset: str | None = None) -> TableData:
    """Per data set and method: test accuracy, mean ± std over seeds (one setting per cell)."""
    assert entry.reads is not None
    runs = entry.reads.runs(store, suite, dataset)
    if not runs:
        raise PacebenchError("no finished phase-final runs; run `pacebench run demo` first")
    notes: list[str] = []
    records = []
    for row in rows(runs, lambda r: (data_label(r), r.method), notes):
        [cell] = row.cells
        test = cell.values(metric("test_acc"))
        records.append({"data": row.key[0], "method": row.key[1], "seeds": row.seeds, TEST: mean(test),
                        TEST_STD: std(test)})
    return TableData("Test accuracy per method", pd.DataFrame(records), [*phase_notes(runs), *notes],
                     pm={TEST: TEST_STD}, formats=SUMMARY_FORMATS, headline=("data", "method", TEST))
'''),
    },
    """
from pacebench.plan.planner import PlanRequest, plan
from pacebench.report.render import render
from pacebench.report.select import CODE_TABLES, tables
from pacebench.report.tables import gather
from pacebench.report.tables.base import GATHERS
from pacebench.store import MemoryStore

assert tables().get("mine").name == "mytable"
store = MemoryStore()
for spec, acc in zip(plan(PlanRequest(suite="demo", methods=["baseline"], seeds=[0, 1])), [80.0, 84.0]):
    finished(store, spec, test_acc=acc)
data = gather("mine", store)
assert data.frame[["method", "seeds", "test acc"]].values.tolist() == [["baseline", 2, 82.0]], data.frame
assert "82.00 ± 2.83" in render(data, "md")
assert sorted(GATHERS.names()) == sorted(t.name for t in CODE_TABLES), "every code table has one gather step"
""",
)

# ---- a figure --------------------------------------------------------------------------------------------------

FIGURE_DRAWING = '''

def final_accuracy_data(store: Storage, suite: str | None = None, dataset: str | None = None,
                        phase: str = "final") -> pd.DataFrame:
    """Per method: the test accuracy at the end of training, spread over seeds."""
    runs = select_runs(store, "final-accuracy", suite, dataset, phase)
    rows = [{"method": r.method, "value": float(r.metrics["test_acc"])} for r in runs
            if r.metrics.get("test_acc") is not None]
    return _titled(_spread(rows, ["method"], runs, phase, "test accuracy"), "test accuracy")


def _draw_final_accuracy(frame: pd.DataFrame, fig: Any) -> None:
    ax = fig.add_subplot()
    ax.bar(frame["method"], frame["mean"], yerr=[frame["mean"] - frame["min"], frame["max"] - frame["mean"]])
    ax.set_ylabel("test accuracy (%)")


DRAWINGS.register("final-accuracy")(Drawing(final_accuracy_data, _draw_final_accuracy))
'''

FIGURE = Extension(
    {
        "pacebench/report/select.py": edit(
            (r"^for _figure in \((?:\n    .*)*", '\n    FigureEntry("final-accuracy", "Fig. 9"),')
        ),
        "pacebench/report/figures.py": append(FIGURE_DRAWING),
    },
    """
from pacebench.plan.planner import PlanRequest, plan
from pacebench.report.figures import DRAWINGS, gather_figure, render_figure
from pacebench.report.select import FIGURES
from pacebench.store import MemoryStore

store = MemoryStore()
for spec, acc in zip(plan(PlanRequest(suite="demo", seeds=[0, 1])), [80.0, 82.0, 85.0, 87.0]):
    finished(store, spec, test_acc=acc)
frame = gather_figure("final-accuracy", store, suite="demo")
assert frame[["method", "mean"]].values.tolist() == [["baseline", 81.0], ["pace", 86.0]], frame
assert render_figure("final-accuracy", frame).startswith(b"\\x89PNG")
assert DRAWINGS.names() == FIGURES.names(), "every figure has one drawing, in the same order"
""",
)

# ---- a figure with its own sweep -------------------------------------------------------------------------------

SWEEP = Extension(
    {
        "pacebench/report/select.py": edit(
            (r"^for _figure in \((?:\n    .*)*", '\n    FigureEntry("sigma-sweep", "Fig. 10", Reads(sweep="mysweep")),')
        ),
        "pacebench/report/figures.py": append('''

def sigma_sweep_data(store: Storage, suite: str | None = None, dataset: str | None = None, phase: str | None = None,
                     options: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per method and σ: the validation accuracy of the sweep's runs, spread over seeds (the baseline has no σ)."""
    phase = phase or sweep_of("sigma-sweep").phase
    runs = select_runs(store, "sigma-sweep", suite, dataset, phase, options)
    rows = [{"method": r.method, "sigma": float(r.method_config.get("sigma", math.nan)),
             "value": float(r.metrics["val_acc"])} for r in runs if r.metrics.get("val_acc") is not None]
    return _titled(_spread(rows, ["method", "sigma"], runs, phase, "validation accuracy"), "val accuracy over σ")


def _draw_sigma_sweep(frame: pd.DataFrame, fig: Any) -> None:
    ax = fig.add_subplot()
    for method, part in frame.groupby("method"):
        if part["sigma"].isna().all():
            ax.axhline(part["mean"].iloc[0], linestyle="--", label=method)
        else:
            ax.plot(part["sigma"], part["mean"], marker="o", label=method)
    ax.set_xlabel("σ")
    ax.set_ylabel("val accuracy (%)")
    ax.legend()


DRAWINGS.register("sigma-sweep")(Drawing(sigma_sweep_data, _draw_sigma_sweep))
'''),
        "pacebench/plan/sweeps.py": append("""
SWEEPS.register("mysweep")(Sweep("mysweep", "pace over σ 0.5-2, the baseline beside (tune phase)",
                                 {"baseline": {}, "pace": {"sigma": [0.5, 1.0, 2.0]}}, "tune", "sigma-sweep"))
"""),
    },
    """
from typer.testing import CliRunner

from pacebench.choices import Phase
from pacebench.cli import app
from pacebench.plan.planner import PlanRequest
from pacebench.plan.sweeps import SWEEPS, plan_grids
from pacebench.report.figures import DRAWINGS, gather_figure, render_figure
from pacebench.report.select import FIGURES
from pacebench.store import MemoryStore

sweep = SWEEPS.get("mysweep")
assert sweep.draws == "sigma-sweep" and FIGURES.get("sigma-sweep").reads.methods() == ["baseline", "pace"]
shown = CliRunner().invoke(app, ["sweep", "mysweep", "--suite", "demo", "--dry-run", "--db", f"sqlite:///{TMP}/r.db"],
                           env={"COLUMNS": "200"})
assert shown.exit_code == 0 and shown.output.count("todo") == 4 and "sigma=2.0" in shown.output, shown.output
specs = plan_grids(PlanRequest(suite="demo", phase=Phase(sweep.phase)), sweep.method_grids())
store = MemoryStore()
for spec, acc in zip(specs, [70.0, 71.0, 74.0, 72.0]):
    finished(store, spec, val_acc=acc, test_acc=acc)
frame = gather_figure("sigma-sweep", store, suite="demo")
assert frame[frame["method"] == "pace"][["sigma", "mean"]].values.tolist() == [[0.5, 71.0], [1.0, 74.0],
                                                                                 [2.0, 72.0]], frame
assert render_figure("sigma-sweep", frame).startswith(b"\\x89PNG")
assert DRAWINGS.names() == FIGURES.names()
""",
)

# ---- a text task -----------------------------------------------------------------------------------------------

TEXT = Extension(
    {
        "pacebench/text/tasks.py": Edit(
            (
                (r"^from pacebench\.data\.text import \(\n", "    mytask_files,\n"),
                (
                    "",
                    '''

@TASKS.register("mytask")
class MyTask(TextTask):
    """Sentences from JSON lines, one class each; a sequence-classification head; dev scored by accuracy."""

    kind = "classify"
    reported = REPORTED["mytask"]

    def splits(self, root: Path, phase: str) -> TextSplits:
        return text_splits(mytask_files(root), self.reported, phase)

    def num_labels(self) -> int:
        return self.num_classes

    def objective(self) -> Objective:
        return CLASSIFICATION

    def encode(self, examples: list[Example], tokenizer: Any) -> list[Item]:
        ids = tokenizer([e.texts[0] for e in examples], truncation=True,
                        max_length=self.settings.max_seq_len)["input_ids"]
        return [(list(i), e.label) for i, e in zip(ids, examples, strict=True)]

    @torch.no_grad()
    def evaluate(self, model: Any, examples: list[Example], tokenizer: Any, batch_size: int, device: torch.device,
                 autocast: Callable[[], Any]) -> Scored:
        loader = torch.utils.data.DataLoader(Items(self.encoded(examples, tokenizer)), batch_size=batch_size,
                                             collate_fn=collate(tokenizer.pad_token_id, self.label_dtype()))
        model.eval()
        with autocast():
            pairs = [(model(x.to(device)).argmax(-1).cpu(), y) for x, y, _ in loader]
        predicted, gold = torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs])
        right = (predicted == gold).numpy()
        return Scored(100.0 * float(right.mean()), predicted.numpy(), gold.numpy(), right, "accuracy")
''',
                ),
            )
        ),
        "pacebench/data/text.py": Edit(
            (
                (r"^REPORTED = \{[^}]*", ', "mytask": "dev"'),
                (
                    r"^REPORTED = .*\n",
                    '''

def read_sentences(path: Path) -> list[Example]:
    """mytask's files: one {"text": ..., "label": class id} object a line."""
    if not path.is_file():
        raise DataError(f"missing {path} (one JSON object a line: text, label)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Example((str(r["text"]),), int(r["label"])) for r in rows]


def mytask_files(root: Path) -> dict[str, tuple[Path, Callable[[Path], list[Example]]]]:
    return {split: (root / f"{split}.jsonl", read_sentences) for split in ("train", "dev")}


def mytask_layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    return _layout(mytask_files(root), REPORTED["mytask"], phase)

''',
                ),
                (r"^LAYOUTS: dict\[str, LayoutFn\] = \{[^}]*", ', "mytask": mytask_layout'),
            )
        ),
        "benchmarks/mytext.toml": New("""# My sentences with RoBERTa-base + LoRA (q, v): dev accuracy.
name = "mytext"
description = "My sentences: dev accuracy; RoBERTa-base + LoRA (q, v)"
reader = "mytask"
data_dir = "mytext"
backbone = "roberta_base"

[train]
adapter = "lora:query,value"
rank = 8
epochs = 3
eval_every = 1
warmup_epochs = 0  # unused by text runs
drop_path = 0.0    # unused by text runs

[datasets.sentences]
classes = 2
options = { max_seq_len = [128] }
"""),
    },
    """
import json
import torch
from pacebench.data.base import data_options
from pacebench.data.check import check_dataset
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.suites import load_suite
from pacebench.text.tasks import TASKS

specs = plan(PlanRequest(suite="mytext", methods=["baseline", "pace"]), sha=lambda backbone, weights: "1" * 64)
assert [(s.dataset, s.method, s.train.adapter) for s in specs] == [
    ("sentences", "baseline", "lora:query,value"), ("sentences", "pace", "lora:query,value")], specs
suite = load_suite("mytext")
ds = suite.dataset("sentences")
root = TMP / "data" / "mytext" / "sentences"
root.mkdir(parents=True)
for split, n in (("train", 20), ("dev", 6)):
    lines = [json.dumps({"text": f"sentence {i}", "label": i % 2}) for i in range(n)]
    (root / f"{split}.jsonl").write_text("\\n".join(lines) + "\\n")
assert check_dataset(suite, ds, TMP / "data").status == "found"  # `pacebench data check`
task = TASKS.get(suite.reader)(ds.name, ds.classes, data_options(ds, specs[1].data_options))  # as the trainer
splits = task.splits(root, "final")
assert (len(splits.train), [len(v) for v in splits.evals.values()]) == (20, [6])
assert len(task.splits(root, "tune").train) == 18  # phase 1 holds out 10% of train
items = task.encode(splits.train[:2], lambda texts, **kw: {"input_ids": [[1, 2, 3] for _ in texts]})
assert items == [([1, 2, 3], 0), ([1, 2, 3], 1)] and task.settings.max_seq_len == 128
assert "pace" in task.methods() and task.objective().loss(torch.zeros(2, 2), torch.tensor([0, 1])) > 0
""",
)

# ---- the other registries --------------------------------------------------------------------------------------

NOISE = Extension(
    {
        "pacebench/core/noise.py": append('''

@NOISES.register("uniform_mul")
def uniform_mul(t: Tensor, sigma: float) -> Tensor:
    """Δh ⊙ z with z ~ U(1 - σ√3, 1 + σ√3): mean 1 and standard deviation σ, as PACE's z."""
    u = torch.rand(noise_shape(t), device=t.device, dtype=t.dtype)
    return t * (1 + sigma * 3 ** 0.5 * (2 * u - 1))
'''),
    },
    """
import torch
from pacebench.core import adapters
from pacebench.core.noise import NOISES, Noise

z = NOISES.get("uniform_mul")(torch.ones(4000, 1, 64), 0.5)
assert abs(z.mean().item() - 1) < 0.01 and abs(z.std().item() - 0.5) < 0.01 and z.min() >= 1 - 0.5 * 3 ** 0.5
scale, shift = Noise("uniform_mul", 0.5).train().factors(torch.ones(3, 5, 8))
assert scale.shape == (3, 1, 8) and shift is None
model = tiny_vit()
adapters.inject(model, "lora_mul+vpt_add", 2)
with torch.no_grad():
    for p in adapters.adapter_parameters(model):
        p.normal_(0, 0.1)
sigmas = adapters.apply_noise(model.train(), "uniform_mul", 1.0)
x = torch.randn(2, 3, 32, 32)
assert len(sigmas) == 7 and not torch.equal(model(x), model(x)), "the noise is drawn in training"
""",
)

SCHEDULE = Extension(
    {
        "pacebench/choices.py": enum_member("Schedule", 'head_only = "head_only"  # σ on the head only'),
        "pacebench/core/noise.py": append('''

@SCHEDULES.register(Schedule.head_only)
def head_only_schedule(family: str, depth: int, sigma: float) -> list[float]:
    """σ on the classification head only, none on the blocks."""
    return [0.0] * depth + [sigma]
'''),
    },
    """
from pacebench.choices import Schedule
from pacebench.core.methods import METHODS
from pacebench.core.noise import SCHEDULES, schedule

assert schedule("head_only", "vit", 3, 1.5) == [0.0, 0.0, 0.0, 1.5]
assert METHODS.get("pace").make_config({"schedule": "head_only"}).schedule == "head_only"
assert list(SCHEDULES.names()) == list(Schedule), "every schedule has one implementation, in the enum's order"
""",
)

FORMAT = Extension(
    {
        "pacebench/choices.py": enum_member("Format", 'tsv = "tsv"'),
        "pacebench/report/render.py": append('''

@FORMATS.register(Format.tsv)
def to_tsv(data: TableData, wide: bool = True) -> str:
    """Tab-separated values, std columns kept separate, missing values as "–"."""
    return data.frame.to_csv(sep="\\t", index=False, na_rep=MISSING, float_format="%.6g", lineterminator="\\n")
'''),
    },
    """
from pacebench.choices import Format
from pacebench.plan.planner import PlanRequest, plan
from pacebench.report.render import FORMATS, render_table
from pacebench.store import MemoryStore

store = MemoryStore()
[spec] = plan(PlanRequest(suite="demo", methods=["baseline"]))
finished(store, spec, test_acc=80.0, train_acc=90.0)
text = render_table("demo", store, Format("tsv"))
assert text.splitlines()[0].startswith("method\\t") and "\\t80\\t" in text, text
assert sorted(FORMATS.names()) == sorted(Format), "every format has one renderer"
""",
)

TABLE_LAYOUT = Extension(
    {
        "pacebench/choices.py": enum_member(
            "TableLayout", 'gap = "gap"  # a column per dataset: train - test accuracy'
        ),
        "pacebench/report/tables/paper.py": append('''

@LAYOUTS.register(TableLayout.gap)
def by_gap(title: str, suite: Suite, table: PaperTable, runs: list[RunRecord]) -> TableData:
    """A column per dataset: the generalisation gap (train - test accuracy), then their plain mean."""

    def values(run: RunRecord) -> dict[str, float]:
        train, test = run.metrics.get("train_acc"), test_acc(run)
        return {} if train is None or test is None else {run.dataset: float(train) - test}

    return _wide(title, suite, table, runs, list(suite.datasets), values, lambda row: {"mean": mean(row.values())})
'''),
    },
    """
import os
from pacebench.choices import TableLayout
from pacebench.plan.planner import PlanRequest, plan
from pacebench.plan.suites import load_suite
from pacebench.report.tables import gather
from pacebench.report.tables.paper import LAYOUTS
from pacebench.store import MemoryStore

demo = load_suite("demo").path.read_text(encoding="utf-8").replace('name = "demo"', 'name = "gapdemo"')
report = '[reference.report]\\nname = "gaps"\\ntitle = "Gaps"\\nlayout = "gap"\\nrows = {}\\n'
(TMP / "gap.toml").write_text(demo + "\\n" + report)
os.environ["PACEBENCH_SUITES"] = str(TMP)  # a suite of the user's own that asks for the layout
store = MemoryStore()
[spec] = plan(PlanRequest(suite="gapdemo", methods=["baseline"]))
finished(store, spec, test_acc=80.0, train_acc=95.0)
frame = gather("gaps", store).frame
assert frame[["method", "digits", "mean"]].values.tolist() == [["baseline", 15.0, 15.0]], frame
assert sorted(LAYOUTS.names()) == sorted(TableLayout), "every layout has one function"
""",
)

DATA_LAYOUT = Extension(
    {
        "pacebench/data/mylayout.py": New('''"""Reader "mylayout": a folder per split, a sub-folder per class.

    <data root>/<data_dir>/<dataset>/
        train/<class>/*.png     the class sub-folders in sorted order are classes 0..K-1
        val/<class>/*.png
        test/<class>/*.png

Phase "tune" trains on train and scores on val; phase "final" trains on train + val and scores on test.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pacebench.data.base import Layout, Source, for_phase, register_layout
from pacebench.data.images import ImageDir, Item
from pacebench.data.transforms import crop_eval_transform, crop_train_transform
from pacebench.errors import DataError

SPLITS = {"tune": (("train",), {"val": "val"}), "final": (("train", "val"), {"test": "test"})}


def read_folder(path: Path, num_classes: int) -> list[Item]:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    if not classes:
        raise DataError(f"missing split folder {path}; put a sub-folder of images per class there")
    if len(classes) > num_classes:
        raise DataError(f"{path} has {len(classes)} class folders, the suite says {num_classes}; fix 'classes'")
    return [(image, label) for label, name in enumerate(classes) for image in sorted((path / name).iterdir())]


def _source(root: Path, split: str, num_classes: int) -> Source:
    return Source(split, root / split, partial(read_folder, root / split, num_classes), ImageDir(root))


@register_layout("mylayout", crop_train_transform, crop_eval_transform,
                 splits={"tune": ("train", ("val",)), "final": ("train+val", ("test",))})
def layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    train, evals = for_phase(SPLITS, phase)
    return Layout(tuple(_source(root, s, num_classes) for s in train),
                  {name: _source(root, s, num_classes) for name, s in evals.items()})
'''),
        "pacebench/data/__init__.py": edit(
            (
                r"^from pacebench\.data import .*\n",
                "from pacebench.data import mylayout  # noqa: F401  (registration)\n",
            )
        ),
    },
    """
from PIL import Image
from pacebench.data import READERS, DataRequest
from pacebench.data.check import check_dataset
from pacebench.plan.suites import parse_suite

root = TMP / "data" / "mine" / "shapes"
for split, n in (("train", 3), ("val", 1), ("test", 2)):
    for label, name in enumerate(("circle", "square")):
        (root / split / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (20, 20), (40 * i, 100 * label, 50)).save(root / split / name / f"{i}.png")
(TMP / "mine.toml").write_text('reader = "mylayout"\\nbackbone = "vit_demo"\\ndata_dir = "mine"\\n'
                               '[datasets.shapes]\\nclasses = 2\\n')
suite = parse_suite(TMP / "mine.toml")
assert check_dataset(suite, suite.dataset("shapes"), TMP / "data").status == "found"  # `pacebench data check`
splits = READERS.get("mylayout")(DataRequest(root, "shapes", "final", 2, image_size=16))
assert (len(splits.train), len(splits.evals["test"])) == (8, 4)
image, label, index = splits.train[7]
assert tuple(image.shape) == (3, 16, 16) and (label, index) == (1, 7)
""",
)

EXTENSIONS: dict[str, Extension] = {  # doc heading -> the extension its line describes
    "A method": METHOD,
    "A Table-6 ablation": TABLE6_METHOD,
    "An adapter kind": KIND,
    "A part of the paper's adapter family": PART,
    "A suite and its paper table": SUITE,
    "A table over any suite": TABLE,
    "A figure": FIGURE,
    "A figure with its own sweep": SWEEP,
    "A text task": TEXT,
    "A noise kind": NOISE,
    "A σ schedule": SCHEDULE,
    "A table format": FORMAT,
    "A paper-table layout": TABLE_LAYOUT,
    "A data layout": DATA_LAYOUT,
}

# ---- building the copies and checking them ---------------------------------------------------------------------


def in_copy(copy: Path, path: str) -> Path:
    """Where a repository path lies in a copy laid out as the wheel: benchmarks/ is pacebench/benchmarks/."""
    assert path.startswith(("pacebench/", "benchmarks/")), f"{path}: the doc names files of pacebench/ or benchmarks/"
    return copy / ("pacebench/" + path if path.startswith("benchmarks/") else path)


def build(copy: Path, files: dict[str, New | Edit]) -> Path:
    """A copy of the package with `files` written."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "pacebench", copy / "pacebench", ignore=ignore)
    shutil.copytree(ROOT / "benchmarks", copy / "pacebench" / "benchmarks", ignore=ignore)
    for path, change in files.items():
        target = in_copy(copy, path)
        if isinstance(change, New):
            assert not target.exists(), f"{path} exists already: a new file must be new"
            target.write_text(change.text, encoding="utf-8")
            continue
        assert target.is_file(), f"{path} does not exist: nothing to edit"
        text = target.read_text(encoding="utf-8")
        for after, insert in change.inserts:
            if not after:
                text += insert
                continue
            found = list(re.finditer(after, text, flags=re.M))
            assert len(found) == 1, (
                f"{path}: {len(found)} matches of {after!r}, expected one (the code changed: "
                "update this test and docs/extending.md together)"
            )
            text = text[: found[0].end()] + insert + text[found[0].end() :]
        target.write_text(text, encoding="utf-8")
    return copy


RUNNER = '''
import importlib, json, os, sys, traceback
from pathlib import Path

import torch

torch.set_num_threads(1)
job = json.loads(sys.argv[1])
roots = [job["all"], *job["without"].values()]


def load(root):
    """Imports pacebench from `root`: the full copy through PYTHONPATH, as it stands; a copy without a file afresh,
    in its place (the heavy libraries stay imported: that is the time saved)."""
    if root != job["all"]:
        for name in [m for m in sys.modules if m == "pacebench" or m.startswith("pacebench.")]:
            del sys.modules[name]
        sys.path[:] = [root, *[p for p in sys.path if p not in roots]]
        importlib.invalidate_caches()
    import pacebench.benchmarks
    for module in (sys.modules["pacebench"], pacebench.benchmarks):
        where = Path(module.__file__).resolve()
        if not where.is_relative_to(Path(root).resolve()):
            raise SystemExit(f"{module.__name__} was imported from {where}, not from the copy {root}")


def outcome(root, tmp):
    environ = dict(os.environ)
    load(root)
    Path(tmp).mkdir(parents=True)
    try:
        exec(compile(job["prelude"] + job["check"], "<check>", "exec"), {"__name__": "check", "TMP": Path(tmp)})
    except Exception:
        return traceback.format_exc()
    finally:
        os.environ.clear()
        os.environ.update(environ)
    return "live"


result = {"all": outcome(job["all"], job["tmp"] + "/all")}
for i, (path, root) in enumerate(job["without"].items()):
    result[path] = outcome(root, job["tmp"] + f"/without{i}")
print("RESULT " + json.dumps(result))
'''


def run_checks(tmp: Path, extension: Extension) -> dict[str, str]:
    """ "live" or the traceback, for the copy with every file of `extension` ("all") and for each copy without one
    of them (by that file's path), all from one interpreter that finds the full copy through PYTHONPATH."""
    full = build(tmp / "all", extension.files)
    without = {
        path: str(build(tmp / f"without{i}", {p: c for p, c in extension.files.items() if p != path}))
        for i, path in enumerate(extension.files)
    }
    job = {
        "all": str(full),
        "without": without,
        "prelude": PRELUDE,
        "check": extension.check,
        "tmp": str(tmp / "check"),
    }
    env = {k: v for k, v in os.environ.items() if k != "PACEBENCH_SUITES"} | {"PYTHONPATH": str(full)}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(job)], cwd=tmp, env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"the checking interpreter failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1].removeprefix("RESULT "))


SECTIONS = doc_sections()


def test_every_files_line_of_the_doc_is_checked_here():
    assert list(SECTIONS) == list(EXTENSIONS), "docs/extending.md's sections with a 'Files that change' line"


@pytest.mark.parametrize("heading", list(EXTENSIONS))
def test_the_files_the_doc_names_make_the_extension_live_and_each_is_needed(heading, tmp_path):
    assert heading in SECTIONS, f"docs/extending.md has no section {heading!r} with a 'Files that change' line"
    count, entries = SECTIONS[heading]
    extension = EXTENSIONS[heading]
    paths = [path for path, _ in entries]
    assert count == len(paths), f"{heading}: the line says {count} files and names {len(paths)}"
    assert sorted(paths) == sorted(extension.files), (
        f"{heading}: the doc names {paths}, the extension writes {sorted(extension.files)}"
    )
    for path, what in entries:
        is_new = isinstance(extension.files[path], New)
        assert (what == "new") == is_new, f"{heading}: {path} is {'new' if is_new else 'edited'}, the doc says {what!r}"
        if not is_new and " " not in what.replace(", ", ""):  # names in the file (a CSV's "(a row)" names none)
            text = (ROOT / path).read_text(encoding="utf-8")
            missing = [name for name in what.split(", ") if name not in text]
            assert not missing, f"{heading}: {path} has no {missing[0]!r} to change"
    result = run_checks(tmp_path, extension)
    assert result["all"] == "live", f"{heading}: not live with the files the doc names:\n{result['all']}"
    needless = [path for path in paths if result[path] == "live"]
    assert not needless, f"{heading}: live without {needless}: the doc names a file the extension does not need"
