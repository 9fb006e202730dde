"""Training-step speed and peak memory of every method on a real-size backbone (synthetic data, no weights).

    python benchmarks/speed.py --device cuda --arch vit_base_patch16_224 --batch 64 --precision fp32,bf16

Each (method, precision) row: warm-up steps, then timed steps with the device synchronised; images/s counts the
batch's real images (PACE's duplicated copies are not counted twice). Results are printed as a Markdown table and
written as JSON with --out. Numbers measured on the project's machines are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import timm
import torch

from pacebench import adapters
from pacebench.droppath import share_drop_path
from pacebench.methods import METHODS, SetupInfo
from pacebench.train import autocast_for, evaluate  # noqa: F401  (evaluate: same eval path as the trainer)


def measure(method_name: str, args: argparse.Namespace, precision: str) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = timm.create_model(args.arch, pretrained=False, num_classes=args.classes, drop_path_rate=0.1,
                              img_size=args.image_size)
    adapters.inject(model, args.adapter, args.rank)
    cls = METHODS.get(method_name)
    method = cls(cls.make_config({}))
    if method.shares_drop_path:
        share_drop_path(model)
    model.to(device).train()
    method.setup(model, SetupInfo(num_train=args.batch * 16, num_classes=args.classes))
    method.autocast = autocast_for(precision, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    idx = torch.arange(args.batch, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        method.step(model, (x, y, idx), optimizer, params)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        method.step(model, (x, y, idx), optimizer, params)
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"method": method_name, "precision": precision, "ms_per_step": 1000 * seconds,
            "images_per_s": args.batch / seconds, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="vit_base_patch16_224")
    parser.add_argument("--adapter", default="lora_mul+vpt_add")
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--methods", default="baseline,pace,pace_lazy,pace_fast,noise,fpa,sam,gp,pace_multi")
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as in the authors' code
    rows = [measure(m, args, p) for p in args.precision.split(",") for m in args.methods.split(",")]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"{args.arch} {args.adapter} r{args.rank} batch {args.batch} {args.image_size}px on {name}, "
          f"torch {torch.__version__}")
    print("| method | precision | ms/step | images/s | peak GiB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['precision']} | {r['ms_per_step']:.1f} | {r['images_per_s']:.0f} | "
              f"{r['peak_gib']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps({"device": name, "torch": torch.__version__, "args": vars(args) | {
            "out": str(args.out)}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
