"""Distillation from the frozen predecessor as a method of the shared training loop."""

from __future__ import annotations

import torch
from torch import nn

from ...teacher import Distiller, DistillerHooks
from ...training.loop import Method
from ..registry import identity


class KDMethod(DistillerHooks, Method):
    """Vanilla KD (Hinton et al.), or BERT-PKD when given a layer map: every student
    parameter trains.

    >>> method = KDMethod(Distiller(predecessor, KDConfig(successor_layers=3), False))
    >>> train(truncate(predecessor, 3), method, ...)
    """

    def __init__(self, distiller: Distiller, name: str = "kd"):
        self.distiller = distiller
        self.name = name

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.distiller.loss(model, batch, self.batch_examples)

    def settings(self) -> dict:
        # Lists, not tuples: these are compared with the copy read back from a checkpoint.
        layer_map = [list(pair) for pair in self.distiller.layer_map]
        return {**identity(self.distiller.config), "layer_map": layer_map}
