"""DynaBERT's stages as methods of the shared loop: every sub-network's loss, one step a batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ...losses import soft_target_loss, task_loss
from ...teacher import FrozenTeacher
from ...training.loop import Method
from .adaptive import AdaptiveModel, cell_name, teacher_match
from .depth_rule import DepthRuleChoice
from .sampling import CellSampler


class DynaBERTMethod(Method):
    """Train the sub-networks `cells` [(width, depth), ...] of one adaptive model together.

    With a `teacher` (frozen), each sub-network learns the teacher's logits (KL, weight
    `logit_weight`; regression: MSE, weight `output_mse`) and hidden states (MSE summed over
    the teacher-layer match list, weight `hidden_weight`). The teacher runs at the student's
    width (`same_width_teacher`, the paper's Alg. 3) or whole. Without a teacher each
    sub-network learns the labels (the final fine-tuning). Each sub-network's loss is its own
    part (`losses`): back-propagated at once, all summed into one optimizer step.

    >>> method = DynaBERTMethod(student, cells=[(1.0, 1.0), (0.5, 1.0)], teacher=predecessor,
    ...                         regression=False, hidden_weight=0.1)
    """

    def __init__(
        self,
        model: PreTrainedModel,
        cells: list[tuple[float, float]],
        teacher: PreTrainedModel | None = None,
        regression: bool = False,
        hidden_weight: float = 0.0,
        logit_weight: float = 1.0,
        output_mse: float = 1.0,
        same_width_teacher: bool = False,
        name: str = "dynabert",
        rewiring: str | None = None,
        dropped: str = "last",
        depth_rule: DepthRuleChoice | None = None,
        sampler: CellSampler | None = None,
    ):
        self.adaptive, self.cells, self.name = AdaptiveModel(model, dropped), list(cells), name
        self.sampler = sampler or CellSampler(tuple(self.cells))
        self.step_cells = list(self.cells)
        self.dropped, self.depth_rule = dropped, depth_rule  # what "auto" chose, and why
        self.regression, self.hidden_weight = regression, hidden_weight
        self.logit_weight, self.output_mse = logit_weight, output_mse
        self.teacher, self.teacher_adaptive = teacher, None
        self.same_width_teacher, self.rewiring = same_width_teacher, rewiring
        # Dropout off in the teacher, as in the official code.
        self.frozen = FrozenTeacher(teacher) if teacher is not None else None
        if teacher is not None:
            if same_width_teacher:
                self.teacher_adaptive = AdaptiveModel(teacher)
        self.last: dict[str, torch.Tensor] = {}

    def before_step(self, model: PreTrainedModel, step: int) -> dict[str, float]:
        self.step_cells = self.sampler.step_cells(step)
        return {}

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> Iterator[torch.Tensor]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        targets = self._teacher_outputs(inputs) if self.teacher is not None else None
        hidden = self.teacher is not None and self.hidden_weight > 0
        self.last = {}
        for width, depth in self.step_cells:
            with self.adaptive.sub_network(width, depth):
                output = model(**(inputs if targets else batch), output_hidden_states=hidden)
            if targets is None:  # unlabelled rows carry no loss here
                loss = task_loss(output, batch["labels"], self.regression)
            else:
                teacher = targets[width if self.same_width_teacher else 1.0]
                loss = self._distillation(output, teacher, depth)
            self.last[f"loss@{cell_name(width, depth)}"] = loss.detach()  # read after backward
            yield loss

    def _distillation(self, output, teacher, depth: float) -> torch.Tensor:
        if self.regression:
            loss = self.output_mse * F.mse_loss(output.logits.float(), teacher.logits.float())
        else:
            loss = self.logit_weight * soft_target_loss(output.logits, teacher.logits, 1.0)
        if self.hidden_weight > 0:
            layers = len(teacher.hidden_states) - 1
            match = teacher_match(depth, layers, self.dropped)
            hidden = sum(
                F.mse_loss(student.float(), teacher.hidden_states[t].float())
                for student, t in zip(output.hidden_states, match, strict=True)
            )
            loss = loss + self.hidden_weight * hidden
        return loss

    def _teacher_outputs(self, inputs: dict[str, torch.Tensor]) -> dict[float, object]:
        hidden = self.hidden_weight > 0
        if self.teacher_adaptive is None:
            return {1.0: self.frozen(inputs, output_hidden_states=hidden)}
        outputs = {}
        for width in dict.fromkeys(w for w, _ in self.step_cells):
            with self.teacher_adaptive.sub_network(width, 1.0):
                outputs[width] = self.frozen(inputs, output_hidden_states=hidden)
        return outputs

    def views(self, model: PreTrainedModel) -> Iterator[str]:
        for width, depth in self.cells:
            with self.adaptive.sub_network(width, depth):
                yield cell_name(width, depth)

    def finalize(self, model: PreTrainedModel) -> PreTrainedModel:
        """The trained model, full size with plain linears: every sub-network is in it. Its
        config records the trained widths, depths and depth rule, which `extract` uses."""
        self.adaptive.remove()
        model.config.dynabert = {
            "widths": sorted({w for w, _ in self.cells}, reverse=True),
            "depths": sorted({d for _, d in self.cells}, reverse=True),
            "dropped_layer": self.dropped,
        }
        return model

    def summary(self, model: PreTrainedModel) -> dict:
        if self.depth_rule is None:
            return {}
        return {"depth_rule": {**asdict(self.depth_rule), "share": self.depth_rule.share}}

    def settings(self) -> dict:
        return {
            "cells": [list(cell) for cell in self.cells],
            "teacher": self.teacher is not None,
            "hidden_weight": self.hidden_weight,
            "logit_weight": self.logit_weight,
            "output_mse": self.output_mse,
            "same_width_teacher": self.same_width_teacher,
            "dropped_layer": self.dropped,
            **({"rewiring": self.rewiring} if self.rewiring else {}),
            **self.sampler.settings(),
        }
