"""Which layer of each group a shallower sub-network drops, when the run leaves it to a
measurement (`--dropped-layer auto`).

The paper's rule drops the last layer of each group, so every shallower cell loses the top
layer. Where only the top layers write the input into [CLS] (sentence-embedding predecessors
pre-trained for mean pooling), those cells start as constants: cut from all-MiniLM-L6-v2 RTE
they barely vary across inputs, and trained they answered one class at every evaluation (the
numbers: docs/methods/dynabert.md, docs/results.md section 7). Keeping the top layer
("first": drop each group's first layer) avoids that, but where the paper's cut is not
constant there is no measurement against the paper's rule. So "auto" keeps the paper's rule
unless its shallowest cell's output is a constant, as Theseus's `successor_init auto` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from ...data.loading import first_inputs
from ..theseus.init import COLLAPSED_SHARE
from .adaptive import extract

EXAMPLES = 64  # enough for a spread across inputs


@dataclass
class DepthRuleChoice:
    """The rule chosen for `dropped_layer="auto"`, and the measurement behind it."""

    dropped_layer: str
    depth: float  # the shallowest trained depth, where the paper's cut was measured
    cut_spread: float  # its output's spread across inputs, at full width
    full_spread: float  # the full model's

    @property
    def share(self) -> float:
        return self.cut_spread / self.full_spread if self.full_spread else 1.0

    def describe(self) -> str:
        why = "keeps the top layer" if self.dropped_layer == "first" else "the paper's rule"
        return (
            f"dropped layer auto: {self.dropped_layer} ({why}): cut by the paper's rule to "
            f"depth {self.depth:g}, the model's output varies {self.share:.3f}x as much across "
            f"training inputs as in full (below {COLLAPSED_SHARE}, that cell answers nearly the "
            "same for every input)"
        )


def output_spread(logits: torch.Tensor) -> float:
    """Standard deviation across inputs of the output, averaged over its units."""
    return float(logits.float().std(dim=0).mean())


@torch.no_grad()
def choose_dropped_layer(
    model: PreTrainedModel, depths: list[float], batches: Iterable[dict]
) -> DepthRuleChoice:
    """Measure the paper's cut of `model` at its shallowest depth (full width) against the
    full model on the first `EXAMPLES` inputs of `batches`; choose the rule."""
    depth = min(depths)
    if depth == 1.0:  # no layer is dropped: nothing to measure (spreads 0, valid JSON)
        return DepthRuleChoice("last", 1.0, 0.0, 0.0)
    cut = extract(model, 1.0, depth, "last").eval()
    was_training = model.training
    model.eval()
    full, shallow = [], []
    try:
        for inputs in first_inputs(batches, EXAMPLES, next(model.parameters()).device):
            full.append(model(**inputs).logits)
            shallow.append(cut(**inputs).logits)
    finally:
        model.train(was_training)
    if sum(len(logits) for logits in full) < 2:
        raise ValueError("dropped_layer auto needs at least 2 training examples to measure")
    full_spread = output_spread(torch.cat(full))
    choice = DepthRuleChoice("last", depth, output_spread(torch.cat(shallow)), full_spread)
    if choice.share < COLLAPSED_SHARE:
        choice.dropped_layer = "first"
    return choice
