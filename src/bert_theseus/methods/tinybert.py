"""TinyBERT's layer-wise distillation losses (Jiao et al., 2020), which LadaBERT and RefBERT
recover and train with.

Attention scores are rebuilt from each layer's query and key projections (forward hooks),
q kᵀ / sqrt(head size) per head, so they need no attention maps from the model: they work
with sdpa attention, and with any architecture in the compact-model table. They leave out
what an architecture adds to the scores afterwards (MPNet's relative position bias; it is
learnt by both alike, and the hidden-state terms cover its effect).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ..arch import model_type_of
from ..compact import layout_for
from ..losses import soft_target_loss
from .distillation import LayerwiseWeights  # noqa: F401  (its old home)


class AttentionScores:
    """Records every layer's query and key projections during the forward passes inside it.

    The hooks live only inside the `with` block, so a model never keeps them: not after a
    stage, not after a failure (the teacher is the predecessor, which is timed afterwards).

    >>> scores = AttentionScores(model)
    >>> with scores:
    ...     model(**inputs)
    >>> scores.per_layer(inputs["attention_mask"])  # [batch, heads, length, length] per layer
    """

    def __init__(self, model: PreTrainedModel):
        self.layout = layout_for(model_type_of(model.config))
        self.layers = list(model.base_model.get_submodule(self.layout.layers))
        self.heads = [
            getattr(layer.get_submodule(self.layout.attention), self.layout.head_count[0])
            for layer in self.layers
        ]
        self.recorded: dict[tuple[int, str], torch.Tensor] = {}
        self.handles = []

    def __enter__(self) -> AttentionScores:
        self.recorded.clear()
        for i, layer in enumerate(self.layers):
            for kind, path in (("q", self.layout.query), ("k", self.layout.key)):
                hook = self._recorder(i, kind)
                self.handles.append(layer.get_submodule(path).register_forward_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _recorder(self, index: int, kind: str):
        def hook(module: nn.Module, args, output: torch.Tensor) -> None:
            self.recorded[index, kind] = output

        return hook

    def per_layer(self, attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """Each layer's pre-softmax scores from the last forward pass, padded keys set to 0
        (TinyBERT zeroes the masked positions, whose scores are -inf-like). In fp32 even under
        autocast, which would round the products to bf16."""
        scores = []
        device = self.recorded[0, "q"].device.type
        with torch.autocast(device_type=device, enabled=False):
            for i, heads in enumerate(self.heads):
                scores.append(self._layer(i, heads, attention_mask))
        self.recorded.clear()
        return scores

    def _layer(self, i: int, heads: int, attention_mask: torch.Tensor | None) -> torch.Tensor:
        q, k = self.recorded[i, "q"].float(), self.recorded[i, "k"].float()
        batch, length, width = q.shape
        k = k[:, :length]  # keys past the queries are RefBERT's references: input-input only
        size = width // heads
        q = q.view(batch, length, heads, size).transpose(1, 2)
        k = k.view(batch, length, heads, size).transpose(1, 2)
        score = q @ k.transpose(-1, -2) / math.sqrt(size)
        if attention_mask is not None:
            score = score.masked_fill(attention_mask[:, None, None, :] == 0, 0.0)
        return score


def layerwise_losses(
    student,
    teacher,
    student_scores,
    teacher_scores,
    regression: bool = False,
    teacher_layers: list[int] | None = None,
    logits: bool = True,
) -> dict[str, torch.Tensor]:
    """The TinyBERT terms between outputs of two models (hidden states included): embedding
    output, attention scores and hidden states (MSE, summed over layers), and with `logits`
    the logits (KL at T = 1, the soft cross-entropy less the teacher's entropy; MSE for
    regression). Each is 0 where the student equals the teacher.

    `teacher_layers[l]` is the teacher layer (from 1) that student layer l + 1 learns; by
    default every layer learns its own (models of one depth). Empty score lists leave the
    attention term 0 (not computed)."""
    s_states, t_states = student.hidden_states, teacher.hidden_states
    if teacher_layers is None:
        if len(s_states) != len(t_states):
            raise ValueError(
                f"the student has {len(s_states) - 1} layers and the teacher "
                f"{len(t_states) - 1}: pass teacher_layers"
            )
        teacher_layers = range(1, len(s_states))
    pairs = list(enumerate(teacher_layers))
    attention = (
        [F.mse_loss(student_scores[s], teacher_scores[t - 1]) for s, t in pairs]
        if student_scores or teacher_scores
        else []
    )
    terms = {
        "embedding": F.mse_loss(s_states[0].float(), t_states[0].float()),
        "attention": sum(attention),
        "hidden": sum(F.mse_loss(s_states[s + 1].float(), t_states[t].float()) for s, t in pairs),
    }
    if logits:
        terms["logits"] = soft_target_loss(student.logits, teacher.logits, 1.0, regression)
    return terms
