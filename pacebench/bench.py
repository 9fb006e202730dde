"""`pacebench bench`: training-step speed, FLOPs and memory of each method on one backbone and adapter kind, stored
in the database.

Every method is built the way a run builds it (`prepare.attach`) on a randomly initialised timm backbone and fed
one synthetic batch. The methods' steps are timed interleaved (one step of each method per round, the device
synchronised around each step), so a machine that slows down mid-way slows every method alike; each row is the
median over the rounds. FLOPs come from `torch.utils.flop_counter` on one step, so the time ratio of a method to
the baseline can be checked against its FLOP ratio, and on CUDA the model FLOP utilisation (MFU) is the counted
FLOPs per second over the GPU's dense peak for the precision.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import timm
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from pacebench.choices import Paths
from pacebench.core import adapters
from pacebench.core.adapters import training_paths
from pacebench.core.backbones import BACKBONES, check_image_size
from pacebench.core.methods import METHODS, SetupInfo
from pacebench.core.prepare import attach
from pacebench.errors import UsageError
from pacebench.execution.provenance import versions
from pacebench.plan.spec import DEFAULT_ADAPTER
from pacebench.training.image import compile_blocks
from pacebench.training.loop import autocast_for, make_optimizer

# Dense peak FLOP/s by GPU model and precision (vendor data sheets; fp32 without TF32, which pacebench keeps off).
PEAK_FLOPS = {
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp32": 91.6e12},
}


@dataclass(frozen=True)
class BenchConfig:
    backbone: str = "vit_base_patch16_224"  # a timm architecture, randomly initialised
    adapter: str = DEFAULT_ADAPTER
    rank: int = 10
    batch: int = 64
    image_size: int = 224
    patch_size: int | None = None  # None: the architecture's own
    classes: int = 100
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 (resolved from auto by the caller)
    methods: tuple[str, ...] = ("baseline", "pace")
    compile: bool = False
    paths: str = "fast"  # choices.Paths: which training fast paths run (runs always use all)
    warmup: int = 2
    steps: int = 6
    threads: int = 1

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise UsageError(f"--precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.paths not in set(Paths):
            raise UsageError(f"--paths must be one of {', '.join(Paths)}, got {self.paths!r}")
        if min(self.batch, self.image_size, self.rank, self.steps, self.threads) < 1 or self.warmup < 0:
            raise UsageError("--batch, --image-size, --rank, --steps and --threads must be >= 1 and --warmup >= 0")
        if self.patch_size is not None and self.patch_size < 1:
            raise UsageError(f"--patch-size must be >= 1 (or left out: the architecture's own), got {self.patch_size}")

    @property
    def adapter_label(self) -> str:
        """The kind and its size (lora r8), or the name alone for a kind without a size (its rank is a placeholder)."""
        return f"{self.adapter} r{self.rank}" if adapters.kind_of(self.adapter).size else self.adapter


def bench_config(adapter: str, rank: int | None, **settings: Any) -> BenchConfig:
    """A BenchConfig for adapter kind `adapter`, `rank` None meaning the kind's own size (an unknown kind, or a
    size it cannot take, is a UsageError here, before anything is built)."""
    size = adapters.kind_of(adapter).settings(rank).size
    cfg = BenchConfig(adapter=adapter, rank=size, **settings)
    patch = {"patch_size": cfg.patch_size} if cfg.patch_size else {}
    if timm.is_model(cfg.backbone):  # else the build names the architecture
        check_image_size(cfg.backbone, cfg.image_size, "--image-size (and --patch-size)", **patch)
    return cfg


@dataclass
class BenchRow:
    method: str
    ms_per_step: float
    images_per_s: float
    gflop_per_step: float
    peak_mib: float | None = None  # CUDA only: torch.cuda.max_memory_allocated over one step
    time_ratio: float = 1.0  # step time / the baseline's
    flop_ratio: float = 1.0  # FLOPs / the baseline's
    mfu: float | None = None  # CUDA only
    times_ms: list[float] = field(default_factory=list)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    steps: dict[str, Callable[[], Any]], warmup: int, repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds per call of each function, calls interleaved round by round (every other round in reverse order, so
    no function always follows the same one); warm-up rounds are dropped. Lists are aligned by round."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(warmup + repeats):
        for name, step in reversed(steps.items()) if round_ % 2 else steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)  # measurement only: the training loop itself never syncs per step
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def build(cfg: BenchConfig, method: str, device: torch.device) -> Callable[[], Any]:
    """One training step of `method` on a fresh model, as a closure over its model, optimizer and batch."""
    torch.manual_seed(0)
    extra: dict[str, Any] = {"patch_size": cfg.patch_size} if cfg.patch_size else {}
    model = timm.create_model(
        cfg.backbone, pretrained=False, num_classes=cfg.classes, drop_path_rate=0.1, img_size=cfg.image_size, **extra
    )
    ready = attach(model, method, SetupInfo(cfg.batch * 4, cfg.classes), cfg.adapter, cfg.rank, device=device)
    if cfg.compile:
        compile_blocks(ready.model)
    ready.method.autocast = autocast_for(cfg.precision, device)
    optimizer = make_optimizer(ready.params, 1e-4, 1e-4, device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(cfg.batch, 3, cfg.image_size, cfg.image_size, generator=g).to(device)
    y = torch.randint(0, cfg.classes, (cfg.batch,), generator=g).to(device)
    idx = torch.arange(cfg.batch, device=device)
    return lambda: ready.method.step(ready.model, (x, y, idx), optimizer, ready.params)


def count_flops(step: Callable[[], Any], steps: int = 2) -> float:
    """Mean FLOPs per step over `steps` steps (pace_lazy alternates a PACE step and a plain one). Only products
    and attention are counted: element-wise work (noise, norms, activations) is not in the FLOP model."""
    with FlopCounterMode(display=False) as counter:
        for _ in range(steps):
            step()
    return float(counter.get_total_flops()) / steps


def peak_flops(device: torch.device, precision: str) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((p[precision] for model, p in PEAK_FLOPS.items() if model in name), None)


def peak_memory_mib(step: Callable[[], Any], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def build_steps(cfg: BenchConfig) -> dict[str, Callable[[], Any]]:
    """One training step of every method of `cfg` (names checked first), with the device's thread count and fp32
    settings applied."""
    for m in cfg.methods:
        METHODS.get(m)
    if not timm.is_model(cfg.backbone):
        named = (
            f" ({cfg.backbone} is a named backbone: bench builds timm architectures with random weights)"
            if cfg.backbone in BACKBONES
            else ""
        )
        raise UsageError(
            f"unknown timm architecture {cfg.backbone!r}{named}; use e.g. vit_base_patch16_224 or vit_tiny_patch16_224"
        )
    device = torch.device(cfg.device)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32, as in the authors' code
    return {m: build(cfg, m, device) for m in cfg.methods}


def run(cfg: BenchConfig, steps: dict[str, Callable[[], Any]] | None = None) -> list[BenchRow]:
    """Times every method of `cfg` interleaved (on `steps` from `build_steps`, or fresh ones); the first method is
    the reference for the ratios."""
    steps = steps or build_steps(cfg)
    device = torch.device(cfg.device)
    with training_paths(cfg.paths):
        flops = {m: count_flops(step) for m, step in steps.items()}
        times = interleaved(steps, cfg.warmup, cfg.steps, device)
        memory = {m: peak_memory_mib(step, device) for m, step in steps.items()}
    peak = peak_flops(device, cfg.precision)
    rows = []
    for m in cfg.methods:
        seconds = statistics.median(times[m])
        rows.append(
            BenchRow(
                m,
                1000 * seconds,
                cfg.batch / seconds,
                flops[m] / 1e9,
                memory[m],
                mfu=flops[m] / seconds / peak if peak else None,
                times_ms=[1000 * t for t in times[m]],
            )
        )
    ref = rows[0]
    for r in rows:
        r.time_ratio, r.flop_ratio = r.ms_per_step / ref.ms_per_step, r.gflop_per_step / ref.gflop_per_step
    return rows


def profile_tables(cfg: BenchConfig, steps: dict[str, Callable[[], Any]], rows: int = 15) -> dict[str, str]:
    """torch.profiler's operator table for one more step of each method (of `steps`, already warm from `run`),
    sorted by the time spent in each operator itself (the GPU's time on CUDA): where a step's time goes, beyond its
    FLOPs."""
    device = torch.device(cfg.device)
    cuda = device.type == "cuda"
    tables = {}
    for method, step in steps.items():
        with (
            training_paths(cfg.paths),
            profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof,
        ):
            step()
            sync(device)
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        tables[method] = prof.key_averages().table(sort_by=sort, row_limit=rows)
    return tables


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)

    return f"cpu {platform.processor() or platform.machine()}"


def as_records(cfg: BenchConfig, rows: list[BenchRow]) -> list[dict[str, Any]]:
    """Rows for the store's `speed` table: the setting, the device and versions, the measurement."""
    setting = {k: v for k, v in asdict(cfg).items() if k not in ("methods", "device")}
    device = torch.device(cfg.device)
    return [
        {
            **setting,
            "device": str(device),
            "device_name": device_name(device),
            "versions": versions(),
            **{k: v for k, v in asdict(r).items() if k != "times_ms"},
            "times_ms": r.times_ms,
        }
        for r in rows
    ]
