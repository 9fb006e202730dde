"""Pre-trained backbones from local files: the same loading path the paper's weight files take."""

from __future__ import annotations

import hashlib
import pathlib

import pytest
import timm
import torch
from safetensors.torch import save_file

from pacebench.core import backbones
from pacebench.errors import DataError, UsageError

ARCH = "vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(ARCH, pretrained=False, num_classes=21)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_file_loads_resizes_position_embedding_and_drops_head(tmp_path, source, suffix):
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save({"model": state}, path)
    model, sha = backbones.build(ARCH, num_classes=7, image_size=32, drop_path=0.1, weights=path)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.equal(model.blocks[5].mlp.fc2.weight, source.blocks[5].mlp.fc2.weight)
    assert torch.equal(model.patch_embed.proj.weight, source.patch_embed.proj.weight)
    # 224 px = 14x14 patches in the file; 32 px = 2x2 here: timm's filter resampled the position embedding
    assert source.pos_embed.shape[1] == 1 + 14 * 14 and model.pos_embed.shape[1] == 1 + 2 * 2
    assert model.head.out_features == 7  # a fresh head for the task, whatever the file held
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_pickled_objects_are_never_unpickled(tmp_path):
    path, pwned = tmp_path / "evil.pth", tmp_path / "pwned"
    torch.save({"model": {"x": Exploit(pwned)}}, path)  # what a malicious checkpoint looks like
    with pytest.raises(DataError, match="cannot read weights file"):
        backbones.read_state_dict(path)
    assert not pwned.exists()  # the payload's own target: it exists if loading ever unpickles


class Exploit:
    """Unpickling this creates `target`."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def test_missing_named_weights_name_the_file_and_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv("PACEBENCH_WEIGHTS", str(tmp_path))
    with pytest.raises(DataError) as err:
        backbones.resolve("vit_b16_in21k")
    assert "ViT-B_16.npz" in str(err.value) and str(tmp_path) in str(err.value) and "imagenet21k" in str(err.value)


def test_named_backbone_found_in_the_weights_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("PACEBENCH_WEIGHTS", str(tmp_path))
    (tmp_path / "swin_base_patch4_window7_224_22k.pth").write_bytes(b"")
    assert backbones.resolve("swin_b_in22k").arch == "swin_base_patch4_window7_224"


def test_unknown_backbone_and_missing_weights_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown backbone"):
        backbones.resolve("no_such_net")
    with pytest.raises(UsageError, match="--weights"):
        backbones.resolve(ARCH)
    with pytest.raises(UsageError, match="unsupported type"):
        (tmp_path / "w.bin2").write_bytes(b"x")
        backbones.read_state_dict(tmp_path / "w.bin2")


def test_wrong_architecture_is_a_clear_error(tmp_path, source):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    with pytest.raises(DataError, match="does not fit"):
        backbones.build("vit_small_patch16_224", num_classes=3, image_size=32, drop_path=0.0, weights=path)
