"""pacebench against the authors' released PACE code, side by side in one process, steps interleaved.

    python benchmarks/authors_compare.py --authors /path/to/PACE/Vision --arch test_vit

`--authors` is a local copy of the authors' `Vision` folder (the one holding their `pace` package); it is
imported from there and never copied into this repository. Both sides train the same timm model (random init,
`--patch-size` patches on `--image-size` px images) with LoRA_mul + VPT_add and AdamW on one synthetic batch:
the baseline (cross-entropy) and PACE (σ over depth as in their ViT code, λ = 1). One round times one step of
each of the four (every other round in reverse order); the table gives the median over the timed rounds of each
side, and the median over rounds of the paired ratio pacebench / authors (the two steps of a pair ran seconds
apart, so a machine shared with other work disturbs the ratio less than it disturbs either median).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import numpy as np
import timm
import torch

from pacebench.bench import interleaved
from pacebench.core.methods import SetupInfo
from pacebench.core.prepare import attach


def make_model(args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        args.arch,
        pretrained=False,
        num_classes=args.classes,
        drop_path_rate=0.1,
        img_size=args.image_size,
        patch_size=args.patch_size,
    )


def authors_setup(model: torch.nn.Module, method: str, rank: int, sigma: float, lam: float):
    """Their train.py's set-up on `model`: LoRA_mul + VPT_add everywhere, and for PACE shared DropPath, σ falling
    linearly over the blocks (block 0 without noise) and their PACE loss. Returns (compute_loss, trainable)."""
    import pace as authors  # the authors' package, from --authors

    authors.inject_residual_adapter(model, adapter="LoRAmul_VPTadd", rank=rank)

    def standard(model, x, y, criterion, **kwargs):
        logits = model(x)
        loss = criterion(logits, y)
        return {"cls_loss": loss, "total_loss": loss, "logits": logits}

    compute_loss = standard
    if method == "pace":  # their train.py, STEP 1 and 2
        authors.ensure_sharable_drop_path(model)
        found = authors.get_adapters_and_block_ids(model)
        num_blocks = max(block_id for _, _, block_id in found) + 1
        sigmas = np.concatenate([np.zeros(1), np.linspace(0, sigma, num_blocks)[-1:0:-1]])
        for parent, name, block_id in found:
            setattr(parent, name, authors.MultiplicativeNoiseAdapter(getattr(parent, name), sigma=sigmas[block_id]))
        compute_loss = functools.partial(authors.compute_loss_pace, lbd_pace=lam)
    trainable = []
    for n, p in model.named_parameters():
        p.requires_grad = any(k in n for k in ("delta", "head"))
        if p.requires_grad:
            trainable.append(p)
    return compute_loss, trainable


def authors_step(args: argparse.Namespace, method: str, x: torch.Tensor, y: torch.Tensor):
    model = make_model(args)
    compute_loss, trainable = authors_setup(model, method, args.rank, args.sigma, args.lam)
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=1e-4)
    model.train()

    def step() -> None:
        out = compute_loss(model, x, y, criterion)
        opt.zero_grad()
        out["total_loss"].backward()
        opt.step()

    return step


def our_step(args: argparse.Namespace, method: str, x: torch.Tensor, y: torch.Tensor):
    config = {"sigma": args.sigma, "lam": args.lam} if method == "pace" else {}
    ready = attach(make_model(args), method, SetupInfo(x.shape[0], args.classes), "lora_mul+vpt_add", args.rank, config)
    opt = torch.optim.AdamW(ready.params, lr=1e-3, weight_decay=1e-4)
    idx = torch.arange(x.shape[0])
    return lambda: ready.method.step(ready.model, (x, y, idx), opt, ready.params)


def check_authors(parser: argparse.ArgumentParser, folder: Path) -> None:
    """Their `pace` package must be importable from `folder`: say so in one line rather than with an ImportError."""
    if not (folder / "pace").is_dir():
        parser.error(f"--authors {folder}: no `pace` package there; point it at the authors' Vision folder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="the authors' Vision folder (holds their `pace` package)")
    parser.add_argument("--arch", default="test_vit")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    check_authors(parser, Path(args.authors))
    sys.path.insert(0, args.authors)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=g)
    y = torch.randint(0, args.classes, (args.batch,), generator=g)
    steps = {
        f"{side} {m}": make(args, m, x, y)
        for m in ("baseline", "pace")
        for side, make in (("authors", authors_step), ("pacebench", our_step))
    }
    times = interleaved(steps, args.warmup, args.steps, torch.device("cpu"))
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    print(
        f"{args.arch} {args.image_size}px patch {args.patch_size}, batch {args.batch}, rank {args.rank}, "
        f"{args.threads} thread(s), median of {args.steps} interleaved rounds after {args.warmup} warm-up, "
        f"torch {torch.__version__}, timm {timm.__version__}"
    )
    print("| method | authors ms | pacebench ms | ratio of medians | median paired ratio (min-max) |")
    print("|---|---:|---:|---:|---:|")
    for m in ("baseline", "pace"):
        a, p = ms[f"authors {m}"], ms[f"pacebench {m}"]
        paired = [q / r for q, r in zip(times[f"pacebench {m}"], times[f"authors {m}"], strict=True)]
        print(
            f"| {m} | {a:.1f} | {p:.1f} | {p / a:.2f} | {statistics.median(paired):.2f} "
            f"({min(paired):.2f}-{max(paired):.2f}) |"
        )


if __name__ == "__main__":
    main()
