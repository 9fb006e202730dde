"""Pre-training of the demo backbone, so that the demo is a real transfer setting like ViT-B_16.npz -> VTAB.

A small timm ViT learns digits 0-4 from scratch and is saved as a safetensors file under results/checkpoints/;
fine-tuning then loads it through `backbones.build`, the same local-checkpoint path as the paper's weights.
The file is written atomically (temp file + rename) and reused on later runs; a second process that needs it while
the first trains it waits on a lock file for that one instead of training another.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader, TensorDataset

from pacebench.core.backbones import BACKBONES, build, demo_checkpoint_dir, normalization
from pacebench.data.demo import SOURCE_CLASSES, digits_tensors

PRETRAIN_EPOCHS, PRETRAIN_SEED, DEMO_IMAGE_SIZE = 60, 1234, 16


def pretrain_demo_backbone(
    image_size: int = DEMO_IMAGE_SIZE,
    epochs: int = PRETRAIN_EPOCHS,
    threads: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Returns the demo checkpoint, training it first (about 6 s with one thread here) if it is not cached.

    Args:
        threads: torch's CPU threads while it trains (the run's --threads; restored afterwards).
        progress: called with (epochs done, epochs) after each epoch.
    """
    path = demo_checkpoint_dir() / BACKBONES.get("vit_demo").filename
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the file exists: a concurrent first run waits here
        if not path.is_file():
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                _train(path, image_size, epochs, progress)
            finally:
                torch.set_num_threads(before)
    return path


def _train(path: Path, image_size: int, epochs: int, progress: Callable[[int, int], None] | None) -> None:
    torch.manual_seed(PRETRAIN_SEED)
    x, y = digits_tensors(SOURCE_CLASSES, image_size, *normalization("vit_demo"))
    model, _ = build("vit_demo", len(SOURCE_CLASSES), image_size, drop_path=0.1, pretrained=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * (len(x) // 64 + 1))
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    model.train()
    for epoch in range(epochs):
        for xb, yb in loader:
            shift = torch.randint(-1, 2, (2,)).tolist()  # small translations: features that transfer
            loss = F.cross_entropy(model(torch.roll(xb, shift, dims=(2, 3))), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if progress is not None:
            progress(epoch + 1, epochs)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
