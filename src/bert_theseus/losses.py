"""Distillation losses as pure functions of student and teacher outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data.unlabelled import UNLABELLED_CLASS


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


def labelled_rows(labels: torch.Tensor) -> torch.Tensor:
    """Which rows of a batch carry a label: unlabelled rows carry the sentinel
    (`UNLABELLED_CLASS`, NaN for a score) and train the teacher term alone."""
    rows = labels.reshape(len(labels), -1)
    if labels.is_floating_point():
        return ~torch.isnan(rows).any(dim=1)
    return (rows != UNLABELLED_CLASS).all(dim=1)


def task_loss(output, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """The task loss on the batch's labelled rows: the model's own `output.loss` where every
    row has a label (so runs without unlabelled rows compute what they did, bit for bit);
    otherwise that loss on the labelled rows alone, and zero (with a graph, not the NaN of
    an empty mean) where there are none."""
    rows = labelled_rows(labels)
    if bool(rows.all()):
        return output.loss
    return labelled_task_loss(output.logits, labels, regression, rows)


def labelled_task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    regression: bool,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss a Hugging Face classifier computes (cross-entropy; MSE for one score), over
    the labelled rows of the batch only."""
    rows = labelled_rows(labels) if rows is None else rows
    if not bool(rows.any()):
        return logits[:0].sum()  # zero, and a backward pass still reaches the model
    logits, labels = logits[rows], labels[rows]
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels.reshape(-1).to(logits.dtype))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
