"""Distillation losses as pure functions of student and teacher outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    regression: bool = False,
) -> torch.Tensor:
    """Hinton's soft-target loss: T^2 * KL(teacher_T || student_T), batch mean.

    KL has the gradient of the soft cross-entropy (they differ by the teacher's entropy,
    a constant), and it is zero when the student matches the teacher. T^2 keeps the
    gradient scale independent of T. Regression heads have no distribution: MSE between
    the outputs instead.
    """
    student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
    if regression:
        return F.mse_loss(student_logits, teacher_logits)
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    student = F.log_softmax(student_logits / temperature, dim=-1)
    kl = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def patient_loss(
    student_states: tuple[torch.Tensor, ...],
    teacher_states: tuple[torch.Tensor, ...],
    layer_map: list[tuple[int, int]],
) -> torch.Tensor:
    """BERT-PKD's patient loss: MSE between L2-normalised [CLS] states, summed over the map.

    `*_states` are `output_hidden_states` tuples (index 0 the embeddings). Normalising
    compares directions only, so a student is not pushed to match the teacher's scale.
    """
    total = student_states[0].new_zeros((), dtype=torch.float32)
    for student, teacher in layer_map:
        s = F.normalize(student_states[student][:, 0].float(), dim=-1)
        t = F.normalize(teacher_states[teacher][:, 0].float(), dim=-1)
        total = total + F.mse_loss(s, t)
    return total
