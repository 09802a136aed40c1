"""How much of a layer, and which layers, a DynaBERT sub-network keeps: plain arithmetic,
light to import (the config checks a predecessor with it before torch work begins)."""

from __future__ import annotations

import math

from ..registry import MethodConfigError

DROPPED_LAYERS = ("last", "first")  # of each group of layers a shallower sub-network loses


def kept_heads(width: float, heads: int) -> int:
    """Heads a layer keeps at `width` (the official code's round, banker's on .5)."""
    kept = round(width * heads)
    if kept < 1:
        raise MethodConfigError(
            f"width {width} keeps no attention head of {heads}: use widths >= {1 / heads:.3g}"
        )
    return kept


def kept_neurons(width: float, heads: int, neurons: int) -> int:
    """FFN neurons a layer keeps: the same share as its heads (official code)."""
    return int(kept_heads(width, heads) / heads * neurons)


def kept_layers(depth: float, layers: int, dropped: str = "last") -> list[int]:
    """Layer indices a sub-network of `depth` keeps, round(depth * L) of them.

    `dropped="last"` is the paper's rule, floor(i / depth): every group loses its last layer,
    so below full depth the top layer is dropped. `dropped="first"` is the same rule counted
    from the top: every group loses its first layer, and the top layer, the one the head
    reads, is always kept (docs/results.md section 7: in sentence-embedding predecessors only
    the top layers write the input into [CLS]).

    >>> kept_layers(0.75, 12)
    [0, 1, 2, 4, 5, 6, 8, 9, 10]
    >>> kept_layers(0.5, 6, dropped="first")
    [1, 3, 5]
    """
    if dropped not in DROPPED_LAYERS:
        raise MethodConfigError(
            f"dropped layer '{dropped}' is not one of {', '.join(DROPPED_LAYERS)}"
        )
    count = round(depth * layers)
    if count < 1:
        raise MethodConfigError(
            f"depth {depth} keeps no layer of {layers}: use depths >= {1 / layers:.3g}"
        )
    # The small epsilon keeps i / depth from landing just below an integer (e.g. 3 / 0.75).
    paper = [math.floor(i / depth + 1e-9) for i in range(count)]
    return paper if dropped == "last" else sorted(layers - 1 - k for k in paper)
