"""Compact models: encoders whose layers keep fewer heads, narrower FFNs or low-rank linears.

Importing this package registers the family with transformers' Auto classes, so a saved
compact model loads with `AutoModelForSequenceClassification.from_pretrained(folder)` and no
remote code. Methods that shrink layers (DynaBERT, LadaBERT, ...) share it:

>>> from bert_theseus.compact import compact_from, to_stock_if_possible
>>> small = compact_from(bert, heads=[[0, 2], [1], [0, 1, 3], [3]])
>>> to_stock_if_possible(small).save_pretrained("runs/small")  # stays compact: sizes differ
"""

from .config import CompactConfig, CompactConfigError
from .convert import compact_from, factorize, in_source_order, to_stock_if_possible
from .layer import LowRankEmbedding, LowRankLinear
from .layout import LAYOUTS, Layout, UnsupportedArchitectureError, layout_for
from .model import (
    CompactForSequenceClassification,
    CompactModel,
    CompactPreTrainedModel,
    register,
)

register()

__all__ = [
    "LAYOUTS",
    "CompactConfig",
    "CompactConfigError",
    "CompactForSequenceClassification",
    "CompactModel",
    "CompactPreTrainedModel",
    "Layout",
    "LowRankEmbedding",
    "LowRankLinear",
    "UnsupportedArchitectureError",
    "compact_from",
    "factorize",
    "in_source_order",
    "layout_for",
    "to_stock_if_possible",
]
