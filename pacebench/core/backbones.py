"""Pre-trained backbones from local files only: nothing is ever downloaded.

A named backbone fixes the timm architecture, the standard file name inside the weights directory
(PACEBENCH_WEIGHTS) and where such a file comes from. Any other timm architecture works with an explicit weights
file. Loading goes through timm's own converters (`checkpoint_filter_fn`: .npz reading, position-embedding
resizing, Swin key renaming), never unpickles arbitrary objects (torch.load(weights_only=True) or safetensors), and
always drops the checkpoint's classifier: the task gets a fresh nn.Linear head with PyTorch's default init.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.data import resolve_data_config
from timm.models import get_pretrained_cfg
from torch import nn

from pacebench.errors import DataError, UsageError
from pacebench.registry import Registry
from pacebench.settings import results_dir
from pacebench.settings import weights_dir as default_weights_dir

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Normalization = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True)
class Backbone:
    """A named backbone. `mean`/`std` fix the input normalisation; without them it comes from timm's pretrained
    configuration of `timm_cfg` (default: `arch`), read from timm's tables, never downloaded."""

    arch: str
    filename: str
    source: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    in_results: bool = False  # the file is made by pacebench itself (the demo), under results/checkpoints
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    timm_cfg: str = ""
    folder: bool = False  # a Hugging Face model folder (config, safetensors, tokenizer) for the text suites


BACKBONES: Registry[Backbone] = Registry("backbone")
BACKBONES.register("vit_b16_in21k")(
    Backbone(
        "vit_base_patch16_224",
        "ViT-B_16.npz",
        "the original Google ImageNet-21k checkpoint (gs://vit_models/imagenet21k/ViT-B_16.npz)",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
)  # the authors' code; timm's default ViT config would say 0.5/0.5
BACKBONES.register("swin_b_in22k")(
    Backbone(
        "swin_base_patch4_window7_224",
        "swin_base_patch4_window7_224_22k.pth",
        "Microsoft's Swin-B ImageNet-22k release (github.com/microsoft/Swin-Transformer), or timm's "
        "swin_base_patch4_window7_224.ms_in22k model.safetensors renamed",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
)
BACKBONES.register("vit_b_laion2b_in12k")(
    Backbone(
        "vit_base_patch16_clip_224",
        "vit_base_patch16_clip_224.laion2b_ft_in12k.safetensors",
        "timm's vit_base_patch16_clip_224.laion2b_ft_in12k model.safetensors, saved under this name",
        timm_cfg="vit_base_patch16_clip_224.laion2b_ft_in12k",
    )
)  # CLIP's mean/std, from timm's configuration
BACKBONES.register("vit_demo")(
    Backbone(
        "vit_tiny_patch16_224",
        "vit_demo_digits04.safetensors",
        "`pacebench run demo`, which pre-trains it on scikit-learn digits 0-4",
        kwargs={"patch_size": 4, "embed_dim": 64, "depth": 6, "num_heads": 4, "mlp_ratio": 2.0},
        in_results=True,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
)  # what its pre-training used
BACKBONES.register("roberta_base")(
    Backbone(
        "hf:roberta",
        "roberta-base",
        "huggingface.co/FacebookAI/roberta-base (config.json, model.safetensors, tokenizer files), e.g. "
        "`huggingface-cli download FacebookAI/roberta-base --local-dir weights/roberta-base`",
        folder=True,
    )
)
BACKBONES.register("phi3_mini_4k_instruct")(
    Backbone(
        "hf:phi3",
        "Phi-3-mini-4k-instruct",
        "huggingface.co/microsoft/Phi-3-mini-4k-instruct, e.g. `huggingface-cli download "
        "microsoft/Phi-3-mini-4k-instruct --local-dir weights/Phi-3-mini-4k-instruct`",
        folder=True,
    )
)


def arch_of(name: str) -> str:
    """The timm architecture of a named backbone, or the name itself (a timm architecture)."""
    return BACKBONES.get(name).arch if name in BACKBONES else name


@cache
def normalization(name: str) -> Normalization:
    """The (mean, std) a backbone's inputs are normalised with: the named entry's own, else timm's pretrained
    configuration for the architecture (`resolve_data_config`; timm's tables only, nothing is downloaded)."""
    b = BACKBONES.get(name) if name in BACKBONES else None
    if b is not None and b.mean is not None and b.std is not None:
        return tuple(b.mean), tuple(b.std)

    cfg_name = (b.timm_cfg or b.arch) if b is not None else name
    cfg = get_pretrained_cfg(cfg_name)
    if cfg is None:
        raise UsageError(
            f"timm has no pretrained configuration for {cfg_name!r} to take its mean/std from; "
            "use a timm architecture name or a named backbone"
        )
    data = resolve_data_config({}, pretrained_cfg=cfg.to_dict())
    return tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])


def demo_checkpoint_dir() -> Path:
    return results_dir() / "checkpoints"


def sha256(path: Path) -> str:
    """SHA-256 of a weights file; for a model folder, of its files' names and hashes (README and hidden files
    left out), so a changed config or tokenizer is a different model too."""
    digest = hashlib.sha256()
    if path.is_dir():
        for member in sorted(path.iterdir()):
            if member.is_file() and not member.name.startswith(".") and member.suffix.lower() != ".md":
                digest.update(f"{member.name}:{sha256(member)}\n".encode())
        return digest.hexdigest()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Resolved:
    name: str
    arch: str
    weights: Path | None
    kwargs: dict[str, Any]


def resolve(name: str, weights: Path | None = None, weights_dir: Path | None = None) -> Resolved:
    """A named backbone (weights from the weights directory unless given) or any timm architecture + a file."""
    if name in BACKBONES:
        b = BACKBONES.get(name)
        path = weights or (demo_checkpoint_dir() if b.in_results else weights_dir or default_weights_dir()) / b.filename
        if not (path.is_dir() if b.folder else path.is_file()):
            what = "model folder" if b.folder else "weights"
            raise DataError(
                f"{what} for backbone {name} not found at {path}; put {b.filename} there "
                f"(set PACEBENCH_WEIGHTS or --weights); it comes from {b.source}"
            )
        return Resolved(name, b.arch, path, b.kwargs)

    if not timm.is_model(name):
        raise UsageError(
            f"unknown backbone {name!r}; use one of {', '.join(BACKBONES.names())} "
            "or a timm architecture name with --weights FILE"
        )
    if weights is None:
        raise UsageError(f"backbone {name} is a timm architecture: give its weights file with --weights FILE")
    if not weights.is_file():
        raise DataError(f"weights file {weights} not found")
    return Resolved(name, name, weights, {})


def read_state_dict(path: Path) -> dict[str, Any]:
    """Tensors only: safetensors, or torch.load with weights_only=True (no arbitrary unpickling)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            state: dict[str, Any] = load_file(str(path))
        elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise UsageError(f"weights file {path}: unsupported type {suffix!r}; use .npz, .pth/.pt or .safetensors")
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
        reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot read weights file {path}: {reason} (only tensors are loaded, never pickled "
            "objects; re-save it as a plain state dict or .safetensors)"
        ) from None
    for key in ("model", "state_dict", "module"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return state


def load_weights(model: nn.Module, path: Path) -> None:
    """Loads a local checkpoint into `model` through timm's converter for its architecture; head excluded."""
    if path.suffix.lower() == ".npz":
        load_npz(model, path)
        return
    state = read_state_dict(path)
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    head = model.pretrained_cfg.get("classifier", "head")
    state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
        raise DataError(
            f"weights file {path} does not fit {type(model).__name__}: {detail}; is it the right architecture?"
        ) from None
    missing = [
        k
        for k in missing
        if not k.startswith(head + ".") and "relative_position_index" not in k and "attn_mask" not in k
    ]
    if missing:
        raise DataError(
            f"weights file {path} does not fit {type(model).__name__}: missing {missing[:3]} ...; "
            "is it the right architecture?"
        )


def load_npz(model: nn.Module, path: Path) -> None:
    """Google's JAX .npz ViT checkpoints (ViT-B_16.npz) through timm's reader, which maps their keys and resamples
    the position embedding; a corrupt file or one for another architecture becomes a `DataError`."""
    if not hasattr(model, "load_pretrained"):
        raise DataError(
            f"weights file {path}: .npz checkpoints load only into ViT architectures, not "
            f"{type(model).__name__}; use a .pth or .safetensors file"
        )
    try:
        model.load_pretrained(str(path))
    except KeyError as exc:
        raise DataError(
            f"weights file {path} does not fit {type(model).__name__}: it has no entry {exc}; is it "
            "the right architecture?"
        ) from None
    except (OSError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot read weights file {path}: {reason}; is it Google's .npz ViT checkpoint, complete and uncorrupted?"
        ) from None


@cache
def check_image_size(name: str, image_size: int, option: str = "-t image_size", **overrides: Any) -> None:
    """Refuses an image size the backbone cannot take (smaller than a patch, say) while planning, not as a failed
    run: one forward pass on the meta device (no memory, no weights; under a second for ViT-B). `overrides`: timm
    arguments the caller changes (`bench --patch-size`); `option`: what the user sets the size with."""
    if name in BACKBONES and BACKBONES.get(name).folder:
        return  # a text model: no images
    arch, kwargs = (BACKBONES.get(name).arch, BACKBONES.get(name).kwargs) if name in BACKBONES else (name, {})
    if not timm.is_model(arch):
        return  # `resolve` names the problem
    try:
        with torch.device("meta"):
            model = timm.create_model(
                arch, pretrained=False, num_classes=2, img_size=image_size, **{**kwargs, **overrides}
            )
            model(torch.empty(1, 3, image_size, image_size))
    except (RuntimeError, ValueError, AssertionError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(
            f"image_size={image_size} does not fit backbone {name} ({reason}); set {option} to a "
            "size the backbone takes (at least one patch)"
        ) from None


def build(
    name: str,
    num_classes: int,
    image_size: int,
    drop_path: float,
    weights: Path | None = None,
    pretrained: bool = True,
    weights_dir: Path | None = None,
) -> tuple[nn.Module, str]:
    """Creates the backbone with a fresh `num_classes` head; returns (model, SHA-256 of the weights file)."""
    if name in BACKBONES and BACKBONES.get(name).folder:
        raise UsageError(f"backbone {name} is a text model: use it with a text suite (glue, gsm8k)")
    r = (
        resolve(name, weights, weights_dir)
        if pretrained
        else Resolved(name, BACKBONES.get(name).arch, None, BACKBONES.get(name).kwargs)
    )
    model = timm.create_model(
        r.arch, pretrained=False, num_classes=num_classes, drop_path_rate=drop_path, img_size=image_size, **r.kwargs
    )
    if r.weights is None:
        return model, ""
    load_weights(model, r.weights)
    model.reset_classifier(num_classes)  # a new nn.Linear with PyTorch's default init, whatever the file held
    return model, sha256(r.weights)
