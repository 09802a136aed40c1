"""Magnitude pruning of the encoder's weight matrices (or their SVD factors), per tensor.

The paper ranks a factor's entries by |w|. `scales` rank them by |w| times the scale of the
input feature each multiplies instead (Wanda, Sun et al. 2023), which is what an entry adds
to the output: a small weight on a large input can matter more than a large weight on an
input that is nearly always zero.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from ...arch import model_type_of
from ...compact import LowRankLinear, layout_for


def prunable_modules(model: PreTrainedModel) -> dict[str, nn.Linear]:
    """The linears whose weights LadaBERT prunes, by weight name: in every layer, the six
    weight matrices' linears, or both factors (A and B) of those that are factorised."""
    layout = layout_for(model_type_of(model.config))
    names = {id(p): name for name, p in model.named_parameters()}
    modules = {}
    for layer in model.base_model.get_submodule(layout.layers):
        for path in layout.linears():
            linear = layer.get_submodule(path)
            parts = (linear.down, linear.up) if isinstance(linear, LowRankLinear) else (linear,)
            for part in parts:
                modules[names[id(part.weight)]] = part
    return modules


def prunable(model: PreTrainedModel) -> dict[str, nn.Parameter]:
    """The weights LadaBERT prunes, by name (`prunable_modules`). Biases and LayerNorms stay
    whole."""
    return {name: module.weight for name, module in prunable_modules(model).items()}


def magnitude_mask(
    weight: torch.Tensor, keep: float, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """A boolean mask keeping exactly round(keep * numel) entries: those of largest |w|, or of
    largest |w| * scale[column] where each input feature's `scale` is given. Entries already
    zero come last either way, so what was pruned stays pruned.

    >>> magnitude_mask(torch.tensor([[0.1, -3.0], [2.0, 0.5]]), keep=0.5)
    tensor([[False,  True], [ True, False]])
    """
    score = weight.detach().abs().float()
    if scale is not None:
        score = torch.where(score > 0, score * scale.to(score.device)[None, :], -1.0)
    flat = score.flatten()
    kept = round(keep * flat.numel())
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=weight.device)
    mask[torch.topk(flat, kept, sorted=False).indices] = True
    return mask.view_as(weight)


class Masks:
    """One magnitude mask per prunable weight, all at the same kept fraction.

    Built from the weights as they are (entries pruned before have |w| = 0, so they stay
    pruned), ranked by |w| or, with `scales` (weight name -> its input features' scale), by
    |w| * scale; `apply` zeroes the pruned entries in place, after every optimizer step.

    >>> masks = Masks(student, keep=0.6)
    >>> masks.apply()  # 40% of each factor is exactly zero
    """

    def __init__(
        self, model: PreTrainedModel, keep: float, scales: dict[str, torch.Tensor] | None = None
    ):
        self.keep = keep
        self.weights = prunable(model)
        self.masks = {
            name: magnitude_mask(w, keep, scales[name] if scales else None)
            for name, w in self.weights.items()
        }

    @torch.no_grad()
    def apply(self) -> None:
        for name, weight in self.weights.items():
            mask = self.masks[name]
            if mask.device != weight.device:  # the loop places the model after we are built
                mask = self.masks[name] = mask.to(weight.device)
            weight.mul_(mask)
