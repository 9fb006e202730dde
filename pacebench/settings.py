"""Where pacebench reads and writes: the database, the data root, the weights directory, the results folder.

Each is a command-line option first, then an environment variable, then a default under ./results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pacebench.errors import UsageError

DB_ENV, DATA_ENV, WEIGHTS_ENV, RESULTS_ENV = "PACEBENCH_DB", "PACEBENCH_DATA", "PACEBENCH_WEIGHTS", "PACEBENCH_RESULTS"


def results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV, "results"))


def default_db_url() -> str:
    return os.environ.get(DB_ENV) or f"sqlite:///{results_dir() / 'pacebench.db'}"


def data_root() -> Path:
    return Path(os.environ.get(DATA_ENV, "data"))


def weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_ENV, "weights"))


def repo_root() -> Path:
    """The checkout this package lives in (benchmarks/ sits beside pacebench/)."""
    return Path(__file__).resolve().parent.parent


def suites_dir() -> Path:
    return Path(os.environ.get("PACEBENCH_SUITES", repo_root() / "benchmarks"))


@dataclass(frozen=True)
class WorkerSettings:
    """How workers keep and give up claims. Each can be set by an environment variable, PACEBENCH_ and the name in
    capitals (tests shorten them).

    A claim goes stale after `missed_beats` heartbeats of `heartbeat_s` are missed (the lease); a run whose
    attempts all failed or vanished `max_attempts` times stays failed; a checkpoint is written every
    `checkpoint_every` epochs (and on SIGTERM/SIGINT); an idle worker that waits for runs held elsewhere looks
    again every `poll_s` seconds. A database that goes away (a restart, dropped connections, a locked or
    read-only SQLite file) is waited for up to `db_grace_s` seconds by every store call, then the worker stops.
    """

    heartbeat_s: float = 5.0
    missed_beats: int = 6
    max_attempts: int = 3
    checkpoint_every: int = 10
    poll_s: float = 2.0
    db_grace_s: float = 300.0

    @property
    def lease_s(self) -> float:
        return self.heartbeat_s * self.missed_beats

    @classmethod
    def from_env(cls, **overrides: Any) -> WorkerSettings:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"PACEBENCH_{f.name.upper()}")
            if raw is not None:
                try:
                    values[f.name] = float(raw) if f.type == "float" else int(raw)
                except ValueError:
                    raise UsageError(f"PACEBENCH_{f.name.upper()}={raw!r} is not a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if min(settings.heartbeat_s, settings.poll_s) <= 0 or settings.db_grace_s < 0 or min(
                settings.missed_beats, settings.max_attempts, settings.checkpoint_every) < 1:
            raise UsageError(f"invalid worker settings {settings}: times > 0 (db_grace_s >= 0), counts >= 1")
        return settings
