"""Training augmentation and normalisation: the domain suite's strong (NOAH) augmentation through timm, Mixup's soft
targets and what PACE's two copies see, and each backbone's mean/std reaching the transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fake_trees import WNIDS, make_domain
from timm.data.auto_augment import RandAugment
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from pacebench.core import adapters, backbones
from pacebench.core.methods import METHODS
from pacebench.data import READERS, DataRequest
from pacebench.data.transforms import batch_mixup
from pacebench.errors import UsageError
from pacebench.plan.suites import load_suite
from pacebench.training.image import check_mixup_batch, train_step
from pacebench.training.loop import EpochStats

CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def test_domain_suite_defaults_to_strong_augmentation_and_the_others_do_not():
    for name in ("vtab", "fewshot", "fgvc", "demo", "domain"):
        suite = load_suite(name)
        for ds in suite.datasets.values():
            assert suite.resolve_train(ds).augment == ("strong" if name == "domain" else "standard"), name
    domain = load_suite("domain")
    assert domain.resolve_train(domain.dataset("imagenet"), {"augment": "standard"}).augment == "standard"


def _transforms(dataset) -> list:
    return list(dataset.base.transform.transforms)


@pytest.mark.parametrize("augment", ["strong", "standard"])
def test_imagenet_reader_builds_noahs_transform_with_timm_or_crop_flip(tmp_path, augment):
    make_domain(tmp_path)
    request = DataRequest(
        tmp_path, "imagenet", "final", len(WNIDS), image_size=32, mean=CLIP[0], std=CLIP[1], augment=augment
    )
    splits = READERS.get("imagenet")(request)
    train = _transforms(splits.train)
    norm = next(t for t in train if isinstance(t, T.Normalize))
    assert tuple(norm.mean.tolist() if torch.is_tensor(norm.mean) else norm.mean) == pytest.approx(CLIP[0])
    assert tuple(norm.std.tolist() if torch.is_tensor(norm.std) else norm.std) == pytest.approx(CLIP[1])
    if augment == "strong":
        crop, rand, erase = train[0], next(t for t in train if isinstance(t, RandAugment)), train[-1]
        assert crop.interpolation == T.InterpolationMode.BICUBIC and crop.scale == (0.08, 1.0)
        assert rand.num_layers == 2 and {op.magnitude for op in rand.ops} == {9}
        assert {op.magnitude_std for op in rand.ops} == {0.5} and "SolarizeIncreasing" in {op.name for op in rand.ops}
        assert isinstance(erase, RandomErasing) and (erase.probability, erase.mode) == (0.25, "pixel")
        assert not any(isinstance(t, T.ColorJitter) for t in train)  # timm drops colour jitter under RandAugment
    else:
        assert [type(t) for t in train[:3]] == [T.Resize, T.RandomCrop, T.RandomHorizontalFlip]
    for dataset in splits.evals.values():  # evaluation: centre crop, same normalisation, no augmentation
        ev = _transforms(dataset)
        assert isinstance(ev[1], T.CenterCrop) and tuple(ev[-1].mean) == pytest.approx(CLIP[0])
    x, _, _ = splits.train[0]
    assert x.shape == (3, 32, 32)


def test_strong_transform_is_random_per_call(tmp_path):
    make_domain(tmp_path)
    splits = READERS.get("imagenet")(
        DataRequest(tmp_path, "imagenet", "final", len(WNIDS), image_size=32, augment="strong")
    )
    torch.manual_seed(0)
    draws = torch.stack([splits.train[0][0] for _ in range(20)])
    assert (draws - draws[:1]).abs().amax(dim=(1, 2, 3)).gt(1e-3).sum() >= 15


def test_mixup_statistics_match_noahs_settings():
    """timm's Mixup as NOAH sets it: every batch mixed, mixup (Beta(0.8, 0.8)) or cutmix (Beta(1, 1)) half the
    time each, label smoothing 0.1; the targets' weight equals the share of each image in the mixed pixels."""
    classes, n = 10, 64
    mixup = batch_mixup("strong", classes)
    assert batch_mixup("standard", classes) is None
    np.random.seed(0)
    torch.manual_seed(0)
    y = torch.arange(n) % classes
    level = torch.linspace(-1, 1, n)  # image i is the constant level[i]
    lams, cut = [], []
    for _ in range(400):
        x = level.view(n, 1, 1, 1).expand(n, 3, 16, 16).clone()
        xm, target = mixup(x, y.clone())
        assert target.shape == (n, classes) and torch.allclose(target.sum(-1), torch.ones(n))
        lam = (target[0, y[0]] - 0.1 / classes) / 0.9  # sample 0 is mixed with sample n-1 (the batch reversed)
        off = torch.ones(n, classes, dtype=torch.bool)
        off[torch.arange(n), y] = False
        off[torch.arange(n), y.flip(0)] = False
        assert torch.allclose(target[off], torch.full_like(target[off], 0.1 / classes))  # smoothing mass
        mean_pixel = xm.mean(dim=(1, 2, 3))
        torch.testing.assert_close(mean_pixel, lam * level + (1 - lam) * level.flip(0), rtol=0, atol=1e-5)
        lams.append(float(lam))
        cut.append(bool((xm[0] - xm[0].flatten()[0]).abs().max() > 1e-6))
    lams_t, cut_t = torch.tensor(lams), torch.tensor(cut)
    assert 0.4 < cut_t.float().mean() < 0.6  # switch_prob 0.5
    mix = lams_t[~cut_t]
    assert abs(float(mix.mean()) - 0.5) < 0.07
    assert abs(float(mix.std()) - (1 / (4 * (2 * 0.8 + 1))) ** 0.5) < 0.05  # Beta(0.8, 0.8): std 0.31
    # cutmix: λ is the share of pixels left to the image (boxes clipped at the border make it > 0.5 on average)
    assert 0.5 < float(lams_t[cut_t].mean()) < 0.85


def test_both_pace_copies_see_the_same_mixed_image_and_ce_uses_soft_targets(make_vit):
    model = make_vit(drop_path_rate=0.0)
    adapters.inject(model, "lora_mul+vpt_add", 2)
    method = METHODS.get("pace")(METHODS.get("pace").make_config({}))
    method.setup(model, None)  # type: ignore[arg-type]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    mix = batch_mixup("strong", 5)
    seen, mixed = [], []

    def spy(x, y):
        xm, ym = mix(x, y)
        mixed.append((xm.clone(), ym.clone()))
        return xm, ym

    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    torch.manual_seed(1)
    batch = (torch.randn(8, 3, 32, 32), torch.arange(8) % 5, torch.arange(8))
    original = batch[0].clone()  # timm mixes in place
    with adapters.plain_paths():  # the model's input; the fast path duplicates after block 0 (test_fastpaths.py)
        out, targets = train_step(method, model.train(), batch, optimizer, params, spy)
    (xm, ym), (inputs,) = mixed[0], seen
    assert not torch.allclose(xm, original)
    torch.testing.assert_close(inputs, torch.cat([xm, xm]), rtol=0, atol=0)
    assert torch.equal(targets, ym)
    soft_ce = -(ym * F.log_softmax(out.logits.detach().float(), -1)).sum(-1).mean()
    torch.testing.assert_close(out.parts["ce"].detach(), soft_ce)
    stats = EpochStats(torch.device("cpu"))
    stats.add(out.loss, out.parts, out.logits, targets, out.grad_norm)
    hits = (out.logits.argmax(-1) == ym.argmax(-1)).float().mean().item() * 100  # soft targets: the largest share
    assert stats.finish()["train_acc"] == pytest.approx(hits)


def test_mixup_needs_even_batches():
    mix = batch_mixup("strong", 5)
    check_mixup_batch(mix, 64, 1000)
    check_mixup_batch(mix, 64, 10)  # one short step of 10
    check_mixup_batch(None, 63, 1000)
    with pytest.raises(UsageError, match="even batch"):
        check_mixup_batch(mix, 63, 1000)
    with pytest.raises(UsageError, match="even batch"):
        check_mixup_batch(mix, 64, 5)


def test_normalisation_per_backbone():
    imagenet = (backbones.IMAGENET_MEAN, backbones.IMAGENET_STD)
    assert backbones.normalization("vit_b16_in21k") == imagenet  # the authors' choice; timm's ViT config says 0.5
    assert backbones.normalization("swin_b_in22k") == imagenet
    assert backbones.normalization("vit_b_laion2b_in12k") == CLIP  # CLIP's, from timm's configuration
    assert backbones.normalization("vit_demo") == ((0.5,) * 3, (0.5,) * 3)
    assert backbones.normalization("vit_small_patch16_224") == ((0.5,) * 3, (0.5,) * 3)  # timm's own config
    assert backbones.normalization("resnet18") == imagenet


def test_demo_reader_normalises_with_the_requested_stats():
    a = READERS.get("demo")(
        DataRequest(
            None,
            "digits",
            "final",
            5,
            image_size=8,  # type: ignore[arg-type]
            mean=(0.5,) * 3,
            std=(0.5,) * 3,
        )
    )
    b = READERS.get("demo")(
        DataRequest(
            None,
            "digits",
            "final",
            5,
            image_size=8,  # type: ignore[arg-type]
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
        )
    )
    xa, xb = a.train[0][0], b.train[0][0]
    torch.testing.assert_close(xb, 2 * xa)  # (p - 0.5) / 0.25 = 2 (p - 0.5) / 0.5
    with pytest.raises(UsageError, match="augment"):
        READERS.get("demo")(
            DataRequest(
                None,
                "digits",
                "final",
                5,
                image_size=8,  # type: ignore[arg-type]
                augment="strong",
            )
        )


def test_strong_augmentation_posterizes_to_zero_bits_instead_of_crashing():
    """RandAugment's increasing posterize reaches 0 bits at magnitude 10; newer Pillow raises there, which stopped
    about one draw in 600 (every domain run in its first epoch). Zero bits is a black image, as Pillow had it."""
    from PIL import Image
    from timm.data.auto_augment import AugmentOp

    from pacebench.data.transforms import _walk, strong_train_transform

    ops = [
        op for op in _walk(strong_train_transform(32)) if isinstance(op, AugmentOp) and op.name == "PosterizeIncreasing"
    ]
    image = Image.new("RGB", (8, 8), (200, 100, 50))
    assert ops and all(op.aug_fn(image, 0).getextrema() == ((0, 0),) * 3 for op in ops)
    assert ops[0].aug_fn(image, 4).getpixel((0, 0)) == (192, 96, 48)
