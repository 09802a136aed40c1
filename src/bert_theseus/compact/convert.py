"""Moving weights between stock models and compact ones: slice, factorise, and back."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn
from transformers import (
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    PretrainedConfig,
    PreTrainedModel,
)

from .config import CompactConfig, CompactConfigError
from .layer import LowRankLinear, take_columns, take_rows
from .layout import Layout, layout_for
from .model import CompactForSequenceClassification, CompactModel, CompactPreTrainedModel

Indices = Sequence[Sequence[int]]


def compact_from(
    model: PreTrainedModel, heads: Indices | None = None, neurons: Indices | None = None
) -> CompactForSequenceClassification:
    """A compact copy of `model` that keeps, in layer i, the attention heads `heads[i]` and
    the FFN neurons `neurons[i]` (indices into the layer as it is now). None keeps a whole
    dimension. Q, K and V lose the rows of dropped heads and the attention output their
    columns; the FFN input loses the rows of dropped neurons and the FFN output their
    columns. Embeddings, head and everything else are copied. `model` may be a stock
    classifier (or bare encoder, giving a CompactModel) of a supported architecture, or a
    compact model, which is then sliced further.

    >>> small = compact_from(bert, heads=[[0, 3], [1], [0, 1, 2], [2]],
    ...                      neurons=[range(48), range(10), range(30), range(7)])
    >>> small.config.layer_heads
    [2, 1, 3, 1]
    """
    config, layout = _source(model)
    layers = _layers(model, layout)
    current_heads = [
        getattr(layer.get_submodule(layout.attention), layout.head_count[0]) for layer in layers
    ]
    widths = [layer.get_submodule(layout.ffn_in).out_features for layer in layers]
    heads = _indices("heads", heads, current_heads)
    neurons = _indices("neurons", neurons, widths)
    base = config.base_config() if isinstance(config, CompactConfig) else config
    head_size = base.hidden_size // base.num_attention_heads
    before = config.layer_head_indices if isinstance(config, CompactConfig) else None
    before = before or [list(range(n)) for n in current_heads]

    state = dict(model.state_dict())
    prefix = _name_of(model, layers)
    for i, layer in enumerate(layers):
        rows = [h * head_size + j for h in heads[i] for j in range(head_size)]
        slices = {
            path: take_rows(layer.get_submodule(path), rows) for path in layout.head_linears()
        }
        slices[layout.attention_output] = take_columns(
            layer.get_submodule(layout.attention_output), rows
        )
        slices[layout.ffn_in] = take_rows(layer.get_submodule(layout.ffn_in), neurons[i])
        slices[layout.ffn_out] = take_columns(layer.get_submodule(layout.ffn_out), neurons[i])
        for path, tensors in slices.items():
            state.update({f"{prefix}.{i}.{path}.{k}": v for k, v in tensors.items()})

    target = CompactConfig.from_base(
        base,
        layer_heads=[len(kept) for kept in heads],
        layer_intermediate_sizes=[len(kept) for kept in neurons],
        layer_ranks=config.layer_ranks if isinstance(config, CompactConfig) else [],
        layer_head_indices=[[before[i][h] for h in kept] for i, kept in enumerate(heads)],
        attn_implementation=model.config._attn_implementation,
    )
    cls = CompactModel if model.base_model is model else CompactForSequenceClassification
    return _rebuild(cls, target, state, model)


def factorize(model: PreTrainedModel, ranks: Sequence[dict[str, int]]) -> CompactPreTrainedModel:
    """A compact copy of `model` in which, per layer, each linear named in `ranks[i]` (its
    dotted name inside the layer) is the truncated SVD of its weight at that rank.

    >>> low = factorize(bert, [{"intermediate.dense": 16, "output.dense": 16}] + [{}] * 3)
    """
    if not isinstance(model, CompactPreTrainedModel):
        model = compact_from(model)
    config, layout = _source(model)
    layers = _layers(model, layout)
    if len(ranks) != len(layers):
        raise CompactConfigError(f"{len(ranks)} rank dicts for {len(layers)} layers: one per layer")
    state = dict(model.state_dict())
    prefix = _name_of(model, layers)
    merged = [dict(done) for done in config.layer_ranks]
    for i, layer in enumerate(layers):
        for path, rank in ranks[i].items():
            linear = layer.get_submodule(path)
            if type(linear) is not nn.Linear:
                raise CompactConfigError(
                    f"layer {i}: '{path}' is a {type(linear).__name__}, not an nn.Linear "
                    f"(already factorised, or a wrong name; e.g. '{layout.ffn_in}')"
                )
            if not 1 <= rank <= min(linear.in_features, linear.out_features):
                raise CompactConfigError(
                    f"layer {i}: rank {rank} for '{path}' must be between 1 and "
                    f"{min(linear.in_features, linear.out_features)}"
                )
            del state[f"{prefix}.{i}.{path}.weight"]
            state.pop(f"{prefix}.{i}.{path}.bias", None)
            low = LowRankLinear.from_linear(linear, rank).state_dict()
            state.update({f"{prefix}.{i}.{path}.{k}": v for k, v in low.items()})
            merged[i][path] = rank
    target = copy.deepcopy(config)
    target.layer_ranks = merged
    return _rebuild(type(model), target, state, model)


def to_stock_if_possible(model: PreTrainedModel) -> PreTrainedModel:
    """The same model as an instance of its base architecture's own class, where it fits:
    every layer keeps all heads, all layers share one FFN width (which becomes the config's
    intermediate_size) and none is factorised. Otherwise `model` itself. Weights are
    identical; use it before saving, so a result that fits the predecessor's class is saved
    as that class.

    >>> to_stock_if_possible(compact_from(bert, neurons=[range(24)] * 4))  # BertFor...
    """
    if not isinstance(model, CompactPreTrainedModel):
        return model
    config, layout = _source(model)
    base = config.base_config(attn_implementation=config._attn_implementation)
    widths = set(config.layer_intermediate_sizes)
    all_heads = all(heads == base.num_attention_heads for heads in config.layer_heads)
    if not all_heads or len(widths) != 1 or any(config.layer_ranks):
        return model
    setattr(base, layout.ffn_width, widths.pop())
    stock = type(model)._mapping[type(base)](base)
    stock.to(device=model.device, dtype=model.dtype)
    stock.load_state_dict(model.state_dict())  # the same keys: compact models keep the base's
    return stock.train(model.training)


def _source(model: PreTrainedModel) -> tuple[PretrainedConfig, Layout]:
    config = model.config
    model_type = config.base_model_type if isinstance(config, CompactConfig) else config.model_type
    layout = layout_for(model_type)
    if not isinstance(model, CompactPreTrainedModel) and model.base_model is not model:
        classifier = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING.get(type(config), None)
        if type(model) is not classifier:
            raise ValueError(
                f"{type(model).__name__} is neither a sequence classifier nor a bare encoder: "
                "compact models come in those two kinds"
            )
    return config, layout


def _layers(model: PreTrainedModel, layout: Layout) -> nn.ModuleList:
    return model.base_model.get_submodule(layout.layers)


def _name_of(model: nn.Module, target: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is target)


def _indices(what: str, given: Indices | None, sizes: list[int]) -> list[list[int]]:
    """Per-layer kept indices, ascending, checked against each layer's size."""
    if given is None:
        return [list(range(n)) for n in sizes]
    if len(given) != len(sizes):
        raise CompactConfigError(f"{what} lists {len(given)} layers; the model has {len(sizes)}")
    kept = []
    for i, (indices, size) in enumerate(zip(given, sizes, strict=True)):
        unique = sorted(set(int(x) for x in indices))
        if not unique:
            raise CompactConfigError(
                f"layer {i} keeps no {what}: keep at least 1 (to drop a layer, use fewer layers)"
            )
        if len(unique) != len(indices) or unique[0] < 0 or unique[-1] >= size:
            raise CompactConfigError(
                f"layer {i}: {what} {list(indices)} must be distinct indices in [0, {size})"
            )
        kept.append(unique)
    return kept


def _rebuild(cls: type, config: CompactConfig, state: dict, like: PreTrainedModel):
    compact = cls(config)
    compact.to(device=like.device, dtype=like.dtype)
    compact.load_state_dict(state)
    return compact.train(like.training)
