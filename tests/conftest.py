"""Shared fixtures: tiny real timm backbones that build and run in well under a second on a CPU; the stores the
storage contract runs against; runs written the way a worker writes them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from torch import nn

from pacebench.choices import Status
from pacebench.plan.spec import RunSpec
from pacebench.store import Claimant, EpochRecord, MemoryStore, RunRecord, Storage, Store
from pacebench.store.models import RunRow

# Tiny models: one intra-op thread is ~100x faster than two on a shared 2-core box (OpenMP spin-waits).
torch.set_num_threads(1)


def tiny_vit(depth: int = 3, num_classes: int = 5, drop_path_rate: float = 0.1, seed: int = 0) -> nn.Module:
    """A 3-block ViT on 32 px images with 8 px patches (16 tokens + cls), embed dim 32."""
    torch.manual_seed(seed)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=depth,
        num_heads=2,
        num_classes=num_classes,
        drop_path_rate=drop_path_rate,
    )


def tiny_swin(num_classes: int = 5, drop_path_rate: float = 0.1, seed: int = 0) -> nn.Module:
    """A 4-stage Swin (1, 1, 2, 1 blocks) on 32 px images, window 4: stage 0 has 4 windows per image."""
    torch.manual_seed(seed)
    return timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        img_size=32,
        patch_size=4,
        window_size=4,
        embed_dim=16,
        depths=(1, 1, 2, 1),
        num_heads=(1, 1, 2, 2),
        num_classes=num_classes,
        drop_path_rate=drop_path_rate,
    )


@pytest.fixture
def make_vit() -> Callable[..., nn.Module]:
    return tiny_vit


@pytest.fixture
def make_swin() -> Callable[..., nn.Module]:
    return tiny_swin


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session; skipped (with the reason) where its binaries are missing, except
    under CI=true, where a missing server is a failure."""
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import pgserver

    bin_dir = pgserver.find_bin()
    if bin_dir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql or set PG_BIN"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = pgserver.start(bin_dir)
    yield server
    server.stop()


_databases = iter(range(10**6))


def fresh_url(kind: str, request, tmp_path: Path) -> str:
    """A fresh empty database: a SQLite file, or a new database on the session's PostgreSQL server."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/r.db"
    return request.getfixturevalue("pg_server").create_database(f"t{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    return fresh_url(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", "postgresql", "memory"])
def store(request, tmp_path) -> Storage:
    """The storage contract's subject: the SQL store on a SQLite file and on a real PostgreSQL server, and the
    in-memory store. Tests that take `store` run on all three."""
    if request.param == "memory":
        return MemoryStore()
    return Store(fresh_url(request.param, request, tmp_path))


TESTER = Claimant(3600.0, host="test-host", pid=1)  # a worker elsewhere that never goes silent


def written_run(
    store: Storage,
    spec: RunSpec,
    metrics: dict[str, Any] | None = None,
    *,
    status: str = Status.done,
    epochs: Sequence[EpochRecord] = (),
    weights: dict[str, Any] | None = None,
    origin: str = "direct",
    error: str = "boom",
    facts: dict[str, Any] | None = None,
    predictions: dict[str, Any] | None = None,
) -> RunRecord:
    """A run written the way a worker writes one, through a claim: queued, claimed, its epochs and `facts` (what the
    trainer reports: parameter counts, setup), then done (or, for `failed`, its numbers kept and then failed, so a
    test can check that a failed run's numbers never show up; `running` stays claimed; `queued` is only enqueued)."""
    (run,) = store.enqueue([spec], origin)
    if status != Status.queued:
        run = store.claim_next(TESTER, keys=[run.key])
        assert run is not None and run.claim is not None
        for epoch in epochs:
            store.write_epoch(run.id, run.claim, epoch)
        if facts:
            store.set_run_facts(run.id, run.claim, **facts)
        if status == Status.done:
            store.finish_claimed(run.id, run.claim, metrics or {}, weights, predictions)
        elif status == Status.failed:
            store.set_run_facts(run.id, run.claim, metrics=metrics or {})
            assert store.fail_claimed(run.id, run.claim, error, max_attempts=1, retry=False) == Status.failed
    got = store.get_run(run.id)
    assert got is not None and got.status == status
    return got


def rewrite_run(store: Storage, run_id: int, **values: Any) -> None:
    """Changes a run's row around the store's API: what an older pacebench stored (an old key, a missing column) or
    a holder left behind when it went silent (an old heartbeat). No caller of the store may do this."""
    if isinstance(store, MemoryStore):
        store._runs[run_id] = dataclasses.replace(store._runs[run_id], **values)
        return
    assert isinstance(store, Store)
    with store.db.session() as s:
        s.execute(update(RunRow).where(RunRow.id == run_id).values(**values))


@pytest.fixture(scope="session")
def results(tmp_path_factory) -> Path:
    """A results folder holding a quickly pre-trained demo backbone (1 epoch instead of the demo's 60)."""
    path = tmp_path_factory.mktemp("results")
    mp = pytest.MonkeyPatch()
    mp.setenv("PACEBENCH_RESULTS", str(path))
    from pacebench.plan.planner import weights_sha256
    from pacebench.training.pretrain import pretrain_demo_backbone

    weights_sha256.cache_clear()
    pretrain_demo_backbone(epochs=1)
    yield path
    weights_sha256.cache_clear()
    mp.undo()


# `pacebench bench` on a model that steps in milliseconds: test_vit at 16 px, batch 2, CPU, no warm-up
TINY_BENCH = [
    "bench", "--backbone", "test_vit", "--image-size", "16", "--patch-size", "8", "--batch", "2",
    "--classes", "3", "--warmup", "0", "--device", "cpu",
]  # fmt: skip


def assert_one_line_error(result, code: int, message: str) -> None:
    """A CLI result that failed as a user error should: the exit code, `message` on one `error:` line, and no
    exception kept by the runner (CliRunner swallows exceptions, so a clean-looking output proves nothing)."""
    assert isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output  # progress lines may come before it
    assert "╭" not in result.output and "Traceback" not in result.output, result.output


def assert_ok(result) -> None:
    """Exit 0 with no exception kept by the runner."""
    assert result.exit_code == 0 and result.exception is None, (result.output, result.exception)


@pytest.fixture
def sqlite_pragmas():
    """PRAGMAs run on every new SQLite connection while the test runs (a full disk, a read-only file: the tests run
    as root, where file permissions would not stop a write)."""
    pragmas: list[str] = []

    def on_connect(dbapi_conn, _record):
        for pragma in pragmas:
            dbapi_conn.execute(pragma)

    event.listen(Engine, "connect", on_connect)
    yield pragmas
    event.remove(Engine, "connect", on_connect)
