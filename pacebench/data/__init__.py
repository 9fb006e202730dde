"""Data readers, one per on-disk layout, registered in `READERS` (and their layouts in `check.LAYOUTS`)."""

from pacebench.data import demo, fewshot, fgvc, imagenet, vtab  # noqa: F401  (registration)
from pacebench.data.base import READERS, DataRequest, Indexed, Splits
from pacebench.text import data as _text_data  # noqa: F401, E402  (registers the glue and gsm8k layouts)

__all__ = ["READERS", "DataRequest", "Indexed", "Splits"]
