"""One RefBERT stage as a method of the shared loop: TinyBERT's task distillation, the
intermediate stage (embedding output, attention scores, hidden states) or the prediction
stage (soft cross-entropy; MSE to the labels for regression)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ...losses import labelled_rows, labelled_task_loss, soft_target_loss
from ...teacher import FrozenTeacher
from ...training.loop import Method
from ..tinybert import AttentionScores, layerwise_losses
from .config import RefBERTConfig
from .model import ReferenceStudent

STAGES = ("intermediate", "prediction")


def student_of(model: PreTrainedModel) -> PreTrainedModel:
    """The classifier inside a RefBERT model (a plain student is its own)."""
    return model.student if isinstance(model, ReferenceStudent) else model


class RefBERTMethod(Method):
    """Every student parameter (and the reference projection) learns from the frozen teacher.

    `teacher_layers[l]` is the teacher layer (from 1) that student layer l + 1 learns.

    >>> RefBERTMethod(student, predecessor, RefBERTConfig(successor_layers=3), False,
    ...               "intermediate", [2, 4, 6])
    """

    name = "refbert"

    def __init__(self, student: PreTrainedModel, teacher: PreTrainedModel, config: RefBERTConfig,
                 regression: bool, stage: str, teacher_layers: list[int],
                 dev_batches=None):  # fmt: skip
        if stage not in STAGES:
            raise ValueError(f"stage '{stage}': use one of {', '.join(STAGES)}")
        self.teacher, self.frozen = teacher, FrozenTeacher(teacher)
        self.config, self.regression = config, regression
        self.stage, self.teacher_layers, self.dev_batches = stage, teacher_layers, dev_batches
        self.select_on_dev = stage == "prediction"  # TinyBERT keeps stage 1's last weights
        if stage == "intermediate":
            self.student_scores = AttentionScores(student_of(student))
            self.teacher_scores = AttentionScores(teacher)
        self.last: dict[str, torch.Tensor] = {}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        if self.stage == "intermediate":
            terms = self._intermediate(model, inputs)
            config = self.config
            weights = {"embedding": config.embedding_weight, "attention": config.attention_weight,
                       "hidden": config.hidden_weight}  # fmt: skip
            loss = sum(weights[name] * value for name, value in terms.items())
        else:
            logits = model(**inputs).logits.float()
            if self.regression:  # TinyBERT's prediction stage learns the scores themselves
                terms = {"labels": self._scores(logits, batch["labels"])}
            else:
                teacher = self.frozen(inputs).logits
                temperature = self.config.prediction_temperature
                terms = {"logits": soft_target_loss(logits, teacher, temperature)}
            loss = next(iter(terms.values()))
        self.last = {name: value.detach() for name, value in terms.items()}
        return loss

    @staticmethod
    def _scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """MSE to the scores; rows without one (unlabelled texts) are left out."""
        if bool(labelled_rows(labels).all()):
            return F.mse_loss(logits.view(-1), labels.float().view(-1))
        return labelled_task_loss(logits, labels.float(), regression=True)

    def _intermediate(self, model, inputs) -> dict[str, torch.Tensor]:
        mask = inputs.get("attention_mask")
        with self.teacher_scores:
            teacher = self.frozen(inputs, output_hidden_states=True)
        teacher_scores = self.teacher_scores.per_layer(mask)
        with self.student_scores:
            student = model(**inputs, output_hidden_states=True)
        student_scores = self.student_scores.per_layer(mask)
        return layerwise_losses(student, teacher, student_scores, teacher_scores,
                                teacher_layers=self.teacher_layers, logits=False)  # fmt: skip

    def summary(self, model: PreTrainedModel) -> dict:
        """How inputs relate to their references: on dev, how often the reference's label is
        the input's (classification; Pearson of the two scores for regression), and the mean
        similarity. A high agreement means the student may copy a neighbour's label."""
        if not isinstance(model, ReferenceStudent) or self.dev_batches is None:
            return {}
        references = model.references
        picks, labels = [], []
        for batch in self.dev_batches():
            picks.append(model.picks(batch["input_ids"], batch.get("attention_mask")))
            labels.append(batch["labels"].float().numpy())
        picks, labels = np.concatenate(picks), np.concatenate(labels)
        found = picks >= 0
        theirs = references.labels[picks[found]]
        ours = labels[found]
        if self.regression:
            agreement = float(np.corrcoef(ours, theirs)[0, 1]) if found.sum() > 1 else None
        else:
            agreement = float((ours == theirs).mean()) if found.any() else None
        sizes = references.nbytes()
        return {
            "references": {
                "mode": model.config.reference_mode,
                "states": references.kind,
                "examples": len(references.index),
                "states_bytes": sizes["states"],
                "index_bytes": sizes["index"],
                "dev_with_reference": float(found.mean()),
                ("dev_label_pearson" if self.regression else "dev_label_agreement"): agreement,
            }
        }

    def settings(self) -> dict:
        config = self.config
        return {
            "stage": self.stage,
            "teacher_layers": list(self.teacher_layers),
            "reference_states": config.reference_states,
            "weights": [config.embedding_weight, config.attention_weight, config.hidden_weight],
            "prediction_temperature": config.prediction_temperature,
        }
