"""Width- and depth-adaptive forward: run a sub-network on sliced weights, not masks.

A sub-network at width m_w keeps, in every layer, the first round(m_w * heads) attention
heads and the first int(heads' / heads * d_ff) FFN neurons (after rewiring, the most
important ones); at depth m_d it keeps round(m_d * L) layers, one dropped from each group of
1 / (1 - m_d): the group's last (the paper) or its first (`kept_layers`). Its linears use
the top-left block of the shared weights, so a step at width 0.25 costs what a quarter-width
model costs, and a backward pass reaches only the kept weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ...arch import model_type_of
from ...compact import compact_from, in_source_order, layout_for, to_stock_if_possible
from ..registry import MethodConfigError
from .sizes import kept_heads, kept_layers, kept_neurons


def teacher_match(depth: float, layers: int, dropped: str = "last") -> list[int]:
    """For each of a sub-network's hidden states (embeddings, then each kept layer's output),
    the teacher's hidden-state index (0: embeddings, L: the last output) it learns.

    Either way each state is matched at the end of its group, and the last output to the
    teacher's last. The paper's rule keeps the first layers of each group, so a kept layer's
    output is matched to the teacher's input to the next kept layer (kept + [L]); the
    first-dropped rule keeps the last, so it is matched to the same layer's output.
    """
    kept = kept_layers(depth, layers, dropped)
    return kept + [layers] if dropped == "last" else [0] + [k + 1 for k in kept]


def cell_name(width: float, depth: float) -> str:
    return f"w{width:g}-d{depth:g}"


class SlicedLinear(nn.Linear):
    """An nn.Linear that uses only its first `rows` outputs and first `columns` inputs.

    A module's class is switched to this in place, so parameters, names and the state dict
    stay the stock model's; `rows = columns = None` is the plain linear.
    """

    rows: int | None = None
    columns: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if self.rows is not None:
            weight = weight[: self.rows]
            bias = bias[: self.rows] if bias is not None else None
        if self.columns is not None:
            weight = weight[:, : self.columns]
        return F.linear(x, weight, bias)


class _FirstHeads:
    """Forward pre-hook: keep the first `count` heads of a per-head input that all layers
    share (MPNet's position bias); runs after a compact model's own head-picking hook."""

    def __init__(self, name: str, position: int):
        self.name, self.position, self.count = name, position, None

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict):
        if self.count is None:
            return None
        if len(args) > self.position and args[self.position] is not None:
            args = list(args)
            args[self.position] = args[self.position][:, : self.count]
            return tuple(args), kwargs
        if kwargs.get(self.name) is not None:
            kwargs[self.name] = kwargs[self.name][:, : self.count]
        return args, kwargs


class AdaptiveModel:
    """Makes `model` (a stock or compact classifier with layers of one size) run any
    sub-network; the model's parameters and state dict are unchanged.

    >>> adaptive = AdaptiveModel(model)
    >>> with adaptive.sub_network(width=0.25, depth=0.5):
    ...     logits = model(**batch).logits
    >>> adaptive.remove()  # plain nn.Linear again, e.g. before saving
    """

    def __init__(self, model: PreTrainedModel, dropped: str = "last"):
        config = model.config
        self.model, self.layout = model, layout_for(model_type_of(config))
        self.dropped = dropped
        self.encoder_path, _, self.list_name = self.layout.layers.rpartition(".")
        self.layers = model.base_model.get_submodule(self.layout.layers)
        self.heads = config.num_attention_heads
        self.neurons = self.layers[0].get_submodule(self.layout.ffn_in).out_features
        self.head_size = config.hidden_size // self.heads
        self.hooks, self.head_inputs = [], []
        for layer in self.layers:
            for path in self.layout.linears():
                linear = layer.get_submodule(path)
                if type(linear) not in (nn.Linear, SlicedLinear):
                    raise MethodConfigError(
                        f"DynaBERT slices nn.Linear layers; '{path}' is a {type(linear).__name__}"
                    )
                linear.__class__ = SlicedLinear
            if self.layout.shared_head_input is not None:
                hook = _FirstHeads(*self.layout.shared_head_input)
                attention = layer.get_submodule(self.layout.attention)
                self.hooks.append(attention.register_forward_pre_hook(hook, with_kwargs=True))
                self.head_inputs.append(hook)

    def sizes(self, width: float) -> tuple[int, int]:
        """(heads, FFN neurons) every layer keeps at `width`."""
        return kept_heads(width, self.heads), kept_neurons(width, self.heads, self.neurons)

    @contextmanager
    def sub_network(self, width: float = 1.0, depth: float = 1.0) -> Iterator[None]:
        """Run the model as the sub-network (width, depth) inside the block."""
        self._set_width(width)
        encoder = self.model.base_model.get_submodule(self.encoder_path)
        kept = kept_layers(depth, len(self.layers), self.dropped)
        setattr(encoder, self.list_name, nn.ModuleList([self.layers[i] for i in kept]))
        try:
            yield
        finally:
            setattr(encoder, self.list_name, self.layers)
            self._set_width(1.0)

    def _set_width(self, width: float) -> None:
        heads, neurons = self.sizes(width)
        full = width == 1.0
        layout = self.layout
        for i, layer in enumerate(self.layers):
            for path in layout.head_linears():
                layer.get_submodule(path).rows = None if full else heads * self.head_size
            layer.get_submodule(layout.attention_output).columns = (
                None if full else heads * self.head_size
            )
            layer.get_submodule(layout.ffn_in).rows = None if full else neurons
            layer.get_submodule(layout.ffn_out).columns = None if full else neurons
            attention = layer.get_submodule(layout.attention)
            for name in layout.head_count:
                setattr(attention, name, heads)
            for name in layout.head_width:
                setattr(attention, name, heads * self.head_size)
            if self.head_inputs:
                self.head_inputs[i].count = None if full else heads

    def remove(self) -> PreTrainedModel:
        """Plain linears again and no hooks; returns the model."""
        for hook in self.hooks:
            hook.remove()
        for layer in self.layers:
            for module in layer.modules():
                if type(module) is SlicedLinear:
                    module.__class__ = nn.Linear
        return self.model


def extract(
    model: PreTrainedModel, width: float, depth: float, dropped: str | None = None
) -> PreTrainedModel:
    """A standalone model of the sub-network (width, depth) of `model` (a trained DynaBERT
    model, stock or compact): only its kept heads, neurons and layers, as the predecessor's
    own class where the cut fits it (full width), else a compact model. Its logits equal the
    sub-network's. Its heads are in the predecessor's order, not the rewired one: a model of
    one size has no use for the importance order, and in MPNet each layer out of order
    gathers its own copy of the shared position bias (`compact.in_source_order`). The
    depth rule is `dropped`, else the one the model was trained with (its config's
    `dynabert` entry; the paper's where there is none).

    >>> small = extract(model, width=0.25, depth=0.5)
    >>> small.save_pretrained("runs/dynabert-w0.25-d0.5")
    """
    config = model.config
    heads, layers = config.num_attention_heads, config.num_hidden_layers
    dropped = dropped or trained_rule(model)
    layout = layout_for(model_type_of(config))
    neurons = model.base_model.get_submodule(layout.layers)[0].get_submodule(layout.ffn_in)
    h, n = kept_heads(width, heads), kept_neurons(width, heads, neurons.out_features)
    small = compact_from(
        model,
        heads=in_source_order(model, [range(h)] * layers),
        neurons=[range(n)] * layers,
        layers=kept_layers(depth, layers, dropped),
    )
    return to_stock_if_possible(small)


def trained_rule(model: PreTrainedModel) -> str:
    """The depth rule a saved DynaBERT model was trained with; models saved before the rule
    was recorded used the paper's."""
    return (getattr(model.config, "dynabert", None) or {}).get("dropped_layer", "last")
