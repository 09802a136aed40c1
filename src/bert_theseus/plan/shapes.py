"""The shapes a successor can take: depth (layers kept) x width (share of each layer's heads
and FFN neurons kept), built as compact models with the predecessor's own weights (an
untrained model's unit LayerNorm scales and zero biases are folded away by OpenVINO, which
makes it faster than any trained model of its shape)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PretrainedConfig, PreTrainedModel

from ..arch import model_type_of
from ..compact import (
    CompactConfig,
    CompactForSequenceClassification,
    compact_from,
    layout_for,
    to_stock_if_possible,
)
from ..speed import count_parameters
from .config import PlanConfig, PlanError


@dataclass(frozen=True)
class Shape:
    """A successor's size: its bottom `depth` layers of the predecessor, each keeping
    `width` of its heads and FFN neurons; the per-layer sizes that follow.

    >>> Shape.of(minilm.config, depth=3, width=0.5).layer_heads
    (6, 6, 6)
    """

    depth: int
    width: float
    layer_heads: tuple[int, ...]
    layer_intermediate_sizes: tuple[int, ...]

    @classmethod
    def of(cls, predecessor: PretrainedConfig, depth: int, width: float) -> Shape:
        heads, neurons = layer_sizes(predecessor)
        if not 1 <= depth <= len(heads):
            raise PlanError(
                f"depth {depth} is not between 1 and the predecessor's {len(heads)} layers"
            )
        kept = [kept_heads(width, h) for h in heads[:depth]]
        widths = [kept_neurons(k, h, n) for k, h, n in zip(kept, heads, neurons, strict=False)]
        return cls(depth, width, tuple(kept), tuple(widths))

    @classmethod
    def from_row(cls, row: dict) -> Shape:
        """The shape of a plan's row (`Plan.choose` gives one)."""
        return cls(row["depth"], row["width"], tuple(row["layer_heads"]),
                   tuple(row["layer_intermediate_sizes"]))  # fmt: skip

    @property
    def name(self) -> str:
        return f"depth {self.depth} width {self.width:g}"


def kept_heads(width: float, heads: int) -> int:
    """Heads a layer keeps at `width`: round(width x heads), at least 1 (as width methods cut)."""
    return max(1, round(width * heads))


def kept_neurons(kept: int, heads: int, neurons: int) -> int:
    """FFN neurons a layer keeps: the share of its heads kept (as the width methods cut)."""
    return int(kept / heads * neurons)


def layer_sizes(config: PretrainedConfig) -> tuple[list[int], list[int]]:
    """Heads and FFN width of each layer of a stock or compact predecessor."""
    if isinstance(config, CompactConfig):
        if any(config.layer_ranks) or config.embedding_rank is not None:
            raise PlanError(
                "the predecessor has low-rank factors, which the plan's shapes do not keep: "
                "plan the model they were made from"
            )
        return list(config.layer_heads), list(config.layer_intermediate_sizes)
    layout = layout_for(model_type_of(config))
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    return [heads] * layers, [getattr(config, layout.ffn_width)] * layers


def shapes(predecessor: PretrainedConfig, config: PlanConfig) -> list[Shape]:
    """Every depth x width of the plan but the predecessor's own (all layers, width 1), in
    the order of the plan's depths and widths; widths that give a depth the same sizes count
    once (the first)."""
    heads, neurons = layer_sizes(predecessor)
    own = Shape.of(predecessor, len(heads), 1.0)
    depths = config.depths or list(range(len(heads), 0, -1))
    found: dict[tuple, Shape] = {}
    for depth in depths:
        for width in config.widths:
            shape = Shape.of(predecessor, depth, width)
            sizes = (shape.layer_heads, shape.layer_intermediate_sizes)
            if sizes != (own.layer_heads, own.layer_intermediate_sizes):
                found.setdefault(sizes, shape)
    if not found:
        raise PlanError("the plan's depths and widths give no shape smaller than the predecessor")
    return list(found.values())


def untrained(predecessor: PretrainedConfig, shape: Shape, seed: int = 0) -> PreTrainedModel:
    """A classifier of the predecessor's architecture in `shape`, with random weights, as
    the stock class where it fits (all heads kept), else a compact model.

    >>> untrained(bert.config, Shape.of(bert.config, 6, 0.5)).config.layer_heads
    [6, 6, 6, 6, 6, 6]
    """
    base = predecessor.base_config() if isinstance(predecessor, CompactConfig) else predecessor
    config = CompactConfig.from_base(
        base,
        layer_heads=list(shape.layer_heads),
        layer_intermediate_sizes=list(shape.layer_intermediate_sizes),
        attn_implementation=predecessor._attn_implementation,
    )
    torch.manual_seed(seed)
    return to_stock_if_possible(CompactForSequenceClassification(config)).eval()


def with_weights_of(predecessor, shape: Shape) -> PreTrainedModel:
    """A classifier of `shape` holding the predecessor's own weights: the first heads and
    FFN neurons of its bottom layers (which ones does not change the speed; that they are
    real weights does). A model with untrained values runs faster than any trained one of
    its shape on OpenVINO, whose conversion folds away the LayerNorm scales of 1 and the
    biases of 0 (docs/results.md, section 15). A classifier is cut whole (low-rank layers
    and head included); a sentence encoder, no classifier itself, gives its transformer's
    weights to `untrained`'s classifier, whose head (on one token) stays random.

    >>> with_weights_of(bert, Shape.of(bert.config, 6, 0.5)).config.layer_heads
    [6, 6, 6, 6, 6, 6]
    """
    total = predecessor.config.num_hidden_layers
    kept = range(shape.depth)
    # Layers above the depth are dropped: any heads and neurons will do for them.
    heads = [range(h) for h in shape.layer_heads] + [range(1)] * (total - shape.depth)
    neurons = [range(n) for n in shape.layer_intermediate_sizes] + [range(1)] * (
        total - shape.depth
    )
    if isinstance(predecessor, PreTrainedModel):
        cut = compact_from(predecessor, heads=heads, neurons=neurons, layers=kept)
        return to_stock_if_possible(cut).eval()
    model = untrained(predecessor.config, shape)
    cut = compact_from(predecessor.base_model, heads=heads, neurons=neurons, layers=kept)
    # The transformer has a pooler that MPNet's classifier builds none of; it runs on one token.
    loaded = model.base_model.load_state_dict(to_stock_if_possible(cut).state_dict(), strict=False)
    left = [k for k in loaded.missing_keys + loaded.unexpected_keys if not k.startswith("pooler.")]
    if left:
        raise ValueError(f"the shape's encoder does not take the predecessor's weights: {left}")
    return model


def capacity(model: PreTrainedModel) -> int:
    """Parameters inside the encoder's layers: what a shape keeps of the predecessor's
    capacity (embeddings and head stay whole at every shape)."""
    layout = layout_for(model_type_of(model.config))
    return count_parameters(model.base_model.get_submodule(layout.layers))
