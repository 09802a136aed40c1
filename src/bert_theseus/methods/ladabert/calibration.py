"""What the inputs of each encoder matrix look like: the second moments an activation-aware
SVD needs (`LadaBERTConfig.svd = "activation"`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import PreTrainedModel

from ...arch import model_type_of
from ...compact import layout_for
from ..registry import MethodError


@torch.no_grad()
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
    layout = layout_for(model_type_of(model.config))
    layers = model.base_model.get_submodule(layout.layers)
    sums = [{path: None for path in wanted} for wanted in paths]
    real: list[torch.Tensor] = []  # the current batch's token mask, read by the hooks

    def hook(i: int, path: str):
        def record(module, args):
            if args[0].shape[:2] != real[0].shape:
                raise MethodError(
                    f"layer {i} '{path}' sees inputs of shape {tuple(args[0].shape)}, not (batch, "
                    "length, features): --svd activation cannot calibrate it; use --svd weight"
                )
            x = args[0][real[0]].double()  # (tokens, in_features)
            gram = x.T @ x
            sums[i][path] = gram if sums[i][path] is None else sums[i][path] + gram

        return record

    handles = [
        layers[i].get_submodule(path).register_forward_pre_hook(hook(i, path))
        for i, wanted in enumerate(paths)
        for path in wanted
    ]
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    tokens, seen = 0, 0
    try:
        for batch in batches:
            if seen >= examples:
                break
            inputs = {k: v[: examples - seen].to(device) for k, v in batch.items() if k != "labels"}
            mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
            real[:] = [mask.bool()]
            model(**inputs)
            tokens += int(mask.sum())
            seen += len(inputs["input_ids"])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if tokens == 0:
        raise MethodError("no calibration tokens: --svd activation needs training examples "
                          "with text (or use --svd weight)")  # fmt: skip
    return [{path: gram / tokens for path, gram in layer.items()} for layer in sums]
