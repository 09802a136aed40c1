"""Network rewiring (DynaBERT, Alg. 1): score heads and FFN neurons, then put the best first.

Head importance is |dL/dm| for a gate m on each head, accumulated over the data (the
paper's single |sum| at the end). A gate on a head's attention probabilities scales its
context vector by the same factor, so the gate sits on the attention-output projection's
input, which every architecture and attention implementation (eager, sdpa) has. Neuron
importance is the first-order Taylor term of removing the neuron: |sum W1 * dW1 + b1 * db1| +
|sum W2 * dW2| over its FFN-in row and FFN-out column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import torch
from torch import nn
from transformers import PreTrainedModel

from ...arch import model_type_of
from ...compact import compact_from, layout_for, to_stock_if_possible


class _HeadGate:
    """Forward pre-hook on the attention-output linear: multiply head h's slice by gate[h]."""

    def __init__(self, gate: torch.Tensor, head_size: int):
        self.gate, self.head_size = gate, head_size

    def __call__(self, module: nn.Module, args: tuple):
        (x,) = args
        shape = x.shape
        heads = x.view(*shape[:-1], -1, self.head_size) * self.gate[:, None].to(x.dtype)
        return (heads.view(shape),)


def importance(
    model: PreTrainedModel, batches: Iterable[dict[str, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(heads, neurons) importance: tensors [layers, heads] and [layers, FFN neurons]; for a
    compact model whose layers differ in size, lists of one tensor per layer.

    `batches` carry labels (the task loss is what a head's removal would change); the model is
    run in eval mode and left unchanged, with no gradient kept.

    >>> heads, neurons = importance(predecessor, dev_loader)
    """
    config = model.config
    layout = layout_for(model_type_of(config))
    layers = model.base_model.get_submodule(layout.layers)
    head_size = config.hidden_size // config.num_attention_heads
    device = next(model.parameters()).device
    counts = getattr(config, "layer_heads", None) or [config.num_attention_heads] * len(layers)
    gates = [torch.ones(count, device=device, requires_grad=True) for count in counts]
    ffn = [(layer.get_submodule(layout.ffn_in), layer.get_submodule(layout.ffn_out))
           for layer in layers]  # fmt: skip
    tracked = [p for pair in ffn for linear in pair for p in linear.parameters()]
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    hooks = [
        layer.get_submodule(layout.attention_output).register_forward_pre_hook(
            _HeadGate(gates[i], head_size)
        )
        for i, layer in enumerate(layers)
    ]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
            p.grad = None
        for p in tracked:
            p.requires_grad_(True)
        model.eval()
        seen = 0
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            model(**batch).loss.backward()  # gradients add up over the whole set
            seen += 1
        if not seen:
            raise ValueError("importance needs at least one batch of labelled examples")
        heads = _stacked([gate.grad.abs().detach().cpu() for gate in gates])
        neurons = _stacked([_neuron_importance(inner, outer).cpu() for inner, outer in ffn])
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None
        model.train(was_training)
    return heads, neurons


def _stacked(rows: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """One tensor where every layer has as many entries, else the per-layer list."""
    return torch.stack(rows) if len({len(row) for row in rows}) == 1 else rows


def _neuron_importance(inner: nn.Linear, outer: nn.Linear) -> torch.Tensor:
    into = (inner.weight * inner.weight.grad).sum(dim=1)
    if inner.bias is not None:
        into = into + inner.bias * inner.bias.grad
    out = (outer.weight * outer.weight.grad).sum(dim=0)
    return (into.abs() + out.abs()).detach().float()


def importance_order(scores: torch.Tensor) -> list[list[int]]:
    """Per layer, indices from most to least important (ties keep their order)."""
    return [torch.sort(row, descending=True, stable=True).indices.tolist() for row in scores]


def rewire(model: PreTrainedModel, heads: torch.Tensor, neurons: torch.Tensor) -> PreTrainedModel:
    """A copy of `model` whose heads and FFN neurons are sorted by importance in every layer,
    most important first. It computes the same function; it is the predecessor's own class,
    except where layers share a per-head table (MPNet), where re-ordered heads need a compact
    model that records each layer's order.

    >>> rewired = rewire(predecessor, *importance(predecessor, dev_loader))
    """
    rewired = compact_from(model, heads=importance_order(heads), neurons=importance_order(neurons))
    return to_stock_if_possible(rewired)


def rewiring_digest(heads: torch.Tensor, neurons: torch.Tensor) -> str:
    """A short fingerprint of the order rewiring gives. A resume scores and rewires again
    and must land on the same order: for MPNet the order lives in the config, not in the
    weights a checkpoint restores, so a different one (another --eval-batch-size, say)
    must be refused, not paired with the saved weights."""
    text = json.dumps([importance_order(heads), importance_order(neurons)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
