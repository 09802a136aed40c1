"""The baselines as methods of the shared training loop.

Each baseline trains a student cut from the predecessor (`truncate`); KD and PKD also
read the predecessor as a frozen teacher. `TheseusKDMethod` adds the same soft targets
to module replacing.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn
from transformers import PreTrainedModel

from ..theseus import TheseusConfig, TheseusMethod
from ..training.loop import Method
from .config import DistillConfig
from .losses import patient_loss, soft_target_loss


class TruncatedMethod(Method):
    """Fine-tune every parameter of the truncated student on the task labels alone."""

    name = "truncated"


class Distiller:
    """The student's loss against a frozen teacher:
    (1 - alpha) * task loss + alpha * soft-target loss [+ beta * patient loss].

    >>> distiller = Distiller(teacher, DistillConfig(), regression=False)
    >>> loss = distiller.loss(student, batch)
    """

    def __init__(
        self,
        teacher: PreTrainedModel,
        config: DistillConfig,
        regression: bool,
        layer_map: list[tuple[int, int]] | None = None,
    ):
        config.validate()
        self.teacher = teacher.eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        self.config, self.regression, self.layer_map = config, regression, layer_map or []

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        states = bool(self.layer_map)
        output = model(**batch, output_hidden_states=states)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        device = inputs["input_ids"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)  # once: the loop decides the device after construction
        with torch.no_grad():
            teacher = self.teacher(**inputs, output_hidden_states=states)
        config = self.config
        soft = soft_target_loss(output.logits, teacher.logits, config.temperature, self.regression)
        loss = (1 - config.alpha) * output.loss + config.alpha * soft
        if states:
            pkd = patient_loss(output.hidden_states, teacher.hidden_states, self.layer_map)
            loss = loss + config.beta * pkd
        return loss


class KDMethod(Method):
    """Vanilla KD (Hinton et al.), or BERT-PKD when given a layer map: every student
    parameter trains.

    >>> method = KDMethod(Distiller(predecessor, DistillConfig(), regression=False))
    >>> train(truncate(predecessor, 3), method, ...)
    """

    def __init__(self, distiller: Distiller):
        self.distiller = distiller
        self.name = "pkd" if distiller.layer_map else "kd"

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.distiller.loss(model, batch)

    def settings(self) -> dict:
        # Lists, not tuples: these are compared with the copy read back from a checkpoint.
        layer_map = [list(pair) for pair in self.distiller.layer_map]
        return {**asdict(self.distiller.config), "layer_map": layer_map}


class TheseusKDMethod(TheseusMethod):
    """Module replacing whose task loss is mixed with the predecessor's soft targets.

    The teacher is a frozen copy of the predecessor; when every module draws its
    predecessor the compound model is the teacher, and the soft-target term is zero.
    """

    name = "theseus-kd"

    def __init__(self, config: TheseusConfig, distiller: Distiller, seed: int = 42):
        super().__init__(config, seed)
        self.distiller = distiller

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.distiller.loss(model, batch)

    def settings(self) -> dict:
        return {**super().settings(), "distill": asdict(self.distiller.config)}
