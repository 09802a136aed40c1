"""Theseus + KD's training: module replacing whose task loss mixes in the soft targets."""

import torch
from torch import nn

from ...teacher import Distiller
from ..theseus.method import TheseusMethod
from .config import TheseusKDConfig


class TheseusKDMethod(TheseusMethod):
    """Module replacing whose task loss is mixed with the predecessor's soft targets.

    The teacher is the frozen predecessor; when every module draws its predecessor the
    compound model is the teacher, and the soft-target term is zero.
    """

    name = "theseus-kd"

    def __init__(self, config: TheseusKDConfig, distiller: Distiller, seed: int = 42):
        super().__init__(config, seed)
        self.distiller = distiller

    def prepare(self, model, total_steps: int) -> None:
        super().prepare(model, total_steps)
        self.distiller.cache_examples(self.training_examples)

    def task_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.distiller.loss(model, batch, self.batch_examples)

    def summary(self, model) -> dict:
        return {**super().summary(model), **self.distiller.summary()}

    def generator_states(self) -> dict[str, torch.Tensor]:
        cache = self.distiller.cache
        return {**super().generator_states(), **(cache.state() if cache is not None else {})}

    def set_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        super().set_generator_states(states)
        if self.distiller.cache is not None and "teacher_cache.filled" in states:
            self.distiller.cache.load(states)
