"""Learning from a frozen teacher: the soft-target settings and the distillation loss that
KD, BERT-PKD and Theseus + KD share (and later methods reuse)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel

from .losses import patient_loss, soft_target_loss
from .methods.registry import MethodConfigError


@dataclass
class SoftTargets:
    """Hinton's soft targets. Defaults sit inside BERT-PKD's grids (Sun et al., 2019):
    T in {5, 10, 20}, alpha in {0.2, 0.5, 0.7}."""

    temperature: float = field(
        default=5.0, metadata={"help": "softmax temperature T of the soft targets"}
    )
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "weight of the soft-target loss; the hard-label loss gets 1 - alpha "
            "(regression tasks: MSE to the teacher's output)"
        },
    )

    def validate(self) -> None:
        if not self.temperature > 0:
            raise MethodConfigError(
                f"temperature {self.temperature} must be positive: pass e.g. --temperature 5"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise MethodConfigError(f"alpha {self.alpha} is outside [0, 1]: pass e.g. 0.5")


class Distiller:
    """The student's loss against a frozen teacher:
    (1 - alpha) * task loss + alpha * soft-target loss [+ beta * patient loss].

    `config` holds `temperature` and `alpha` (and `beta` where a layer map is given).

    >>> distiller = Distiller(teacher, KDConfig(successor_layers=3), regression=False)
    >>> loss = distiller.loss(student, batch)
    """

    def __init__(
        self,
        teacher: PreTrainedModel,
        config: SoftTargets,
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
