"""Theseus + KD's training: module replacing whose task loss mixes in the soft targets."""

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ...teacher import Distiller, DistillerHooks
from ..theseus.method import TheseusMethod
from .config import TheseusKDConfig


class TheseusKDMethod(DistillerHooks, TheseusMethod):
    """Module replacing whose task loss is mixed with the predecessor's soft targets.

    The teacher is the frozen predecessor; when every module draws its predecessor the
    compound model is the teacher, and the soft-target term is zero.
    """

    name = "theseus-kd"

    def __init__(
        self,
        config: TheseusKDConfig,
        distiller: Distiller,
        seed: int = 42,
        train_batches: Callable[[], Iterable[dict]] | None = None,
    ):
        super().__init__(config, seed, train_batches)
        self.distiller = distiller

    def task_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.distiller.loss(model, batch, self.batch_examples)
