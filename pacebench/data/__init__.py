"""Data readers, one per on-disk layout, registered in `READERS` (see `base` for the contract); `text` holds the
text suites' readers (GLUE, GSM-8K), which the text trainer reads as examples rather than images."""

from pacebench.data import demo, fewshot, fgvc, imagenet, text, vtab  # noqa: F401  (registration)
from pacebench.data.base import READERS, DataRequest, Splits, load_splits
from pacebench.data.images import Indexed

__all__ = ["READERS", "DataRequest", "Indexed", "Splits", "load_splits"]
