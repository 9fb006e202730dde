"""In-run checkpoints: everything a run needs to continue from an epoch boundary as if it had never stopped.

A checkpoint holds the trainable weights (adapters and head; the frozen backbone is rebuilt from the run's weights
file), the optimizer and scheduler state, every random state (torch, CUDA, numpy, python, the data loader's
generator) and the method's own state (its tensor and number attributes: PACE_fast's logit buffer, the step counter
PACE_lazy counts its N by, ...), plus the last evaluation. Restored at the same epoch boundary, a CPU run goes on bit
for bit as the uninterrupted run would (tests/test_workers.py checks it). With data-loader worker processes a
random augmentation's state lives in those processes and is not captured; the suites' training transforms are
deterministic, so this does not change results today.

The bytes are `torch.save` output read back with `weights_only=True` (no code runs on load), stored in the
database (table `checkpoints`) because the database is the one place every worker of a cluster shares. Bytes that
load refuses (anything but tensors and plain values: never loaded otherwise) or that are damaged are `unreadable`:
the worker drops them and the run starts again from epoch 0.
"""

from __future__ import annotations

import io
import pickle
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pacebench.core.adapters import trainable_state


def method_state(method: Any) -> dict[str, Any]:
    """A method's state: its tensor and number attributes (configs and callables are rebuilt from the spec)."""
    return {k: v for k, v in vars(method).items() if isinstance(v, Tensor | int | float) and not isinstance(v, bool)}


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "loader": generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    generator.set_state(state["loader"])


@dataclass
class TrainState:
    """The live objects of a run that a checkpoint captures and restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    method: Any
    generator: torch.Generator

    def capture(self, epoch: int, final: dict[str, Any]) -> bytes:
        """The state after `epoch` finished, as bytes."""
        state = {
            "epoch": epoch,
            "final": final,
            "weights": trainable_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "method": method_state(self.method),
            "rng": rng_state(self.generator),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    def restore(self, data: bytes, device: torch.device) -> tuple[int, dict[str, Any]]:
        """Loads a capture; returns (the epoch it was taken after, the last evaluation then)."""
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state["weights"].items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        for name, value in state["method"].items():
            setattr(self.method, name, value.to(device) if isinstance(value, Tensor) else value)
        set_rng_state(state["rng"], self.generator)
        return state["epoch"], state["final"]

    def start(self, control: Control, device: torch.device) -> tuple[int, dict[str, Any]]:
        """Where a run begins: (0, {}) when fresh, else (the epoch after the checkpoint's, its last evaluation)."""
        if control.resume is None:
            return 0, {}
        last, final = self.restore(control.resume, device)
        return last + 1, final


STATE_KEYS = frozenset({"epoch", "final", "weights", "optimizer", "schedule", "method", "rng"})  # what `capture` saves


def unreadable(data: bytes) -> str | None:
    """Why a checkpoint cannot be restored, in a few words (None: it can). Only tensors and plain values are ever
    unpickled (`weights_only=True`); bytes that need more were not written by `TrainState.capture` and are never
    loaded any other way."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's refusal, or truncated bytes, not a torch file at all: damaged either way
        if isinstance(exc, pickle.UnpicklingError) and "unsupported global" in str(exc).lower():
            return "it holds objects other than tensors and plain values, which are never unpickled"
        return f"it is damaged: {type(exc).__name__}"
    missing = STATE_KEYS - set(state) if isinstance(state, dict) else STATE_KEYS
    return f"it lacks {', '.join(sorted(missing))}" if missing else None


class Stopped(Exception):  # noqa: N818 (a request, not an error)
    """Raised inside the training loop when the worker was asked to stop (SIGTERM, SIGINT)."""


class Control:
    """What the training loop asks its caller between steps and epochs; this default never stops or saves."""

    resume: bytes | None = None

    def should_stop(self) -> bool:
        return False

    def epoch_done(self, epoch: int, capture: Any) -> None:
        """Called after each epoch's row was written; `capture()` returns the checkpoint bytes of this moment."""
