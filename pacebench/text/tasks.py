"""The two text tasks, registered in `TASKS` by their suite's reader: what the model is, how examples become
tensors, the loss and consistency distance the methods use (`Objective`), and how the reported split is scored.

Where PACE's consistency acts (the slides do not say; docs/text.md explains the choice):
- GLUE classification: the squared L2 distance between the two copies' logit vectors, as for images.
- STS-B: the squared difference of the two predicted scores (the regression head's one output); the loss is MSE.
- GSM-8K: per answer token, the squared L2 distance between the two copies' next-token logit vectors, averaged over
  the answer tokens of the batch (prompt and padding excluded); the loss is the answer tokens' cross-entropy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pacebench.core.methods import METHODS
from pacebench.core.methods.base import CLASSIFICATION, Objective, consistency
from pacebench.data.text import (
    REPORTED,
    Example,
    TextSplits,
    final_number,
    glue_dataset,
    glue_files,
    glue_task,
    gsm8k_files,
    text_splits,
)
from pacebench.errors import DataError, UsageError
from pacebench.registry import Registry
from pacebench.text.models import lora_targets

IGNORE = -100  # label of tokens the loss skips (prompt, padding)
Item = tuple[list[int], Any]  # token ids, target (class, score, or per-token labels)


@dataclass(frozen=True)
class Scored:
    """An evaluation set's score and what it was computed from, example by example (kept with the run, so that two
    runs can be compared on the same examples): the predicted class, score or final number, the gold one, whether
    each was right (None for a regression: its metric scores the whole set), and the metric's name."""

    score: float
    predicted: np.ndarray
    target: np.ndarray
    correct: np.ndarray | None
    metric: str


def mse(out: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(out.float().squeeze(-1), y.float())


def _score_distance(a: Tensor, b: Tensor, y: Tensor) -> Tensor:
    return consistency(a, b)


def token_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over the answer tokens."""
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE)


def token_distance(a: Tensor, b: Tensor, y: Tensor) -> Tensor:
    """Mean over the batch's answer tokens of the squared L2 distance between two next-token logit vectors."""
    mask = (y != IGNORE).float()
    per_token = (a.float() - b.float()).pow(2).sum(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


REGRESSION = Objective(mse, _score_distance)
GENERATION = Objective(token_loss, token_distance)


def pad(rows: Sequence[list[int]], value: int, left: bool = False) -> Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([[value] * (width - len(r)) + r if left else r + [value] * (width - len(r)) for r in rows])


def collate(pad_id: int, label_dtype: torch.dtype) -> Callable[[list[tuple[Item, int]]], tuple[Tensor, Tensor, Tensor]]:
    """Batches (ids, target) items into x [B, 2, T] (ids, mask), y and the sample indices; token-level targets are
    padded with IGNORE and shifted by one to line up with the causal LM's outputs."""

    def fn(batch: list[tuple[Item, int]]) -> tuple[Tensor, Tensor, Tensor]:
        ids = [item[0] for item, _ in batch]
        x = torch.stack([pad(ids, pad_id), pad([[1] * len(r) for r in ids], 0)], dim=1)
        targets = [item[1] for item, _ in batch]
        y = pad(targets, IGNORE)[:, 1:] if isinstance(targets[0], list) else torch.tensor(targets, dtype=label_dtype)
        return x, y, torch.tensor([i for _, i in batch])

    return fn


class Items(torch.utils.data.Dataset):
    """Tokenized examples, each yielded with its index (for pace_fast's per-sample history)."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Item, int]:
        return self.items[i], i


@dataclass(frozen=True)
class Settings:
    """The text settings a run takes from its data options (so they are part of its key)."""

    max_seq_len: int = 512
    lora_alpha: float = 8.0
    warmup_ratio: float = 0.06
    max_new_tokens: int = 512
    prompt: str = "chat"
    init_lora: str = ""  # a file to start the LoRA matrices from (e.g. the LoRA authors' MNLI-adapted weights)

    @classmethod
    def of(cls, options: dict[str, Any]) -> Settings:
        unknown = sorted(set(options) - set(cls.__dataclass_fields__) - {"task"})
        if unknown:
            raise UsageError(
                f"unknown text option {unknown[0]!r} in the suite file; known: {', '.join(cls.__dataclass_fields__)}"
            )
        known = {k: options[k] for k in cls.__dataclass_fields__ if k in options}
        try:
            settings = cls(**{k: type(getattr(cls, k))(v) for k, v in known.items()})
        except (TypeError, ValueError) as exc:
            raise UsageError(f"invalid text setting in the suite's options: {exc}") from None
        if settings.max_seq_len < 8 or settings.max_new_tokens < 1 or not 0 <= settings.warmup_ratio < 1:
            raise UsageError(
                f"invalid text settings {settings}: max_seq_len >= 8, max_new_tokens >= 1, 0 <= warmup_ratio < 1"
            )
        return settings


class TextTask:
    """One kind of text suite. Subclasses define reading, encoding, the objective and scoring."""

    kind: ClassVar[str]  # "classify" | "generate"
    reported: ClassVar[str]  # the split a phase-final run is scored on
    excluded: ClassVar[dict[str, str]] = {}  # methods that take any task's objective but not this one's: why

    @classmethod
    def methods(cls) -> list[str]:
        """The registered methods that run on this task: those taking the task's objective, less `excluded`."""
        return [name for name, method in METHODS.items() if method.any_task and name not in cls.excluded]

    def __init__(self, dataset: str, num_classes: int, options: dict[str, Any]) -> None:
        self.dataset, self.num_classes, self.settings = dataset, num_classes, Settings.of(options)
        self.options = options
        self._encoded: dict[int, tuple[list[Example], list[Item]]] = {}

    @classmethod
    def check(cls, suite: str, adapter: str, methods: Sequence[str]) -> None:
        """Fails at planning time on LoRA targets that are no list of module names or a method the task cannot run."""
        lora_targets(adapter)
        unsupported = [m for m in methods if m not in cls.methods()]
        if unsupported:
            why = f" ({cls.excluded[unsupported[0]]})" if unsupported[0] in cls.excluded else ""
            raise UsageError(
                f"method {unsupported[0]} does not run on suite {suite}{why}; choose from {', '.join(cls.methods())}"
            )

    def splits(self, root: Path, phase: str) -> TextSplits:
        raise NotImplementedError

    def num_labels(self) -> int:
        return 0

    def objective(self) -> Objective:
        raise NotImplementedError

    def encoded(self, examples: list[Example], tokenizer: Any) -> list[Item]:
        """`encode(examples)`, tokenised once per list: an evaluation set is scored every few epochs."""
        cached = self._encoded.get(id(examples))
        if cached is None or cached[0] is not examples:
            cached = self._encoded[id(examples)] = (examples, self.encode(examples, tokenizer))
        return cached[1]

    def encode(self, examples: list[Example], tokenizer: Any) -> list[Item]:
        raise NotImplementedError

    def label_dtype(self) -> torch.dtype:
        return torch.long

    def hits(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor | int] | None:
        """(correct, count) for the training accuracy, or None where there is none (regression); counts that depend
        on the data stay on the device (no host sync per step)."""
        return (out.argmax(-1) == y).sum(), y.numel()

    def units(self, y: Tensor) -> int:
        """How many terms `objective().distance` averages over (samples, or answer tokens)."""
        return y.shape[0]

    def evaluate(
        self,
        model: Any,
        examples: list[Example],
        tokenizer: Any,
        batch_size: int,
        device: torch.device,
        autocast: Callable[[], Any],
    ) -> Scored:
        raise NotImplementedError

    def score(
        self,
        model: Any,
        examples: list[Example],
        tokenizer: Any,
        batch_size: int,
        device: torch.device,
        autocast: Callable[[], Any],
    ) -> float:
        """The reported number alone (the task's metric, in points)."""
        return self.evaluate(model, examples, tokenizer, batch_size, device, autocast).score


TASKS: Registry[type[TextTask]] = Registry("text task")


@TASKS.register("glue")
class Glue(TextTask):
    """GLUE with a sequence-classification head; dev scored with MCC (CoLA), Pearson (STS-B) or accuracy."""

    kind = "classify"
    reported = REPORTED["glue"]
    excluded = {"pretrained": "a classifier's task head is new: scoring it untrained measures nothing"}

    def __init__(self, dataset: str, num_classes: int, options: dict[str, Any]) -> None:
        super().__init__(dataset, num_classes, options)
        self.task_name = glue_dataset(options, Path(dataset))
        self.task = glue_task(self.task_name)

    def splits(self, root: Path, phase: str) -> TextSplits:
        return text_splits(glue_files(root, self.task_name, self.num_classes), self.reported, phase)

    def num_labels(self) -> int:
        return 1 if self.task.regression else self.num_classes

    def objective(self) -> Objective:
        return REGRESSION if self.task.regression else CLASSIFICATION

    def label_dtype(self) -> torch.dtype:
        return torch.float32 if self.task.regression else torch.long

    def hits(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor | int] | None:
        return None if self.task.regression else super().hits(out, y)

    def encode(self, examples: list[Example], tokenizer: Any) -> list[Item]:
        columns = list(zip(*(e.texts for e in examples), strict=True))
        ids = tokenizer(*columns, truncation=True, max_length=self.settings.max_seq_len)["input_ids"]
        return [(list(i), e.label) for i, e in zip(ids, examples, strict=True)]

    @torch.no_grad()
    def evaluate(
        self,
        model: Any,
        examples: list[Example],
        tokenizer: Any,
        batch_size: int,
        device: torch.device,
        autocast: Callable[[], Any],
    ) -> Scored:
        loader = torch.utils.data.DataLoader(
            Items(self.encoded(examples, tokenizer)),
            batch_size=batch_size,
            collate_fn=collate(tokenizer.pad_token_id, self.label_dtype()),
        )
        model.eval()
        outs, ys = [], []
        with autocast():
            for x, y, _ in loader:
                outs.append(model(x.to(device)).float().cpu())
                ys.append(y)
        out, y = torch.cat(outs), torch.cat(ys)
        if self.task.regression:
            return Scored(METRICS[self.task.metric](out, y), out.squeeze(-1).numpy(), y.numpy(), None, self.task.metric)
        predicted = out.argmax(-1)
        return Scored(
            METRICS[self.task.metric](out, y), predicted.numpy(), y.numpy(), (predicted == y).numpy(), self.task.metric
        )


def _mcc(out: Tensor, y: Tensor) -> float:
    from sklearn.metrics import matthews_corrcoef  # lazy: scikit-learn, for CoLA's score only

    return 100.0 * float(matthews_corrcoef(y.numpy(), out.argmax(-1).numpy()))


def _pearson(out: Tensor, y: Tensor) -> float:
    pred = out.squeeze(-1).double()
    if pred.std() == 0 or y.double().std() == 0:
        return math.nan  # a constant prediction has no correlation
    return 100.0 * float(torch.corrcoef(torch.stack([pred, y.double()]))[0, 1])


def _accuracy(out: Tensor, y: Tensor) -> float:
    return 100.0 * float((out.argmax(-1) == y).float().mean())


METRICS: dict[str, Callable[[Tensor, Tensor], float]] = {"mcc": _mcc, "pearson": _pearson, "accuracy": _accuracy}


# ---- GSM-8K ---------------------------------------------------------------------------------------------------


def _plain_prompt(question: str, answer: str | None, tokenizer: Any) -> tuple[str, str]:
    return f"Question: {question}\nAnswer:", "" if answer is None else f" {answer}"


def _chat_prompt(question: str, answer: str | None, tokenizer: Any) -> tuple[str, str]:
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(
            "prompt format 'chat' needs a tokenizer with a chat template; this model folder has none "
            '(use a suite option prompt = ["plain"])'
        )
    user = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    if answer is None:
        return prompt, ""
    full = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt):
        raise UsageError('the chat template does not extend the prompt with the answer; use prompt = ["plain"]')
    return prompt, full[len(prompt) :]


PROMPTS: dict[str, Callable[[str, str | None, Any], tuple[str, str]]] = {"plain": _plain_prompt, "chat": _chat_prompt}


@TASKS.register("gsm8k")
class Gsm8k(TextTask):
    """GSM-8K: fine-tune the causal LM on question -> worked answer; score greedy decoding on test by exact match of
    the final number."""

    kind = "generate"
    reported = REPORTED["gsm8k"]
    excluded = {"pace_fast": "it would keep [answer tokens x vocabulary] logits per training example"}

    def __init__(self, dataset: str, num_classes: int, options: dict[str, Any]) -> None:
        super().__init__(dataset, num_classes, options)
        if self.settings.prompt not in PROMPTS:
            raise UsageError(f"unknown prompt format {self.settings.prompt!r}; choose one of {', '.join(PROMPTS)}")
        self.prompt = PROMPTS[self.settings.prompt]

    def splits(self, root: Path, phase: str) -> TextSplits:
        return text_splits(gsm8k_files(root), self.reported, phase)

    def objective(self) -> Objective:
        return GENERATION

    def hits(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor | int] | None:
        mask = y != IGNORE
        return ((out.argmax(-1) == y) & mask).sum(), mask.sum()

    def units(self, y: Tensor) -> int:
        return int((y != IGNORE).sum())

    def _prompt_ids(self, prompt: str, tokenizer: Any) -> list[int]:
        """The prompt's tokens with the tokenizer's BOS, unless the chat template already wrote it."""
        written = bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)
        return list(tokenizer(prompt, add_special_tokens=not written)["input_ids"])

    def encode(self, examples: list[Example], tokenizer: Any) -> list[Item]:
        """prompt + answer + EOS, cut to max_seq_len; labels IGNORE on the prompt, so only answers are learnt."""
        items = []
        for e in examples:
            prompt, answer = self.prompt(e.texts[0], e.texts[1], tokenizer)
            p_ids = self._prompt_ids(prompt, tokenizer)
            a_ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
            if not a_ids or a_ids[-1] != tokenizer.eos_token_id:  # some chat templates end the turn with EOS
                a_ids.append(tokenizer.eos_token_id)
            ids = (p_ids + a_ids)[: self.settings.max_seq_len]
            if len(p_ids) >= len(ids):
                raise DataError(f"a GSM-8K prompt fills max_seq_len={self.settings.max_seq_len} tokens; raise it")
            items.append((ids, [IGNORE] * len(p_ids) + ids[len(p_ids) :]))
        return items

    @torch.no_grad()
    def evaluate(
        self,
        model: Any,
        examples: list[Example],
        tokenizer: Any,
        batch_size: int,
        device: torch.device,
        autocast: Callable[[], Any],
    ) -> Scored:
        """Exact match of the final number (its metric: accuracy over the right/wrong of each problem)."""
        model.eval()
        eos = sorted({tokenizer.eos_token_id, *_generation_eos(model)})
        answers: list[str] = []
        with autocast():
            for start in range(0, len(examples), batch_size):
                chunk = examples[start : start + batch_size]
                prompts = [self._prompt_ids(self.prompt(e.texts[0], None, tokenizer)[0], tokenizer) for e in chunk]
                ids = pad(prompts, tokenizer.pad_token_id, left=True).to(device)
                mask = pad([[1] * len(p) for p in prompts], 0, left=True).to(device)
                new = model.generate(ids, mask, self.settings.max_new_tokens, tokenizer.pad_token_id, eos)
                texts = tokenizer.batch_decode(new, skip_special_tokens=True)
                answers += [final_number(t) or "" for t in texts]
        predicted, target = np.array(answers, dtype=str), np.array([str(e.label) for e in examples], dtype=str)
        correct = predicted == target
        return Scored(100.0 * float(correct.sum()) / max(len(examples), 1), predicted, target, correct, "accuracy")


def _generation_eos(model: Any) -> list[int]:
    """The model's own end-of-turn ids (Phi-3 ends a reply with <|end|>, not the tokenizer's EOS)."""
    ids = getattr(getattr(getattr(model, "net", None), "generation_config", None), "eos_token_id", None)
    return [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
