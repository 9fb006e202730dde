"""Training-step time and peak memory of the text methods at real model size, on synthetic token batches.

The models are RoBERTa-base and Phi-3-mini-4k built from their configurations with random weights (step time does
not depend on the values, and no weights need to be at hand), with the suites' LoRA: RoBERTa on query and value
(r 8, α 8) with a 2-class head, Phi-3 on every block linear (r 16, α 32) with answer-token labels on the second half
of each sequence. Each method runs `warmup` untimed then `steps` timed optimizer steps.

    python benchmarks/text_speed.py --device cuda --model roberta --batch 32 --seq 128
    python benchmarks/text_speed.py --device cuda --model phi3 --batch 8 --seq 512 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def build(name: str) -> tuple[torch.nn.Module, object, int]:
    from transformers import Phi3Config, Phi3ForCausalLM, RobertaConfig, RobertaForSequenceClassification

    from pacebench.text import models

    if name == "roberta":
        config = RobertaConfig(num_labels=2)  # the defaults are roberta-base's shape
        net = models.add_lora(RobertaForSequenceClassification(config), "classify", ["query", "value"], 8, 8.0)
        return models.Classifier(net, config.num_hidden_layers), "classify", config.vocab_size
    config = Phi3Config()  # the defaults are Phi-3-mini-4k's shape
    net = models.add_lora(
        Phi3ForCausalLM(config), "generate", ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], 16, 32.0
    )
    return models.CausalLM(net, config.num_hidden_layers), "generate", config.vocab_size


def batch(kind: str, vocab: int, size: int, seq: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    ids = torch.randint(3, vocab, (size, seq), device=device)
    x = torch.stack([ids, torch.ones_like(ids)], dim=1)
    if kind == "classify":
        return x, torch.randint(0, 2, (size,), device=device), torch.arange(size, device=device)
    labels = ids[:, 1:].clone()
    labels[:, : seq // 2] = -100  # the prompt half carries no loss
    return x, labels, torch.arange(size, device=device)


def measure(name: str, method_name: str, args: argparse.Namespace, device: torch.device) -> dict[str, object]:
    from pacebench.core.methods import METHODS, SetupInfo
    from pacebench.text.models import share_dropout
    from pacebench.text.tasks import GENERATION
    from pacebench.training.loop import autocast_for

    torch.manual_seed(0)
    model, kind, vocab = build(name)
    model.to(device)
    cls = METHODS.get(method_name)
    method = cls(cls.make_config({}))
    if kind == "generate":
        method.objective = GENERATION
    method.autocast = autocast_for(args.precision, device)
    if method.shares_drop_path:
        share_dropout(model)
    method.setup(model, SetupInfo(args.batch, 2))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    data = batch(kind, vocab, args.batch, args.seq, device)
    model.train()
    for _ in range(args.warmup):
        method.step(model, data, optimizer, params)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        out = method.step(model, data, optimizer, params)
    float(out.loss.detach())  # waits for the last step
    seconds = (time.perf_counter() - start) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {
        "model": name,
        "method": method_name,
        "precision": args.precision,
        "batch": args.batch,
        "seq": args.seq,
        "ms_per_step": round(1000 * seconds, 1),
        "sequences_per_s": round(args.batch / seconds, 1),
        "peak_gib": round(peak, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", choices=("roberta", "phi3"), default="roberta")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here; use --device cpu")
    methods = ["baseline", "pace", "pace_lazy"] + (["pace_fast"] if args.model == "roberta" else [])
    rows = [measure(args.model, m, args, device) for m in methods]
    print("| model | method | precision | batch x seq | ms/step | sequences/s | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['method']} | {r['precision']} | {r['batch']} x {r['seq']} | {r['ms_per_step']} | "
            f"{r['sequences_per_s']} | {r['peak_gib']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
