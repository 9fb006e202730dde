"""A whole VTAB-1k run, start to finish: the authors' released training loop (fp32) against `pacebench run`.

    python benchmarks/vtab_end_to_end.py --authors /path/to/PACE/Vision --data-root DATA --weights ViT-B_16.npz \
        --dataset cifar --method pace --epochs 300 --test-every 10 --device cuda

`--authors` is a local copy of the authors' `Vision` folder (their `pace` package is imported from it, never copied
here). Their side is their `train.py` with `--vtab_evaluate` re-created step for step: their adapters and noise
(`LoRAmul_VPTadd`, σ falling linearly over depth, block 0 without noise), AdamW, timm's cosine schedule stepped per
epoch, DataLoader workers decoding and resizing every image every epoch (bicubic 224 x 224, ImageNet mean/std),
fp32, the per-step `.item()` logging and `torch.cuda.empty_cache()` their loop does, and a test every
`--test-every` epochs (batch 256). pacebench's side is `pacebench run vtab` in a fresh process with a fresh results
folder, so its time includes start-up, the image cache's first decode and the database: `--precision auto` (bf16
autocast on CUDA) for the speed comparison, and optionally `--also-fp32` for the accuracy check against an fp32
pacebench run. Both read `DATA/vtab-1k/<dataset>/{train800val200,test}.txt` and the images they list.

Prints wall seconds and final test accuracy per side and the speed-up; nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from authors_compare import authors_setup, check_authors  # this folder: their set-up, shared with the step comparison
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

CLASSES = {
    "cifar": 100,
    "caltech101": 102,
    "dtd": 47,
    "oxford_flowers102": 102,
    "oxford_iiit_pet": 37,
    "svhn": 10,
    "sun397": 397,
    "patch_camelyon": 2,
    "eurosat": 10,
    "resisc45": 45,
    "diabetic_retinopathy": 5,
    "clevr_count": 8,
    "clevr_dist": 6,
    "dmlab": 6,
    "kitti": 4,
    "dsprites_loc": 16,
    "dsprites_ori": 16,
    "smallnorb_azi": 18,
    "smallnorb_ele": 9,
}


class ListImages(Dataset):
    """A VTAB-1k list file read the way their loader reads it: `path label` lines, images decoded on every fetch."""

    def __init__(self, root: Path, listfile: str, size: int, with_index: bool) -> None:
        lines = (root / listfile).read_text().split("\n")
        self.items = [(root / p, int(y)) for p, y in (line.strip().rsplit(" ", 1) for line in lines if line.strip())]
        self.transform = T.Compose(
            [
                T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC),
                T.ToTensor(),
                T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        )
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        x = self.transform(Image.open(path).convert("RGB"))
        return (x, label, i) if self.with_index else (x, label)


def authors_run(args: argparse.Namespace) -> tuple[float, float]:
    """Their train.py (`--vtab_evaluate`), fp32: (wall seconds, final test accuracy in %). With `--authors-epochs N`
    only the first N epochs of the `--epochs` schedule run; the seconds are then the set-up plus the measured
    blocks of `--test-every` epochs scaled to the whole run (every block trains and tests the same amount), and the
    accuracy is NaN: a run cut short has no final accuracy."""
    sys.path.insert(0, str(args.authors))  # their `pace` package, imported by authors_setup
    import timm
    from timm.scheduler.cosine_lr import CosineLRScheduler

    start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device(args.device)
    root = args.data_root / "vtab-1k" / args.dataset
    pin = device.type == "cuda"
    train = DataLoader(
        ListImages(root, "train800val200.txt", args.image_size, True),
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=pin,
    )
    test = DataLoader(
        ListImages(root, "test.txt", args.image_size, False),
        batch_size=256,
        shuffle=False,
        num_workers=args.workers,
        pin_memory=pin,
    )
    model = timm.create_model(
        args.arch,
        checkpoint_path=str(args.weights),
        drop_path_rate=0.1,
        **({"img_size": args.image_size} if args.image_size != 224 else {}),
    )
    model.reset_classifier(CLASSES[args.dataset])
    compute_loss, trainable = authors_setup(model, args.method, args.rank, args.sigma, args.lam)
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.wd)
    scheduler = CosineLRScheduler(
        opt, t_initial=args.epochs, warmup_t=10, lr_min=1e-5, warmup_lr_init=1e-6, cycle_decay=0.1
    )
    model.to(device)
    acc, itr, log = 0.0, 0, []
    epochs = args.authors_epochs or args.epochs
    loop = time.perf_counter()
    for ep in range(epochs):
        model.train()
        for x, y, index in train:
            x, y, index = x.to(device), y.to(device), index.to(device)
            out = compute_loss(model, x, y, criterion, itr=itr, index=index)
            opt.zero_grad()
            out["total_loss"].backward()
            opt.step()
            with torch.no_grad():  # their per-step logging: every loss and the batch accuracy as Python floats
                entry = {k: v.item() for k, v in out.items() if "loss" in k}
                logits = out["logits"]
                entry["train_acc"] = torch.mean((logits.argmax(1) == y[: logits.shape[0]]) * 1.0).item()
                log.append(entry)
            itr += 1
            if device.type == "cuda":
                torch.cuda.empty_cache()
        scheduler.step(ep)
        if (ep + 1) % args.test_every == 0 or ep + 1 == args.epochs:
            model.eval()
            hits = []
            with torch.no_grad():
                for x, y in test:
                    hits.append(model(x.to(device)).argmax(1) == y.to(device))
            acc = 100.0 * torch.cat(hits).float().mean().item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    end = time.perf_counter()
    if epochs == args.epochs:
        return end - start, acc
    return (loop - start) + (end - loop) * args.epochs / epochs, math.nan


def pacebench_run(args: argparse.Namespace, precision: str) -> tuple[float, float]:
    """`pacebench run vtab` in a fresh process and results folder: (wall seconds, final test accuracy in %)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/e2e.db"
        env = {**os.environ, "PACEBENCH_RESULTS": tmp, "PACEBENCH_DB": db}
        cmd = [
            sys.executable,
            "-m",
            "pacebench",
            "run",
            "vtab",
            "--datasets",
            args.dataset,
            "--methods",
            args.method,
            "--seeds",
            str(args.seed),
            "--backbone",
            args.arch,
            "--weights",
            str(args.weights),
            "--data-root",
            str(args.data_root),
            "--device",
            args.device,
            "--workers",
            str(args.workers),
            "--epochs",
            str(args.epochs),
            "-t",
            f"eval_every={args.test_every}",
            "-t",
            f"precision={precision}",
            "-t",
            f"image_size={args.image_size}",
            "-t",
            f"batch_size={args.batch}",
            "-t",
            f"lr={args.lr}",
            "-t",
            f"weight_decay={args.wd}",
            "-t",
            f"rank={args.rank}",
        ]
        if args.method == "pace":
            cmd += ["--hp", f"sigma={args.sigma}", "--hp", f"lam={args.lam}"]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"pacebench run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        from pacebench.store import Store

        runs = [r for r in Store(db).runs() if r.status == "done"]
        if len(runs) != 1:
            raise SystemExit(f"expected one finished run, found {len(runs)}:\n{done.stdout[-2000:]}")
        return seconds, float(runs[0].metrics["test_acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", type=Path, required=True, help="the authors' Vision folder (their `pace`)")
    parser.add_argument("--data-root", type=Path, required=True, help="holds vtab-1k/<dataset>/")
    parser.add_argument("--weights", type=Path, required=True, help="ViT-B_16.npz, or any timm-loadable checkpoint")
    parser.add_argument("--arch", default="vit_base_patch16_224", help="timm architecture of --weights")
    parser.add_argument("--dataset", default="cifar", choices=sorted(CLASSES))
    parser.add_argument("--method", default="pace", choices=["baseline", "pace"])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--test-every", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--wd", type=float, default=1e-4)
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--also-fp32", action="store_true", help="also run pacebench in fp32 (accuracy check)")
    parser.add_argument(
        "--authors-epochs",
        type=int,
        default=0,
        help="run only this many of the authors' epochs (a multiple of --test-every) and scale their "
        "time to --epochs: for a machine lent too briefly for their whole fp32 run",
    )
    args = parser.parse_args()
    check_authors(parser, Path(args.authors))
    lists = [args.data_root / "vtab-1k" / args.dataset / name for name in ("train800val200.txt", "test.txt")]
    for path in [*lists, Path(args.weights)]:
        if not path.is_file():
            parser.error(f"{path} not found; see this script's docstring for the data layout and the weights")
    if args.authors_epochs and (args.authors_epochs % args.test_every or args.authors_epochs > args.epochs):
        parser.error("--authors-epochs must be a multiple of --test-every and at most --epochs")
    cut = f" ({args.authors_epochs} of {args.epochs} epochs run, time scaled)" if args.authors_epochs else ""
    rows = [(f"authors' train.py{cut}", "fp32", *authors_run(args))]
    rows.append(("pacebench run", "auto", *pacebench_run(args, "auto")))
    if args.also_fp32:
        rows.append(("pacebench run", "fp32", *pacebench_run(args, "fp32")))
    print(
        f"{args.arch} on vtab-1k/{args.dataset}, {args.method}, {args.epochs} epochs, test every {args.test_every},"
        f" batch {args.batch}, {args.image_size}px, {args.device}, seed {args.seed}"
    )
    print("| code | precision | wall s | speed-up | test acc % |\n|---|---|---:|---:|---:|")
    for code, precision, seconds, acc in rows:
        print(f"| {code} | {precision} | {seconds:.1f} | {rows[0][2] / seconds:.2f} | {acc:.2f} |")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
