"""Magnitude pruning of the encoder's weight matrices (or their SVD factors), per tensor."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from ...arch import model_type_of
from ...compact import LowRankLinear, layout_for


def prunable(model: PreTrainedModel) -> dict[str, nn.Parameter]:
    """The weights LadaBERT prunes, by name: in every layer, the six weight matrices, or both
    factors (A and B) of those that are factorised. Biases and LayerNorms stay whole."""
    layout = layout_for(model_type_of(model.config))
    names = {id(p): name for name, p in model.named_parameters()}
    weights = {}
    for layer in model.base_model.get_submodule(layout.layers):
        for path in layout.linears():
            linear = layer.get_submodule(path)
            parts = (linear.down, linear.up) if isinstance(linear, LowRankLinear) else (linear,)
            for part in parts:
                weights[names[id(part.weight)]] = part.weight
    return weights


def magnitude_mask(weight: torch.Tensor, keep: float) -> torch.Tensor:
    """A boolean mask keeping exactly round(keep * numel) entries: those of largest |w|.

    >>> magnitude_mask(torch.tensor([[0.1, -3.0], [2.0, 0.5]]), keep=0.5)
    tensor([[False,  True], [ True, False]])
    """
    flat = weight.detach().abs().flatten()
    kept = round(keep * flat.numel())
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=weight.device)
    mask[torch.topk(flat.float(), kept, sorted=False).indices] = True
    return mask.view_as(weight)


class Masks:
    """One magnitude mask per prunable weight, all at the same kept fraction.

    Built from the weights as they are (entries pruned before have |w| = 0, so they stay
    pruned); `apply` zeroes the pruned entries in place, after every optimizer step.

    >>> masks = Masks(student, keep=0.6)
    >>> masks.apply()  # 40% of each factor is exactly zero
    """

    def __init__(self, model: PreTrainedModel, keep: float):
        self.keep = keep
        self.weights = prunable(model)
        self.masks = {name: magnitude_mask(w, keep) for name, w in self.weights.items()}

    @torch.no_grad()
    def apply(self) -> None:
        for name, weight in self.weights.items():
            mask = self.masks[name]
            if mask.device != weight.device:  # the loop places the model after we are built
                mask = self.masks[name] = mask.to(weight.device)
            weight.mul_(mask)
