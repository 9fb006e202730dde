"""Data readers, one per on-disk layout, registered in `READERS` (and their layouts in `check.LAYOUTS`)."""

from pacebench.data import demo, fewshot, fgvc, imagenet, vtab  # noqa: F401  (registration)
from pacebench.data.base import READERS, DataRequest, Indexed, Splits

__all__ = ["READERS", "DataRequest", "Indexed", "Splits"]
