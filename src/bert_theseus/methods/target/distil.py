"""Distilling a narrower, shallower student from the predecessor: its logits and the hidden
states of matched layers (a width cut keeps the hidden size, so states compare directly)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ...losses import soft_target_loss
from ...teacher import FrozenTeacher
from ...training.loop import Method


def uniform_match(student_layers: int, teacher_layers: int) -> list[int]:
    """For each student hidden state (0: embeddings, then each layer's output), the teacher
    state it learns: the end of the run of teacher layers it stands for (the embeddings
    match the embeddings, the last output the last output).

    >>> uniform_match(3, 6)
    [0, 2, 4, 6]
    """
    return [round(j * teacher_layers / student_layers) for j in range(student_layers + 1)]


class SliceDistillMethod(Method):
    """logit_weight * KL(teacher || student) (regression: MSE of the outputs) +
    hidden_weight * sum_j MSE(student state j, teacher state match[j]); every student
    parameter trains. The loss is zero when the student computes what the teacher does.

    >>> method = SliceDistillMethod(predecessor, uniform_match(3, 6), regression=False)
    """

    def __init__(
        self,
        teacher: PreTrainedModel,
        match: list[int],
        regression: bool,
        hidden_weight: float = 1.0,
        logit_weight: float = 1.0,
        name: str = "distil",
    ):
        self.frozen, self.match, self.regression = FrozenTeacher(teacher), list(match), regression
        self.hidden_weight, self.logit_weight, self.name = hidden_weight, logit_weight, name

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        hidden = self.hidden_weight > 0
        teacher = self.frozen(inputs, output_hidden_states=hidden)
        student = model(**inputs, output_hidden_states=hidden)
        loss = self.logit_weight * soft_target_loss(
            student.logits, teacher.logits, 1.0, self.regression
        )
        if hidden:
            if len(student.hidden_states) != len(self.match):
                raise ValueError(
                    f"the student gives {len(student.hidden_states)} hidden states; the match "
                    f"lists {len(self.match)}"
                )
            loss = loss + self.hidden_weight * sum(
                F.mse_loss(state.float(), teacher.hidden_states[t].float())
                for state, t in zip(student.hidden_states, self.match, strict=True)
            )
        return loss

    def settings(self) -> dict:
        return {
            "match": self.match,
            "hidden_weight": self.hidden_weight,
            "logit_weight": self.logit_weight,
        }
