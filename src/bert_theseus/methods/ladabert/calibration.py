"""What the inputs of each encoder matrix look like, on the first training examples: the
second moments an activation-aware SVD needs (`LadaBERTConfig.svd = "activation"`) and the
per-feature scales an activation-aware pruning needs (`LadaBERTConfig.pruning`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from transformers import PreTrainedModel

from ...arch import model_type_of
from ...compact import layout_for
from ...data.loading import first_inputs
from ..registry import MethodError


def input_moments(
    model: PreTrainedModel,
    batches: Iterable[dict],
    paths: list[dict[str, int]],
    examples: int,
) -> list[dict[str, torch.Tensor]]:
    """Per layer, for each linear named in `paths[i]`: E[x xᵀ] of its inputs x over the real
    (non-padding) tokens of the first `examples` examples of `batches`, the model in eval mode.

    >>> moments = input_moments(predecessor, train_batches(), encoder_ranks(predecessor, 0.5), 256)
    """
    layers = model.base_model.get_submodule(layout_for(model_type_of(model.config)).layers)
    modules = {
        f"layer {i} '{path}'": layers[i].get_submodule(path)
        for i, wanted in enumerate(paths)
        for path in wanted
    }
    means = _over_real_tokens(model, batches, modules, examples, lambda x: x.T @ x, "--svd")
    return [{path: means[f"layer {i} '{path}'"] for path in wanted} for i, wanted in
            enumerate(paths)]  # fmt: skip


def input_scales(
    model: PreTrainedModel, batches: Iterable[dict], modules: dict[str, nn.Module], examples: int
) -> dict[str, torch.Tensor]:
    """For each named module: the root mean square of each input feature, over the real tokens
    of the first `examples` examples of `batches`, the model in eval mode (fp32)."""
    means = _over_real_tokens(
        model, batches, modules, examples, lambda x: x.pow(2).sum(0), "--pruning"
    )
    return {name: mean.sqrt().float() for name, mean in means.items()}


@torch.no_grad()
def _over_real_tokens(
    model: PreTrainedModel,
    batches: Iterable[dict],
    modules: dict[str, nn.Module],
    examples: int,
    statistic: Callable[[torch.Tensor], torch.Tensor],
    flag: str,
) -> dict[str, torch.Tensor]:
    """For each named module, `statistic` of its inputs (tokens, features), in float64,
    summed over the real tokens of the first `examples` examples and divided by their count."""
    sums: dict[str, torch.Tensor | None] = dict.fromkeys(modules)
    real: list[torch.Tensor] = []  # the current batch's token mask, read by the hooks

    def hook(name: str):
        def record(module, args):
            if args[0].shape[:2] != real[0].shape:
                raise MethodError(
                    f"{name} sees inputs of shape {tuple(args[0].shape)}, not (batch, length, "
                    f"features): {flag} activation cannot calibrate it; use {flag} weight"
                )
            value = statistic(args[0][real[0]].double())  # over (tokens, in_features)
            sums[name] = value if sums[name] is None else sums[name] + value

        return record

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in modules.items()]
    was_training = model.training
    model.eval()
    tokens = 0
    try:
        for inputs in first_inputs(batches, examples, next(model.parameters()).device):
            mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
            real[:] = [mask.bool()]
            model(**inputs)
            tokens += int(mask.sum())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if tokens == 0:
        raise MethodError(f"no calibration tokens: {flag} activation needs training examples "
                          f"with text (or use {flag} weight)")  # fmt: skip
    return {name: total / tokens for name, total in sums.items()}
