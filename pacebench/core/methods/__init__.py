"""Training objectives, registered in `METHODS`: the baseline, PACE and its variants, and every Table-6 ablation.

A new method is one new module with a registered Method subclass, plus its name in `MODULES` below. Each method
describes itself (tags, paper row, hyperparameters with help text and search grid), so the Table-6 and efficiency
groups, the ablation table's rows and `pacebench methods` are all read from the registry. Registration order, set
by `MODULES`, is the order of rows in tables and in `pacebench ablate`: Table 6's order, then Fig. 5's variants.
"""

from importlib import import_module

from pacebench.core.methods.base import (
    CLASSIFICATION,
    EFFICIENCY_TAG,
    METHODS,
    TABLE6,
    Method,
    MethodConfig,
    Objective,
    SetupInfo,
    StepOutput,
    method_grid,
    tagged,
)

MODULES = ("baseline", "pace", "variants", "fpa", "sam", "gp", "l1", "lazy", "fast", "multi", "pretrained")
for _module in MODULES:
    import_module(f"pacebench.core.methods.{_module}")

ABLATIONS = tuple(tagged(TABLE6))  # baseline, PACE and every Table-6 ablation: what `pacebench ablate` runs
EFFICIENCY = tuple(tagged(EFFICIENCY_TAG))  # Fig. 5's cheaper or wider PACE: `pacebench ablate --efficiency`


def paper_rows() -> dict[str, str]:
    """Method name -> its row name in the paper's reference tables, for every method that has one."""
    return {name: cls.paper_row for name, cls in METHODS.items() if cls.paper_row}


__all__ = [
    "ABLATIONS",
    "CLASSIFICATION",
    "EFFICIENCY",
    "METHODS",
    "Method",
    "MethodConfig",
    "Objective",
    "SetupInfo",
    "StepOutput",
    "method_grid",
    "paper_rows",
    "tagged",
]
