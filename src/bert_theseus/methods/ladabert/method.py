"""One LadaBERT iteration as a method of the shared loop: recover by layer-wise distillation,
keeping the pruned weights at zero."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn
from transformers import PreTrainedModel

from ...compact import to_stock_if_possible
from ...losses import task_loss
from ...teacher import FrozenTeacher
from ...training.loop import Method
from ..tinybert import AttentionScores, layerwise_losses
from .budget import budget_table
from .config import LadaBERTConfig
from .pruning import Masks

TERMS = ("embedding", "attention", "hidden", "logits")


class LadaBERTMethod(Method):
    """The student (same depth and width as the teacher; low-rank, sparse matrices) learns the
    frozen teacher's embedding output, attention scores, hidden states and logits, weighted
    by `config`; with `masks`, pruned entries are put back to zero after every optimizer step.

    >>> method = LadaBERTMethod(student, predecessor, LadaBERTConfig(), Masks(student, 0.6),
    ...                         regression=False, stage="prune-1")
    """

    name = "ladabert"

    def __init__(
        self,
        student: PreTrainedModel,
        teacher: PreTrainedModel,
        config: LadaBERTConfig,
        masks: Masks | None,
        regression: bool,
        stage: str,
    ):
        self.teacher, self.frozen = teacher, FrozenTeacher(teacher)
        self.config, self.masks = config, masks
        self.regression, self.stage = regression, stage
        self.student_scores = AttentionScores(student)
        self.teacher_scores = AttentionScores(teacher)
        self.last: dict[str, torch.Tensor] = {}

    def prepare(self, model: PreTrainedModel, total_steps: int) -> None:
        super().prepare(model, total_steps)
        if self.masks is not None:
            self.masks.apply()

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        config = self.config
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        mask = inputs.get("attention_mask")
        # The scores cost a Q Kᵀ per layer in both models, and their backward: only when used.
        scored = config.attention_weight > 0
        with self.teacher_scores if scored else nullcontext():
            teacher = self.frozen(inputs, output_hidden_states=True)
        teacher_scores = self.teacher_scores.per_layer(mask) if scored else []
        labels = config.label_weight > 0
        with self.student_scores if scored else nullcontext():
            student = model(**(batch if labels else inputs), output_hidden_states=True)
        student_scores = self.student_scores.per_layer(mask) if scored else []
        terms = layerwise_losses(student, teacher, student_scores, teacher_scores, self.regression)
        if not scored:
            terms["attention"] = student.logits.new_zeros((), dtype=torch.float32)
        weights = (config.embedding_weight, config.attention_weight, config.hidden_weight,
                   config.logit_weight)  # fmt: skip
        loss = sum(w * terms[name] for name, w in zip(TERMS, weights, strict=True))
        if labels:
            terms["labels"] = task_loss(student, batch["labels"], self.regression).float()
            loss = loss + config.label_weight * terms["labels"]
        self.last = {name: value.detach() for name, value in terms.items()}
        return loss

    def after_step(self, model: PreTrainedModel, step: int) -> None:
        if self.masks is not None:
            self.masks.apply()

    def finalize(self, model: PreTrainedModel) -> PreTrainedModel:
        return to_stock_if_possible(model)  # pruning alone keeps the predecessor's class

    def summary(self, model: PreTrainedModel) -> dict:
        """The budget this stage reached: per group, against Eq. 7 at this stage's own kept
        fraction of the factors."""
        p_embd, p_svd, _ = self.config.kept()
        keep = self.masks.keep if self.masks is not None else 1.0
        return {"budget": budget_table(self.teacher, model, (p_embd, p_svd, keep))}

    def settings(self) -> dict:
        p_embd, p_svd, p_weight = self.config.kept()
        return {
            "stage": self.stage,
            "p_embd": p_embd,
            "p_svd": p_svd,
            "p_weight": p_weight,
            "svd": self.config.svd,
            "pruning": self.config.pruning,
            "keep": self.masks.keep if self.masks is not None else 1.0,
            "weights": [
                self.config.embedding_weight,
                self.config.attention_weight,
                self.config.hidden_weight,
                self.config.logit_weight,
                self.config.label_weight,
            ],  # fmt: skip
        }
