"""Where pacebench reads and writes: the database, the data root, the weights directory, the results folder.

Each is a command-line option first, then an environment variable, then a default under ./results.
"""

from __future__ import annotations

import os
from pathlib import Path

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
