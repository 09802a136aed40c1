"""Compact models: a base architecture's own model with per-layer sizes from a CompactConfig."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from transformers import (
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    MODEL_MAPPING,
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)

from .config import MODEL_TYPE, CompactConfig, CompactConfigError
from .layer import LowRankEmbedding, LowRankLinear, sized_like
from .layout import Layout, layout_for


class CompactPreTrainedModel(PreTrainedModel):
    """Builds the base architecture's model class and resizes its layers to the config.

    The base model is built whole, so its embeddings, position handling (MPNet's relative
    attention bias, RoBERTa's position offsets), encoder forward and head run unchanged. Its
    children are registered here under their own names (`bert`, `classifier`, ...), so state
    dict keys are exactly the base class's: a compact model that fits the base class loads
    into it as it is (see `to_stock_if_possible`).
    """

    config_class = CompactConfig
    base_model_prefix = ""  # set per instance to the base class's ("bert", "mpnet", ...)
    supports_gradient_checkpointing = True
    # The base model checks the requested attention itself; these only let the request through.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # Base config class -> the transformers model class to build.
    _mapping: ClassVar = MODEL_MAPPING

    def __init__(self, config: CompactConfig):
        requested = config._attn_implementation  # None unless the caller asked for one
        super().__init__(config)
        layout = layout_for(config.base_model_type)
        base_config = config.base_config(attn_implementation=requested)
        inner = self._mapping[type(base_config)](base_config)
        resize_layers(inner.base_model, config, layout)
        # Not a registered submodule (that would prefix every key): its children are.
        object.__setattr__(self, "inner", inner)
        for name, child in inner.named_children():
            self.add_module(name, child)
        self.base_model_prefix = inner.base_model_prefix
        # The base's forward, bound to it: code that reads the signature (ONNX export, pipelines,
        # the Trainer's column filter) sees the base's inputs exactly (MPNet and DistilBERT take
        # no token_type_ids), which a forward of our own would hide.
        self.forward = inner.forward
        config._attn_implementation_internal = base_config._attn_implementation
        self.post_init()
        object.__setattr__(self, "_delegate", inner)

    def __getattr__(self, name: str):
        # Wrappers that re-bind the forward to this object (Accelerate's mixed-precision
        # autocast takes `forward.__func__`) run the base's code with `self` being us: its
        # own attributes (num_labels, ...) must then be found here too.
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_delegate")  # set once __init__ has built us
            if inner is None:
                raise
            return getattr(inner, name)

    def _init_weights(self, module: nn.Module) -> None:
        self.inner._init_weights(module)

    def train(self, mode: bool = True) -> CompactPreTrainedModel:
        # Its children follow through us; its own flag, which its forward may read, does not.
        super().train(mode)
        self.inner.training = mode
        return self

    def forward(self, *args, **kwargs):
        """The base class's own forward; it returns what the base returns (logits, and the
        loss when labels are given). Each instance binds it in __init__ (see there)."""
        return self.inner(*args, **kwargs)


class CompactModel(CompactPreTrainedModel):
    """The base architecture's bare encoder (AutoModel) with per-layer sizes.

    >>> AutoModel.from_pretrained("runs/compact")  # after `import bert_theseus.compact`
    """


class CompactForSequenceClassification(CompactPreTrainedModel):
    """The base architecture's sequence classifier with per-layer sizes.

    >>> import bert_theseus.compact  # registers the family with the Auto classes
    >>> model = AutoModelForSequenceClassification.from_pretrained("runs/compact")
    >>> model(**tokenizer(["a fine film"], return_tensors="pt")).logits
    """

    _mapping: ClassVar = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING


def resize_layers(base_model: nn.Module, config: CompactConfig, layout: Layout) -> None:
    """Give each layer of `base_model` the head count, FFN width and low-rank factors of
    `config` (fresh weights: loading or `compact_from` fills them)."""
    base = config.base_config()
    hidden, full_heads = base.hidden_size, base.num_attention_heads
    head_size = hidden // full_heads
    layers = base_model.get_submodule(layout.layers)
    for i, layer in enumerate(layers):
        heads, ffn = config.layer_heads[i], config.layer_intermediate_sizes[i]
        width = heads * head_size
        sizes = {path: (hidden, width) for path in layout.head_linears()}
        sizes[layout.attention_output] = (width, hidden)
        sizes[layout.ffn_in] = (hidden, ffn)
        sizes[layout.ffn_out] = (ffn, hidden)
        for path, (fan_in, fan_out) in sizes.items():
            old = layer.get_submodule(path)
            if (old.in_features, old.out_features) != (fan_in, fan_out):
                _replace(layer, path, sized_like(old, fan_in, fan_out))
        attention = layer.get_submodule(layout.attention)
        for name in layout.head_count:
            setattr(attention, name, heads)
        for name in layout.head_width:
            setattr(attention, name, width)
        kept = (config.layer_head_indices or [list(range(heads))] * len(layers))[i]
        if layout.shared_head_input is not None and kept != list(range(full_heads)):
            name, position = layout.shared_head_input
            attention.register_forward_pre_hook(PickHeads(kept, name, position), with_kwargs=True)
        for path, rank in config.layer_ranks[i].items():
            old = layer.get_submodule(path)
            if type(old) is not nn.Linear:
                raise CompactConfigError(
                    f"layer {i}: layer_ranks names '{path}', a {type(old).__name__}; name an "
                    f"nn.Linear inside the layer (e.g. '{layout.ffn_in}')"
                )
            low = LowRankLinear(old.in_features, old.out_features, rank, old.bias is not None)
            _replace(layer, path, low.to(device=old.weight.device, dtype=old.weight.dtype))
    if config.embedding_rank is not None:
        old = base_model.get_submodule(layout.word_embeddings)
        low = LowRankEmbedding(old.num_embeddings, old.embedding_dim, config.embedding_rank,
                               old.padding_idx)  # fmt: skip
        _replace(base_model, layout.word_embeddings, low.to(device=old.weight.device))


class PickHeads:
    """Forward pre-hook: keep the layer's heads (dim 1) of a per-head input that all layers
    share, such as MPNet's relative position bias, computed once for the base's full heads."""

    def __init__(self, heads: list[int], name: str, position: int):
        self.heads, self.name, self.position = list(heads), name, position

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        if len(args) > self.position:
            args = list(args)
            args[self.position] = _pick(args[self.position], self.heads)
            args = tuple(args)
        elif kwargs.get(self.name) is not None:
            kwargs[self.name] = _pick(kwargs[self.name], self.heads)
        return args, kwargs


def _pick(tensor: torch.Tensor | None, heads: list[int]) -> torch.Tensor | None:
    return None if tensor is None else tensor[:, heads]


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def register() -> None:
    """Let the Auto classes build compact models from their config.json, no remote code.

    Runs when `bert_theseus.compact` is imported; calling it again is harmless.
    """
    AutoConfig.register(MODEL_TYPE, CompactConfig, exist_ok=True)
    AutoModel.register(CompactConfig, CompactModel, exist_ok=True)
    AutoModelForSequenceClassification.register(
        CompactConfig, CompactForSequenceClassification, exist_ok=True
    )
