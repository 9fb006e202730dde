"""Pre-training of the demo backbone, so that the demo is a real transfer setting like ViT-B_16.npz -> VTAB.

A small timm ViT learns digits 0-4 from scratch and is saved as a safetensors file under results/checkpoints/;
fine-tuning then loads it through `backbones.build`, the same local-checkpoint path as the paper's weights.
The file is written atomically (temp file + rename) and reused on later runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import DataLoader, TensorDataset

from pacebench.core.backbones import BACKBONES, build, demo_checkpoint_dir, normalization
from pacebench.data.demo import SOURCE_CLASSES, digits_tensors

PRETRAIN_EPOCHS, PRETRAIN_SEED, DEMO_IMAGE_SIZE = 60, 1234, 16


def pretrain_demo_backbone(image_size: int = DEMO_IMAGE_SIZE, epochs: int = PRETRAIN_EPOCHS) -> Path:
    """Returns the demo checkpoint, training it first (about 20 s on two CPU cores) if it is not cached."""
    path = demo_checkpoint_dir() / BACKBONES.get("vit_demo").filename
    if path.is_file():
        return path
    torch.manual_seed(PRETRAIN_SEED)
    x, y = digits_tensors(SOURCE_CLASSES, image_size, *normalization("vit_demo"))
    model, _ = build("vit_demo", len(SOURCE_CLASSES), image_size, drop_path=0.1, pretrained=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * (len(x) // 64 + 1))
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            shift = torch.randint(-1, 2, (2,)).tolist()  # small translations: features that transfer
            loss = F.cross_entropy(model(torch.roll(xb, shift, dims=(2, 3))), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    return path
