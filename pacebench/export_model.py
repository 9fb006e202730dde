"""A finished run as one plain timm checkpoint: the backbone with its adapters folded in (paper Eq. 13) and the
trained head, loadable without pacebench.

    import json, timm
    from safetensors import safe_open
    from safetensors.torch import load_file
    meta = safe_open("model.safetensors", "pt").metadata()
    model = timm.create_model(meta["timm_arch"], num_classes=int(meta["num_classes"]),
                              img_size=int(meta["img_size"]), **json.loads(meta["timm_kwargs"]))
    model.load_state_dict(load_file("model.safetensors"))

The run's stored adapter and head tensors (`Storage.run_weights`) go back into the run's backbone, rebuilt from the
same pre-trained file (its SHA-256 must equal the run's); every adapter is merged and replaced by the plain module it
folds into (`adapters.fold`), so the file holds exactly the keys and shapes of the plain architecture. Only a
mergeable adapter kind can be exported so; for the others (prompt tokens, nonlinear bottlenecks) the command says
why before it loads anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from pacebench.core import adapters, backbones
from pacebench.core.methods import SetupInfo
from pacebench.core.prepare import prepare
from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.spec import RunSpec
from pacebench.plan.suites import load_suite
from pacebench.store import RunRecord, Storage
from pacebench.values import INT_MAX

fold = adapters.fold  # merges every adapter and unwraps it (and the head) in place: a plain timm module tree


def check_mergeable(run: RunRecord) -> None:
    """Refuses a run whose adapter kind cannot fold into a plain timm checkpoint, saying why."""
    if run.adapter not in adapters.ADAPTERS:
        return  # not an image adapter kind (a text run's LoRA): its backbone is no timm model either
    kind = adapters.kind_of(run.adapter)
    if not kind.mergeable:
        raise UsageError(
            f"run {run.id} trained adapter {run.adapter}, which export-model cannot write as a plain timm "
            f"checkpoint: {kind.why_not_mergeable}; its trained tensors stay in the database "
            "(`pacebench export`)"
        )


def run_model(store: Storage, run: RunRecord, weights: Path | None = None) -> nn.Module:
    """The run's trained model (adapters unmerged, eval mode), rebuilt from its spec, pre-trained file and stored
    adapter and head tensors."""
    if run.status != "done":
        raise UsageError(f"run {run.id} is {run.status}; only a finished run can be exported")
    trained = store.run_weights(run.id)
    if trained is None:
        raise PacebenchError(
            f"run {run.id} kept no trained weights (made before pacebench stored them); run it again to export it"
        )
    spec = RunSpec.from_record(run)
    resolved = backbones.resolve(run.backbone, weights)
    sha = backbones.sha256(resolved.weights) if resolved.weights else ""
    if sha != run.weights_sha256:
        raise UsageError(
            f"the weights file {resolved.weights} (sha256 {sha[:8]}) is not the one run {run.id} was "
            f"trained from ({run.weights_sha256[:8]}); give that file with --weights"
        )
    classes = load_suite(run.suite).dataset(run.dataset).classes
    model = prepare(spec, SetupInfo(num_train=1, num_classes=classes), weights=weights).model
    missing = set(trained) - {n for n, _ in model.named_parameters()}
    if missing:
        raise PacebenchError(f"run {run.id}'s stored tensors do not fit its model ({sorted(missing)[0]} ...)")
    params = dict(model.named_parameters())
    for name, tensor in trained.items():
        params[name].data.copy_(tensor)
    return model.eval()


def export_model(store: Storage, run_ref: str, out: Path, weights: Path | None = None) -> Path:
    """Writes run `run_ref` (id or key) as a plain timm .safetensors file at `out`; returns the path.

    The file's metadata names the timm architecture and its arguments, the class count and image size, and the
    run (key, method, suite/dataset, test accuracy) it came from.
    """
    if out.suffix != ".safetensors":
        raise UsageError(f"--out {out}: export-model writes a .safetensors file; end the name in .safetensors")
    number = int(run_ref) if run_ref.isdigit() else None
    run = None if number is not None and number > INT_MAX else store.get_run(run_ref if number is None else number)
    if run is None:
        raise UsageError(f"no run {run_ref!r} in {store.display_url}; see `pacebench runs`")
    check_mergeable(run)
    model = fold(run_model(store, run, weights))
    resolved = backbones.resolve(run.backbone, weights)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    head: nn.Linear = model.get_classifier()  # type: ignore[operator]
    meta = {
        "timm_arch": resolved.arch,
        "timm_kwargs": json.dumps(resolved.kwargs),
        "num_classes": str(head.out_features),
        "img_size": str(run.hparams["image_size"]),
        "pacebench_run": run.key,
        "method": run.method,
        "data": f"{run.suite}/{run.dataset}",
        "test_acc": str(run.metrics.get("test_acc")),
        "format": "pt",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata=meta)
    return out
