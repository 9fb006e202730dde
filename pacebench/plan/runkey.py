"""The run key: a stable hash of everything in a `RunSpec` that can change a measured number.

Two runs with the same key are the same experiment: the store skips a key that is already done. Keys stay valid
across pacebench versions where they can: a setting added later enters the key only when its value changes what
earlier versions did, and a change of behaviour (`behaviour_changes`) only for the runs it affects. So a finished run
that no change touches keeps its key and is not trained again, and one that a change touches gets a new key;
`is_current` tells a stored run from one whose key today's code would no longer give (reports leave those out rather
than average them with new results).

This is the one module of `plan` that consults the registries (a method's full config, a backbone's normalisation).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from functools import cache
from typing import Any

from pacebench.core.backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, arch_of, normalization
from pacebench.core.methods import METHODS
from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.spec import RunSpec
from pacebench.plan.suites import load_suite
from pacebench.values import canonical_json


def run_key(spec: RunSpec) -> str:
    """Stable 16-hex-digit hash of `key_payload` (sorted-key JSON, so dict order never matters)."""
    blob = canonical_json(key_payload(spec))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---- what the key hashes -------------------------------------------------------------------------------------------

# Settings added after runs were first stored, with the value that reproduces what pacebench did before them.
LEGACY_TRAIN = {"augment": "standard", "adapter_scale": None, "adapter_dropout": None}


def behaviour_changes(spec: RunSpec) -> dict[str, Any]:
    """The changes of pacebench's behaviour since its first release that alter this run's result (one entry each).

    - lr_step: the schedule steps after each epoch, as in the authors' code (epochs after the first shift by one);
    - lora_add_bias: LoRA_add adds δb directly (b0 + δb, not b0 ⊙ δb, and also on bias-free layers);
    - normalize: inputs normalised with the backbone's own mean/std where that is not ImageNet's.
    """
    if spec.backbone in BACKBONES and BACKBONES.get(spec.backbone).folder:
        return {}  # a text run (pacebench/text): every change listed here is of the image path
    changes: dict[str, Any] = {}
    if spec.train.epochs > 1:
        changes["lr_step"] = "after_epoch"
    if "lora_add" in spec.train.adapter.split("+"):
        changes["lora_add_bias"] = "b0+db"
    mean, std = normalization(spec.backbone)
    if (mean, std) != _legacy_normalization(spec.suite):
        changes["normalize"] = {"mean": list(mean), "std": list(std)}
    return changes


@cache  # suite files name their reader once; this runs for every key
def _legacy_normalization(suite: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """What pacebench normalised with before mean/std followed the backbone: 0.5/0.5 in the demo's reader,
    ImageNet's in every reader of image files."""
    try:
        reader = load_suite(suite).reader
    except PacebenchError:
        reader = ""
    return ((0.5,) * 3, (0.5,) * 3) if reader == "demo" else (IMAGENET_MEAN, IMAGENET_STD)


def _method_config(spec: RunSpec) -> dict[str, Any]:
    """The method's full config (defaults filled in); `noise_group` only on windowed backbones (Swin) and only where
    it differs from "sample", what pacebench did before the option existed (on ViT both draw per sample)."""
    try:
        config = METHODS.get(spec.method).make_config(spec.method_config).as_dict()
    except UsageError:  # not a registered method (or not valid): hash what was given
        config = dict(spec.method_config)
    if "swin" not in arch_of(spec.backbone) or config.get("noise_group") == "sample":
        config.pop("noise_group", None)
    return config


def key_payload(spec: RunSpec) -> dict[str, Any]:
    """What the run key hashes: the spec, less the later settings at their legacy values, plus the behaviour
    changes that alter this run (see the module docstring)."""
    payload = asdict(spec)
    if not payload["data_fingerprint"]:
        del payload["data_fingerprint"]  # planned without one (before fingerprints existed): the key it had then
    payload["train"] = {k: v for k, v in payload["train"].items() if LEGACY_TRAIN.get(k, object()) != v}
    payload["method_config"] = _method_config(spec)
    changes = behaviour_changes(spec)
    if changes:
        payload["changes"] = changes
    return payload


def is_current(run: Any) -> bool:
    """Whether a stored run (a `RunRecord`) has the key today's code gives its spec: False for runs made before a
    behaviour change that alters them, or whose stored spec no longer parses."""
    try:
        return run_key(RunSpec.from_record(run)) == run.key
    except (TypeError, UsageError):
        return False


def spec_of(run: Any) -> RunSpec:
    """The spec a queued run (a `RunRecord`) was planned from, rebuilt from its row; refused when it no longer
    hashes to the run's key (the row was written by a pacebench whose keys differ)."""
    spec = RunSpec.from_record(run)
    if run_key(spec) != run.key:
        raise UsageError(
            f"run {run.id}'s stored spec no longer hashes to its key {run.key} (made by another "
            "pacebench version?); plan it again with this version"
        )
    return spec
