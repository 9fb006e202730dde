"""Text data from local files: GLUE (the original TSVs or the Hugging Face parquet export) and GSM-8K (JSON lines).

Readers return plain `Example`s (texts and a label); tokenizing is the trainer's job, so `pacebench data check` needs
neither torch nor transformers. Each registers a `Reader` whose layout names its files, as the image readers do, so
the data checker and the pre-flight check of `pacebench run` approve exactly what runs read; the text trainer reads
the examples itself (`text_splits`).

Phases: "final" trains on the train split and scores on the reported split (GLUE: dev, as the LoRA and VeRA papers
report; GSM-8K: test). "tune" never opens the reported split: it holds out a fixed 10% of the train split (the same
permutation for every run) and scores on that.
"""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacebench.data.base import READERS, DataRequest, Layout, LayoutFn, Reader, Source, Splits, for_phase
from pacebench.data.images import ImageDir
from pacebench.errors import DataError, UsageError

HOLDOUT = 0.1  # phase "tune": share of the train split held out for validation
HOLDOUT_SEED = 0


@dataclass(frozen=True)
class Example:
    texts: tuple[str, ...]  # GLUE: one sentence or a pair; GSM-8K: (question, answer)
    label: Any  # class id, STS-B's score, or GSM-8K's final number (a string)


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task lies on disk and how it is scored.

    `tsv_text` / `tsv_label` name the original TSV's columns by header name or by position (CoLA has no header; -1,
    the last field, is where the Hugging Face GLUE processors read RTE's, QNLI's and STS-B's label, since a few rows
    carry extra fields); `text` names the parquet export's columns; `labels` maps the TSV's label strings to the
    export's class ids (so both formats give the same ids)."""

    metric: str  # "mcc" | "pearson" | "accuracy"
    text: tuple[str, ...]
    tsv_text: tuple[str | int, ...]
    tsv_label: str | int
    labels: Mapping[str, int] | None = None
    header: bool = True

    @property
    def regression(self) -> bool:
        return self.metric == "pearson"


NLI = {"entailment": 0, "not_entailment": 1}
GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("mcc", ("sentence",), (3,), 1, header=False),
    "sst2": GlueTask("accuracy", ("sentence",), ("sentence",), "label"),
    "mrpc": GlueTask("accuracy", ("sentence1", "sentence2"), ("#1 String", "#2 String"), "Quality"),
    "rte": GlueTask("accuracy", ("sentence1", "sentence2"), ("sentence1", "sentence2"), -1, NLI),
    "qnli": GlueTask("accuracy", ("question", "sentence"), ("question", "sentence"), -1, NLI),
    "stsb": GlueTask("pearson", ("sentence1", "sentence2"), ("sentence1", "sentence2"), -1),
}
GLUE_FILES = {"train": ("train.tsv", "train"), "dev": ("dev.tsv", "validation")}  # split -> (TSV, parquet prefix)


def glue_task(name: str) -> GlueTask:
    if name not in GLUE_TASKS:
        raise DataError(f"no GLUE reader for dataset {name!r}; pacebench reads {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[name]


def glue_file(root: Path, split: str) -> Path:
    """The split's file: the original TSV if present, else the parquet export (`train-*.parquet`,
    `validation-*.parquet`, or those names without the shard suffix)."""
    tsv, prefix = GLUE_FILES[split]
    if (root / tsv).is_file():
        return root / tsv
    shards = sorted(root.glob(f"{prefix}-*.parquet")) or sorted(root.glob(f"{prefix}.parquet"))
    if len(shards) > 1:
        raise DataError(f"{root} holds {len(shards)} {prefix} parquet shards; pacebench reads one file per split")
    if not shards:
        raise DataError(f"missing {root / tsv} (or the parquet export's {prefix}-*.parquet) for the {split} split")
    return shards[0]


def _tsv_rows(path: Path, task: GlueTask) -> list[Example]:
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8-sig", newline="") as f:  # MRPC's files start with a byte-order mark
        lines = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))  # GLUE's TSVs are unquoted
    header = lines[0] if task.header and lines else []
    body = lines[1:] if task.header else lines

    def column(key: str | int) -> int:
        if isinstance(key, int):
            return key
        if key not in header:
            raise DataError(f"{path}: no column {key!r} in the header {header}; is this the {path.parent.name} TSV?")
        return header.index(key)

    text_cols, label_col = [column(k) for k in task.tsv_text], column(task.tsv_label)
    width = max([*text_cols, label_col]) + 1 if label_col >= 0 else max(text_cols) + 2  # -1: a field after the texts
    examples = []
    for number, row in enumerate(body, start=2 if task.header else 1):
        if len(row) < width:
            raise DataError(f"{path} line {number}: {len(row)} tab-separated fields, expected at least {width}")
        label = _label(task, row[label_col], f"{path} line {number}")
        examples.append(Example(tuple(row[c] for c in text_cols), label))
    return examples


def _parquet_rows(path: Path, task: GlueTask) -> list[Example]:
    import pandas as pd  # lazy: only GLUE's parquet export needs it

    try:
        frame = pd.read_parquet(path, columns=[*task.text, "label"])
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise DataError(
            f"cannot read {path}: {str(exc).splitlines()[0]} (needs pyarrow: pip install "
            f"'pacebench[text]'; columns {', '.join([*task.text, 'label'])})"
        ) from None
    texts = zip(*(frame[c].astype(str) for c in task.text), strict=True)
    labels = frame["label"].tolist()
    return [Example(tuple(t), _label(task, labels[i], f"{path} row {i}")) for i, t in enumerate(texts)]


def _label(task: GlueTask, raw: Any, where: str) -> Any:
    try:
        if task.regression:
            return float(raw)
        if task.labels is not None and isinstance(raw, str) and raw in task.labels:
            return task.labels[raw]
        return int(raw)
    except (TypeError, ValueError):
        known = f" (or one of {', '.join(task.labels)})" if task.labels else ""
        raise DataError(
            f"{where}: label {raw!r} is not a {'number' if task.regression else 'class id'}{known}; "
            "GLUE's test split has no labels: the reported split is dev"
        ) from None


def read_glue(path: Path, dataset: str, num_classes: int) -> list[Example]:
    """One GLUE split file; classification labels must lie in [0, num_classes) (the export marks the unlabelled
    test split with -1)."""
    if not path.is_file():
        raise DataError(f"missing GLUE file {path}")
    task = glue_task(dataset)
    rows = _parquet_rows(path, task) if path.suffix == ".parquet" else _tsv_rows(path, task)
    if not task.regression:
        bad = next((i for i, r in enumerate(rows) if not 0 <= r.label < num_classes), None)
        if bad is not None:
            raise DataError(f"{path}: example {bad} has label {rows[bad].label}, outside 0..{num_classes - 1}")
    return rows


ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)
NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def normalize_number(text: str) -> str | None:
    """A number as GSM-8K compares them: no thousands separators, no dollar sign, no trailing '.0'."""
    found = NUMBER.search(text)
    if not found:
        return None
    value = found.group().replace(",", "").replace("$", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


def final_number(text: str) -> str | None:
    """The answer a text gives: the number after the first '####' if there is one, else the last number in it."""
    if "####" in text:
        return normalize_number(text.split("####", 1)[1])
    numbers = NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def read_gsm8k(path: Path) -> list[Example]:
    """GSM-8K's `train.jsonl` / `test.jsonl`: one {"question", "answer"} object a line, the answer ending '#### N'."""
    if not path.is_file():
        raise DataError(f"missing GSM-8K file {path} (the original train.jsonl / test.jsonl)")
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                question, answer = str(row["question"]), str(row["answer"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{path} line {number}: expected a JSON object with 'question' and 'answer'") from None
            match = ANSWER.search(answer)
            target = normalize_number(match.group(1)) if match else None
            if target is None:
                raise DataError(f"{path} line {number}: the answer does not end in '#### <number>'")
            examples.append(Example((question, answer), target))
    if not examples:
        raise DataError(f"{path} holds no examples")
    return examples


# ---- phases and layouts ---------------------------------------------------------------------------------------


def holdout(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """Phase "tune": (train part, held-out part), the same fixed permutation for every run."""
    order = list(range(len(examples)))
    random.Random(HOLDOUT_SEED).shuffle(order)
    n_val = max(1, round(HOLDOUT * len(examples)))
    return [examples[i] for i in sorted(order[n_val:])], [examples[i] for i in sorted(order[:n_val])]


@dataclass
class TextSplits:
    train: list[Example]
    evals: dict[str, list[Example]]


Files = Callable[[Path], dict[str, tuple[Path, Callable[[Path], list[Example]]]]]  # root -> split -> (file, read)


def text_splits(
    files: dict[str, tuple[Path, Callable[[Path], list[Example]]]], reported: str, phase: str
) -> TextSplits:
    """Reads the splits a phase needs (see the module docstring)."""
    train_file, read = files["train"]
    if for_phase({"final": "final", "tune": "tune"}, phase) == "tune":
        train, val = holdout(read(train_file))
        return TextSplits(train, {"val": val})
    path, read_eval = files[reported]
    return TextSplits(read(train_file), {reported: read_eval(path)})


def glue_files(root: Path, dataset: str, num_classes: int) -> dict[str, tuple[Path, Callable[[Path], list[Example]]]]:
    def read(p: Path) -> list[Example]:
        return read_glue(p, dataset, num_classes)

    return {split: (glue_file(root, split), read) for split in GLUE_FILES}


def gsm8k_files(root: Path) -> dict[str, tuple[Path, Callable[[Path], list[Example]]]]:
    return {split: (root / f"{split}.jsonl", read_gsm8k) for split in ("train", "test")}


class DataFiles(ImageDir):
    """Stands in for the image folder of a text `Source`, whose items all name the data file itself: reading the
    file (`Source.read`) is the whole check, so there is nothing to decode."""

    def load(self, path: Path) -> None:  # type: ignore[override]
        return None


def _layout(files: dict[str, tuple[Path, Callable[[Path], list[Example]]]], reported: str, phase: str) -> Layout:
    """What `data check` walks: the files a phase opens, each read (and so validated) in full."""

    def source(name: str, split: str) -> Source:
        path, read = files[split]
        return Source(name, path, lambda: [(path, 0) for _ in read(path)], DataFiles(path.parent))

    train = source("train", "train")
    evals = {"val": train} if phase == "tune" else {reported: source(reported, reported)}
    return Layout((train,), evals)


REPORTED = {"glue": "dev", "gsm8k": "test"}  # per reader: the split a phase-final run is scored on


def glue_layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    return _layout(glue_files(root, glue_dataset(options, root), num_classes), REPORTED["glue"], phase)


def gsm8k_layout(root: Path, phase: str, options: Mapping[str, Any], num_classes: int) -> Layout:
    return _layout(gsm8k_files(root), REPORTED["gsm8k"], phase)


def _image_reader(request: DataRequest) -> Splits:
    raise UsageError("text data is read by the text trainer (training/text.py), not as images")


LAYOUTS: dict[str, LayoutFn] = {"glue": glue_layout, "gsm8k": gsm8k_layout}
HELD_OUT = f"a fixed {HOLDOUT:.0%} of train"
for _name, _layout_fn in LAYOUTS.items():
    READERS.register(_name)(
        Reader(
            _image_reader,
            _layout_fn,
            kind="text",
            splits={"tune": (f"train less {HELD_OUT}", (f"val ({HELD_OUT})",)), "final": ("train", (REPORTED[_name],))},
        )
    )


def glue_dataset(options: Mapping[str, Any], root: Path) -> str:
    """The GLUE task a folder holds: the suite passes it as the fixed data option `task`."""
    task = options.get("task")
    if task is None:
        raise DataError(
            f'{root}: the suite\'s dataset needs data = {{ task = "rte" }} (one of {", ".join(GLUE_TASKS)})'
        )
    return str(task)
