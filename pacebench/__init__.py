"""pacebench: PACE, its baselines and ablations, over the paper's benchmarks; every run kept in a database.

In your own training loop: `pacebench.attach(model, "pace", ...)` (a timm model) or `pacebench.attach_text(...)`
(a Hugging Face classifier with peft's LoRA) returns a `Tuner` that steps, merges, saves and loads (docs/api.md).
From a notebook: `pacebench.load_runs(db=...)`, `pacebench.load_epochs(...)` and `pacebench.load_predictions(...)`
return pandas DataFrames.
"""

from __future__ import annotations

from typing import Any

from pacebench.version import __version__

RESULTS = ("load_runs", "load_epochs", "load_predictions")
TRAINING = ("attach", "attach_text", "Tuner")


def __getattr__(name: str) -> Any:
    """The public functions import their heavy packages only when first used, so `import pacebench` and the CLI
    start fast: pandas for the `load_*` functions, torch and timm for `attach`, `attach_text` and `Tuner`."""
    if name in RESULTS:
        from pacebench import results  # lazy: pandas and sqlalchemy

        return getattr(results, name)
    if name in TRAINING:
        from pacebench import api  # lazy: torch and timm

        return getattr(api, name)
    raise AttributeError(f"module 'pacebench' has no attribute {name!r}")


__all__ = ["Tuner", "__version__", "attach", "attach_text", "load_epochs", "load_predictions", "load_runs"]
