"""Which devices the workers of a sweep train on. Asking for CUDA where there is none is an error, never a CPU run."""

from __future__ import annotations

import torch

from pacebench.errors import UsageError
from pacebench.execution.options import check_counts


def named_device(name: str) -> torch.device | None:
    """The device a --device value names (None for auto), checked for its form only, not for whether this machine
    has it: a plan may be made here (--dry-run, --enqueue-only) for CUDA workers elsewhere."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"invalid --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"unsupported --device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


def resolve_device(name: str) -> torch.device:
    """auto: CUDA when present, else CPU."""
    device = named_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} asked for, but CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def parse_gpus(gpus: str | None, count: int) -> list[int]:
    """'all' (or None) -> every visible GPU; '0,2,3' -> those indices; 'N' -> the first N."""
    if count == 0:
        raise UsageError("--gpus asked for, but CUDA is not available here; use --device cpu --jobs N")
    if gpus in (None, "", "all"):
        return list(range(count))
    try:
        values = [int(v) for v in gpus.split(",") if v.strip()]  # type: ignore[union-attr]
    except ValueError:
        raise UsageError(f"--gpus takes all, a list such as 0,2,3, or a count N; got {gpus!r}") from None
    chosen = values if "," in gpus else list(range(values[0]))  # type: ignore[operator]
    bad = [i for i in chosen if not 0 <= i < count]
    if not chosen or bad:
        raise UsageError(f"--gpus {gpus}: this machine has {count} CUDA device(s) (0..{count - 1})")
    return chosen


def worker_devices(device: str, gpus: str | None, jobs: int, threads: int) -> list[str]:
    """One device name per worker: one per chosen GPU, or `jobs` times the CPU (or one explicit device)."""
    check_counts(jobs, threads)
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        if gpus is not None:
            raise UsageError("--gpus needs CUDA; on a CPU use --jobs N")
        return ["cpu"] * jobs
    if resolved.index is not None:
        return [str(resolved)]
    return [f"cuda:{i}" for i in parse_gpus(gpus, torch.cuda.device_count())]


def device_type(device: str, slurm_gpus: int = 0) -> str:
    """What runs will train on, for precision "auto" (bf16 on CUDA): the named device, or with auto whether this
    machine (or a Slurm task given GPUs) has CUDA."""
    named = named_device(device)
    if named is not None:
        return named.type
    return "cuda" if torch.cuda.is_available() or slurm_gpus > 0 else "cpu"
