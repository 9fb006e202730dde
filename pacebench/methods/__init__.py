"""Training objectives, registered in `METHODS`: the baseline, PACE and its variants, and every Table-6 ablation.

A new method is one new module with a registered Method subclass, plus its import below.
"""

from pacebench.methods import baseline, fast, fpa, gp, l1, lazy, multi, pace, pretrained, sam, variants  # noqa: F401
from pacebench.methods.base import CLASSIFICATION, METHODS, Method, MethodConfig, Objective, SetupInfo, StepOutput

ABLATIONS = ("baseline", "noise", "pace", "pace_add", "pace_h", "pace_drop", "pace_sigma_const", "pace_sigma_inc",
             "fpa", "sam", "gp", "fpa_gp", "l1")
EFFICIENCY = ("pace_lazy", "pace_fast", "pace_multi")

__all__ = ["ABLATIONS", "CLASSIFICATION", "EFFICIENCY", "METHODS", "Method", "MethodConfig", "Objective", "SetupInfo",
           "StepOutput"]
