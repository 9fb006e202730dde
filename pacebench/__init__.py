"""pacebench: PACE, its baselines and ablations, over the paper's benchmarks; every run kept in a database.

From a notebook: `pacebench.load_runs(db=...)` and `pacebench.load_epochs(...)` return pandas DataFrames.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`load_runs` and `load_epochs` import pandas only when first used, so the CLI starts fast."""
    if name in ("load_runs", "load_epochs"):
        from pacebench import results  # lazy: pandas and SQLAlchemy, so `import pacebench` stays light

        return getattr(results, name)
    raise AttributeError(f"module 'pacebench' has no attribute {name!r}")


__all__ = ["__version__", "load_epochs", "load_runs"]
