"""Data readers, one per on-disk layout, registered in `READERS` (see `base` for the contract)."""

from pacebench.data import demo, fewshot, fgvc, imagenet, vtab  # noqa: F401  (registration)
from pacebench.data.base import READERS, DataRequest, Splits, load_splits
from pacebench.data.images import Indexed
from pacebench.text import data as _text_data  # noqa: F401, E402  (registers the glue and gsm8k readers' layouts)

__all__ = ["READERS", "DataRequest", "Indexed", "Splits", "load_splits"]
