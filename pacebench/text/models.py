"""Text backbones from local Hugging Face folders, with peft's LoRA and PACE's noise on the LoRA branch.

Nothing is downloaded: every `from_pretrained` reads the folder with `local_files_only=True`. peft supplies the LoRA
layers (standard LoRA, ΔW = (α/r)·B·A, A Kaiming-uniform and B zero at the start) and their merge; pacebench adds
one `BranchNoise` per LoRA layer, a `Noisy` module that `adapters.apply_noise` fills like the image adapters', and
that a forward hook applies to the output of the layer's `lora_B`, i.e. to the branch output Δh (α/r is a scalar,
so multiplying before or after it is the same): the mechanism of the image `lora` kind (core/adapters/peft_lora.py).
The noise is per sample and per output channel and shared over the tokens (shape [B, 1, C] for Δh of shape
[B, T, C]); its σ comes from the shared schedule by the layer's block, with family "text": σ(D+1-l)/(D+1) for
block l of D, falling with depth as for Swin.

The model classes take one LongTensor `x` of shape [B, 2, T] (input ids, attention mask), so the methods' batch
tricks (`torch.cat([x, x])` for PACE's two copies, `x[:half]` for the lazy variant) work on text unchanged.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pacebench.core.adapters.layout import LAYOUTS, Layout
from pacebench.core.adapters.peft_lora import BranchNoise, hook_branch_noise
from pacebench.core.backbones import read_state_dict
from pacebench.core.droppath import SharedDropout
from pacebench.core.methods import METHODS, Objective, SetupInfo
from pacebench.core.prepare import Prepared
from pacebench.errors import DataError, UsageError

LORA = "lora:"
BLOCK = re.compile(r"\.(?:layer|layers|h|blocks)\.(\d+)\.")  # the block index in a module path, for the σ schedule


def lora_targets(adapter: str) -> list[str]:
    """`lora:query,value` -> ["query", "value"]: the module names peft puts LoRA on."""
    names = [n.strip() for n in adapter.removeprefix(LORA).split(",") if n.strip()] if adapter.startswith(LORA) else []
    if not names:
        raise UsageError(
            f"text suites take adapter=lora:MODULE,MODULE (e.g. --train adapter=lora:query,value), got {adapter!r}"
        )
    return names


def require_text_extra() -> None:
    """A clear error instead of an ImportError deep inside a run when the optional extra is absent."""
    missing = [name for name in ("transformers", "peft", "tokenizers") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"the text suites need {', '.join(missing)}: pip install 'pacebench[text]'")


def _quiet_transformers() -> None:
    from transformers.utils import logging  # lazy: the text extra is optional

    logging.set_verbosity_error()  # "some weights were newly initialized" is expected: the task head is new
    logging.disable_progress_bar()  # the run's own progress display is enough


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer  # lazy: the text extra is optional

    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot load a tokenizer from {folder}: {str(exc).splitlines()[0]}; the folder needs "
            "tokenizer.json (or the model's tokenizer files)"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only models often ship none; padding is masked anyway
    return tokenizer


def load_backbone(folder: Path, kind: str, num_labels: int = 0) -> nn.Module:
    """The pre-trained model in fp32: "classify" (a fresh sequence-classification head of `num_labels`; 1 means
    regression) or "generate" (the causal LM with its own head)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification  # lazy: optional extra

    _quiet_transformers()
    if not Path(folder).is_dir():  # else Hugging Face reads the path as a hub repo id and complains about its spelling
        raise DataError(f"no model folder at {folder}; give the folder that holds config.json and model.safetensors")
    try:
        if kind == "classify":
            return AutoModelForSequenceClassification.from_pretrained(
                folder,
                num_labels=num_labels,
                local_files_only=True,
                dtype=torch.float32,
                problem_type="regression" if num_labels == 1 else "single_label_classification",
            )
        return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot load a model from {folder}: {str(exc).splitlines()[0]}; it needs config.json and "
            "the weights (model.safetensors)"
        ) from None


def named_lora_layers(model: nn.Module) -> list[tuple[str, Any]]:
    """peft's LoRA layers with their module paths, found by type."""
    from peft.tuners.lora import LoraLayer  # lazy: the text extra is optional

    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def lora_layers(model: nn.Module) -> Iterator[Any]:
    return (m for _, m in named_lora_layers(model))


def add_lora(model: nn.Module, kind: str, targets: list[str], rank: int, alpha: float) -> nn.Module:
    """peft's LoRA on the `targets` modules (no LoRA dropout: PACE's noise is the regulariser under test), the
    classification head trained in full (peft's SEQ_CLS default), and a `BranchNoise` on every LoRA layer."""
    from peft import LoraConfig, TaskType, get_peft_model  # lazy: the text extra is optional

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS if kind == "classify" else TaskType.CAUSAL_LM,
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=targets,
        bias="none",
    )
    try:
        with warnings.catch_warnings():  # peft calls a transformers helper that transformers has deprecated
            warnings.simplefilter("ignore", FutureWarning)
            net = get_peft_model(model, config)
    except ValueError as exc:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise UsageError(
            f"cannot put LoRA on {targets} ({str(exc).splitlines()[0][:120]}); this model's linear "
            f"layers are named {', '.join(linear)}"
        ) from None
    for name, layer in named_lora_layers(net):
        block = BLOCK.search(name)
        if block is None:
            raise UsageError(f"LoRA layer {name} is not inside a numbered block; choose targets inside the blocks")
        holder = BranchNoise(int(block.group(1)))
        nn.Module.add_module(layer, "pace_noise", holder)  # peft types LoraLayer as a mixin; it is a Module
        hook_branch_noise(layer, holder)
    return net


def share_dropout(model: nn.Module) -> int:
    """Replaces every nn.Dropout by a SharedDropout; returns how many. Attention-probability dropout runs inside the
    attention kernel (a functional call, not a module) and keeps independent masks per copy."""
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Dropout)]
    for name, module in targets:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, SharedDropout(module.p))
    return len(targets)


class TextModel(nn.Module):
    """A peft model behind the [B, 2, T] input convention; `depth` is its number of blocks."""

    def __init__(self, net: nn.Module, depth: int) -> None:
        super().__init__()
        self.net, self.depth = net, depth

    @property
    def num_labels(self) -> int:
        """The classes of a classifier's head (1: regression)."""
        return int(self.net.config.num_labels)

    def run(self, x: Tensor) -> Tensor:
        return self.net(input_ids=x[:, 0], attention_mask=x[:, 1]).logits

    @contextmanager
    def merged(self) -> Iterator[TextModel]:
        """LoRA folded into the frozen weights (peft's merge), unfolded after: the same outputs (tested) at the
        frozen model's cost. peft's unmerge subtracts ΔW again, which is not exactly W0 in floating point, so the
        frozen weights are copied back afterwards, as the image adapters do: merging leaves no trace. (The text
        trainer still evaluates unmerged, which needs no copy of the merged layers' weights.)"""
        bases = [layer.get_base_layer().weight for layer in lora_layers(self.net)]
        saved = [w.detach().clone() for w in bases]
        self.net.base_model.merge_adapter()
        try:
            yield self
        finally:
            self.net.base_model.unmerge_adapter()
            with torch.no_grad():
                for weight, original in zip(bases, saved, strict=True):
                    weight.copy_(original)

    @contextmanager
    def pretrained(self) -> Iterator[TextModel]:
        """The pre-trained side of the FP-distance: LoRA switched off, the current task head kept."""
        layers = list(lora_layers(self.net))
        for layer in layers:
            layer.enable_adapters(False)
        try:
            yield self
        finally:
            for layer in layers:
                layer.enable_adapters(True)

    def parameter_counts(self) -> dict[str, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        adapter = sum(
            p.numel() for layer in lora_layers(self.net) for d in (layer.lora_A, layer.lora_B) for p in d.parameters()
        )
        return {"trainable_params": trainable, "adapter_params": adapter, "head_params": trainable - adapter}


class Classifier(TextModel):
    """Sequence classification (or STS-B's regression): logits [B, C] (C = 1 for regression)."""

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)


class CausalLM(TextModel):
    """A causal LM: the logits that predict tokens 1..T-1, [B, T-1, V]; targets are the labels shifted by one."""

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)[:, :-1]

    @torch.no_grad()
    def generate(self, ids: Tensor, mask: Tensor, max_new_tokens: int, pad_id: int, eos: list[int]) -> Tensor:
        """Greedy decoding of left-padded prompts; returns only the new tokens."""
        out = self.net.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=eos,
            num_beams=1,
        )
        return out[:, ids.shape[1] :]


LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.default)?(?:\.weight)?$")


def load_lora(model: TextModel, path: Path) -> int:
    """Starts the LoRA matrices from a file (the LoRA repository's `roberta_base_lora_mnli.bin`, whose keys read
    `roberta.encoder.layer.0.attention.self.query.lora_A`, or peft's own names); returns how many it set. Other
    tensors in the file (its task head) are ignored; a LoRA matrix of another shape is an error."""
    if not path.is_file():
        raise DataError(f"LoRA start file {path} not found (the suite option init_lora)")
    found = {}
    for key, tensor in read_state_dict(path).items():
        match = LORA_KEY.match(key)
        if match:
            found[(match["module"], match["part"])] = tensor
    done = 0
    for name, layer in named_lora_layers(model.net):
        module = name.removeprefix("base_model.model.")
        for part, weights in (("A", layer.lora_A), ("B", layer.lora_B)):
            tensor = found.get((module, part))
            if tensor is None:
                continue
            target = weights["default"].weight
            if tuple(tensor.shape) != tuple(target.shape):
                raise DataError(
                    f"{path}: {module}.lora_{part} has shape {tuple(tensor.shape)}, this run's LoRA "
                    f"{tuple(target.shape)}; is the rank the same?"
                )
            with torch.no_grad():
                target.copy_(tensor)
            done += 1
    if not done:
        raise DataError(
            f"{path} holds no LoRA matrix for this model's LoRA layers (keys like '...attention.self.query.lora_A')"
        )
    return done


def _text_layout(model: nn.Module) -> Layout:
    return Layout("text", model.depth, [], "")


LAYOUTS.register("text")((lambda model: isinstance(model, TextModel), _text_layout))


def adapt(backbone: nn.Module, kind: str, adapter: str, rank: int, alpha: float) -> TextModel:
    """A loaded Hugging Face model with peft's LoRA and PACE's noise holders, behind the [B, 2, T] convention."""
    if rank < 1:
        raise UsageError(f"adapter rank must be >= 1, got {rank}")
    depth = int(backbone.config.num_hidden_layers)
    net = add_lora(backbone, kind, lora_targets(adapter), rank, alpha)
    return (Classifier if kind == "classify" else CausalLM)(net, depth)


def build(folder: Path, kind: str, adapter: str, rank: int, alpha: float, num_labels: int = 0) -> TextModel:
    return adapt(load_backbone(folder, kind, num_labels), kind, adapter, rank, alpha)


def attach(
    model: TextModel,
    method: str,
    info: SetupInfo,
    objective: Objective,
    method_config: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> Prepared:
    """The text counterpart of `core.prepare.attach`, for the text trainer and `pacebench.attach_text` alike: moves
    the model to `device`, builds the method with the task's objective, shares dropout masks between the copies if
    the method asks (as DropPath's are for images) and sets the method up (PACE's noise on every LoRA branch)."""
    cls = METHODS.get(method)
    m = cls(cls.make_config(method_config or {}))
    m.objective = objective
    model.to(device)
    shared = share_dropout(model) if m.shares_drop_path else 0
    facts = {**m.setup(model, info), "shared_dropout": shared}
    return Prepared(model, m, [p for p in model.parameters() if p.requires_grad], facts)
