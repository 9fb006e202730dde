"""Where pacebench reads and writes: the database, the data root, the weights directory, the results folder.

Each is a command-line option first, then an environment variable, then a default under ./results.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pacebench.errors import UsageError
from pacebench.values import parse_value

DB_ENV, DATA_ENV, WEIGHTS_ENV, RESULTS_ENV = "PACEBENCH_DB", "PACEBENCH_DATA", "PACEBENCH_WEIGHTS", "PACEBENCH_RESULTS"
THREADS_ENV, DIAGNOSTICS_ENV = "PACEBENCH_THREADS", "PACEBENCH_DIAGNOSTICS"


def results_dir() -> Path:
    """The results folder. Refused at once where it cannot be a folder (it, or the nearest part of it that exists,
    is a file): otherwise the first write, perhaps after minutes of pre-training, would fail with an OSError."""
    path = Path(os.environ.get(RESULTS_ENV, "results"))
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UsageError(
            f"{RESULTS_ENV}={path}: {existing} is a file, not a folder; point {RESULTS_ENV} at a folder (it holds "
            "the database, the demo backbone, caches and figures)"
        )
    return path


def default_db_url() -> str:
    return os.environ.get(DB_ENV) or f"sqlite:///{results_dir() / 'pacebench.db'}"


def data_root() -> Path:
    return Path(os.environ.get(DATA_ENV, "data"))


def weights_dir() -> Path:
    return Path(os.environ.get(WEIGHTS_ENV, "weights"))


SUITES_ENV = "PACEBENCH_SUITES"
BUILTIN_SUITES = "pacebench.benchmarks"  # the suite files shipped in the package (benchmarks/ in the repository)


def builtin_suites_dir() -> Path:
    """The suite files and reference tables that ship with pacebench, found as package data (in a wheel and in an
    editable install alike; never through the source tree)."""
    return Path(str(importlib.resources.files(BUILTIN_SUITES)))


def user_suites_dir() -> Path | None:
    """A folder of the user's own suite files ($PACEBENCH_SUITES, or `pacebench --suites DIR`): they add to the
    built-in suites, and one with a built-in's name replaces it."""
    value = os.environ.get(SUITES_ENV)
    return Path(value) if value else None


def checkout() -> Path | None:
    """The git checkout pacebench runs from (an editable install), or None for an installed package: a wheel in a
    virtual environment inside some repository must not report that repository's commit as its own."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / ".git").exists() else None


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

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables `from_env` reads: how `run --jobs/--gpus` hands its
        --checkpoint-every and --attempts to the worker processes it starts."""
        return {f"PACEBENCH_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_env(cls, **overrides: Any) -> WorkerSettings:
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"PACEBENCH_{f.name.upper()}"
            raw = os.environ.get(name)
            if raw is not None:
                values[f.name] = parse_value(float if f.type == "float" else int, raw, f"${name}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if (
            min(settings.heartbeat_s, settings.poll_s) <= 0
            or settings.db_grace_s < 0
            or min(settings.missed_beats, settings.max_attempts, settings.checkpoint_every) < 1
        ):
            raise UsageError(f"invalid worker settings {settings}: times > 0 (db_grace_s >= 0), counts >= 1")
        return settings
