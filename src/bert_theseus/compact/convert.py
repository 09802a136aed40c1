"""Moving weights between stock models and compact ones: slice, factorise, and back."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from transformers import (
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    PretrainedConfig,
    PreTrainedModel,
)

from ..arch import model_type_of
from .config import CompactConfig, CompactConfigError
from .layer import LowRankEmbedding, LowRankLinear, take_columns, take_rows
from .layout import Layout, layout_for
from .model import CompactForSequenceClassification, CompactModel, CompactPreTrainedModel

Indices = Sequence[Sequence[int]]


def compact_from(
    model: PreTrainedModel,
    heads: Indices | None = None,
    neurons: Indices | None = None,
    layers: Sequence[int] | None = None,
) -> CompactForSequenceClassification:
    """A compact copy of `model` that keeps, in layer i, the attention heads `heads[i]` and
    the FFN neurons `neurons[i]` (indices into the layer as it is now), in the order given:
    a permutation keeps the layer's function and only re-orders it (DynaBERT's rewiring).
    None keeps a whole dimension. Q, K and V lose the rows of dropped heads and the attention
    output their columns; the FFN input loses the rows of dropped neurons and the FFN output
    their columns. `layers` keeps only those layers (ascending indices; `heads` and `neurons`
    still list every layer). Embeddings, head and everything else are copied. `model` may be
    a stock classifier (or bare encoder, giving a CompactModel) of a supported architecture,
    or a compact model, which is then sliced further.

    >>> small = compact_from(bert, heads=[[0, 3], [1], [0, 1, 2], [2]],
    ...                      neurons=[range(48), range(10), range(30), range(7)])
    >>> small.config.layer_heads
    [2, 1, 3, 1]
    """
    config, layout = _source(model)
    layer_list = _layers(model, layout)
    current_heads = [
        getattr(layer.get_submodule(layout.attention), layout.head_count[0]) for layer in layer_list
    ]
    widths = [layer.get_submodule(layout.ffn_in).out_features for layer in layer_list]
    heads = _indices("heads", heads, current_heads)
    neurons = _indices("neurons", neurons, widths)
    base = config.base_config() if isinstance(config, CompactConfig) else config
    head_size = base.hidden_size // base.num_attention_heads
    before = config.layer_head_indices if isinstance(config, CompactConfig) else None
    before = before or [list(range(n)) for n in current_heads]

    kept_layers = _kept_layers(layers, len(layer_list))
    state = dict(model.state_dict())
    prefix = _name_of(model, layer_list)
    for i, layer in enumerate(layer_list):
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

    ranks = config.layer_ranks if isinstance(config, CompactConfig) else [{} for _ in heads]
    state = _renumber(state, prefix, kept_layers)
    target = CompactConfig.from_base(
        base,
        layer_heads=[len(heads[i]) for i in kept_layers],
        layer_intermediate_sizes=[len(neurons[i]) for i in kept_layers],
        layer_ranks=[ranks[i] for i in kept_layers],
        layer_head_indices=[[before[i][h] for h in heads[i]] for i in kept_layers],
        embedding_rank=getattr(config, "embedding_rank", None),
        attn_implementation=model.config._attn_implementation,
    )
    cls = CompactModel if model.base_model is model else CompactForSequenceClassification
    return _rebuild(cls, target, state, model)


def in_source_order(model: PreTrainedModel, heads: Sequence[Sequence[int]]) -> list[list[int]]:
    """Each layer's `heads` (positions in `model`) re-ordered as the source model held them.

    The order of a fixed cut's heads changes nothing it computes, but where layers share a
    per-head table (MPNet's relative position bias) it changes what it costs: a layer whose
    heads are out of the table's order gathers its own copy of the table at every forward
    (`PickHeads`), and one that keeps them all in order is the stock class with no gather.
    Rewiring keeps its importance order (narrow cells take the first heads); a cut to one
    shape has no use for it.

    >>> in_source_order(rewired, [[0, 1, 2, 3]] * 4)  # rewired heads 2, 0, 3, 1 -> 1, 3, 0, 2
    """
    config = model.config
    before = config.layer_head_indices if isinstance(config, CompactConfig) else None
    if not before:
        return [sorted(kept) for kept in heads]
    return [sorted(kept, key=lambda h, i=i: before[i][h]) for i, kept in enumerate(heads)]


def factorize(
    model: PreTrainedModel,
    ranks: Sequence[dict[str, int]],
    embedding_rank: int | None = None,
    moments: Sequence[dict[str, torch.Tensor]] | None = None,
) -> CompactPreTrainedModel:
    """A compact copy of `model` in which, per layer, each linear named in `ranks[i]` (its
    dotted name inside the layer) is the truncated SVD of its weight at that rank, and, with
    `embedding_rank`, the word-embedding table is too. With `moments[i][name]`, the second
    moment of that linear's inputs, its factors are the best for those inputs
    (`svd_factors`).

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
            given = moments[i].get(path) if moments is not None else None
            low = LowRankLinear.from_linear(linear, rank, given).state_dict()
            state.update({f"{prefix}.{i}.{path}.{k}": v for k, v in low.items()})
            merged[i][path] = rank
    target = copy.deepcopy(config)
    target.layer_ranks = merged
    if embedding_rank is not None:
        _factorize_embeddings(model, layout, state, embedding_rank)
        target.embedding_rank = embedding_rank
    return _rebuild(type(model), target, state, model)


def _factorize_embeddings(model, layout: Layout, state: dict, rank: int) -> None:
    table = model.base_model.get_submodule(layout.word_embeddings)
    if type(table) is not nn.Embedding:
        raise CompactConfigError("the word embeddings are factorised already")
    if not 1 <= rank <= min(table.num_embeddings, table.embedding_dim):
        raise CompactConfigError(
            f"embedding rank {rank} must be between 1 and "
            f"{min(table.num_embeddings, table.embedding_dim)}"
        )
    prefix = _name_of(model, table)
    del state[f"{prefix}.weight"]
    low = LowRankEmbedding.from_embedding(table, rank).state_dict()
    state.update({f"{prefix}.{k}": v for k, v in low.items()})


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
    # Where layers share a per-head table (MPNet), a layer with re-ordered heads must pick
    # its own order from it, which the stock class cannot.
    in_order = layout.shared_head_input is None or all(
        list(kept) == list(range(base.num_attention_heads))
        for kept in config.layer_head_indices or []
    )
    factors = any(config.layer_ranks) or config.embedding_rank is not None
    if not all_heads or not in_order or len(widths) != 1 or factors:
        return model
    setattr(base, layout.ffn_width, widths.pop())
    stock = type(model)._mapping[type(base)](base)
    stock.to(device=model.device, dtype=model.dtype)
    stock.load_state_dict(model.state_dict())  # the same keys: compact models keep the base's
    return stock.train(model.training)


def _source(model: PreTrainedModel) -> tuple[PretrainedConfig, Layout]:
    config = model.config
    layout = layout_for(model_type_of(config))
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
    """Per-layer kept indices, in the order given, checked against each layer's size."""
    if given is None:
        return [list(range(n)) for n in sizes]
    if len(given) != len(sizes):
        raise CompactConfigError(f"{what} lists {len(given)} layers; the model has {len(sizes)}")
    kept = []
    for i, (indices, size) in enumerate(zip(given, sizes, strict=True)):
        chosen = [int(x) for x in indices]
        if not chosen:
            raise CompactConfigError(
                f"layer {i} keeps no {what}: keep at least 1 (to drop a layer, use fewer layers)"
            )
        if len(set(chosen)) != len(chosen) or min(chosen) < 0 or max(chosen) >= size:
            raise CompactConfigError(
                f"layer {i}: {what} {list(indices)} must be distinct indices in [0, {size})"
            )
        kept.append(chosen)
    return kept


def _kept_layers(layers: Sequence[int] | None, depth: int) -> list[int]:
    if layers is None:
        return list(range(depth))
    kept = [int(i) for i in layers]
    if not kept or kept != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= depth:
        raise CompactConfigError(
            f"layers {list(layers)} must be ascending, distinct layer indices in [0, {depth})"
        )
    return kept


def _renumber(state: dict, prefix: str, kept: list[int]) -> dict:
    """`state` with only the kept layers' entries, numbered 0, 1, ... in their order."""
    new_index = {old: new for new, old in enumerate(kept)}
    renamed = {}
    for key, value in state.items():
        if not key.startswith(prefix + "."):
            renamed[key] = value
            continue
        index, _, rest = key[len(prefix) + 1 :].partition(".")
        if int(index) in new_index:
            renamed[f"{prefix}.{new_index[int(index)]}.{rest}"] = value
    return renamed


def _rebuild(cls: type, config: CompactConfig, state: dict, like: PreTrainedModel):
    compact = cls(config)
    compact.to(device=like.device, dtype=like.dtype)
    compact.load_state_dict(state)
    return compact.train(like.training)
