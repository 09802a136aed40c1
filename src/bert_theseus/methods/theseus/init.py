"""Which predecessor layers the successors start from, when the recipe leaves it to a measurement.

The paper starts successor i as predecessor layer i ("bottom"). Its all-successor path is
then the predecessor's bottom layers, and the head reads their [CLS] state. Where that state
barely depends on the input (sentence-embedding predecessors pre-trained for mean pooling
carry the input into [CLS] only in their top layers), the successor model starts as a
constant, and module replacing collapses: the gradient that would make [CLS] depend on the
input scales with how much it already does (docs/results.md section 6). Starting the top
successor from the predecessor's last layer ("bottom-last-top") removes the collapse there,
but where [CLS] is already informative it only makes the top successor read inputs six
layers away from those it was trained on (measured on all-mpnet-base-v2: docs/results.md
section 6). So "auto" keeps the paper's start unless it is collapsed.

A sentence-embedding predecessor is different: its loss is the MSE to its own embedding,
which its pooling reads from every token the last layer writes, so the successor model's
output has to start in the last layer's space. There "auto" starts the top successor from
the last layer whatever the [CLS] spread (measured on all-MiniLM-L6-v2 and
all-mpnet-base-v2: docs/results.md section 16).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from ...arch import find_layers_path
from ...data.loading import first_inputs
from ...embedding.model import SentenceEncoder
from .config import TheseusConfig

# Below this, the bottom layers' [CLS] spread counts as constant. Not tuned: the runs that
# collapsed measure 0.001-0.005 (all-MiniLM-L6-v2 6 -> 3 and 6 -> 2) and the one that did not
# 1.3 (all-mpnet-base-v2 12 -> 6). MPNet 12 -> 4 and 12 -> 3 measure 0.06-0.08; on one RTE
# seed of 12 -> 3 both starts stayed at chance, the paper's constant at 5 of 8 evaluations.
COLLAPSED_SHARE = 0.1
EXAMPLES = 64  # enough for a spread across inputs; one forward pass of the predecessor


@dataclass
class InitChoice:
    """The start chosen for `successor_init="auto"`, and the measurement behind it."""

    successor_init: str
    bottom_cls_spread: float  # [CLS] after the bottom layers the paper's successors copy
    top_cls_spread: float  # [CLS] after the predecessor's last layer
    pooled: bool = False  # a sentence embedding: the last layer's tokens are pooled

    @property
    def share(self) -> float:
        return self.bottom_cls_spread / self.top_cls_spread if self.top_cls_spread else 1.0

    def describe(self) -> str:
        start = {
            "bottom": "the paper's start",
            "bottom-last-top": "top successor from the last layer",
        }
        if self.pooled and self.successor_init == "bottom-last-top":
            reason = "a sentence embedding is pooled from the states the last layer writes"
        else:
            reason = (
                f"[CLS] after the bottom layers varies {self.share:.3f}x as much across "
                f"training inputs as after the last layer (below {COLLAPSED_SHARE}, the "
                "paper's start answers nearly the same for every input)"
            )
        chosen = f"{self.successor_init} ({start[self.successor_init]})"
        return f"successor init auto: {chosen}: {reason}"


def cls_spread(state: torch.Tensor) -> float:
    """Standard deviation across inputs of the first token's state, averaged over units."""
    return float(state[:, 0].float().std(dim=0).mean())


@torch.no_grad()
def choose_successor_init(
    predecessor: PreTrainedModel, config: TheseusConfig, batches: Iterable[dict]
) -> InitChoice:
    """Measure the predecessor on the first `EXAMPLES` inputs of `batches`; choose the start."""
    layers = len(predecessor.get_submodule(find_layers_path(predecessor, config.layers_path)))
    bottom = len(config.modules(layers))
    was_training = predecessor.training
    predecessor.eval()
    # A DataLoader draws its workers' base seed from the global generator as it is
    # iterated: keep that generator as it was, so the run that follows makes the same draws.
    try:
        with torch.random.fork_rng(devices=[]):
            first = _first_token_states(predecessor, batches, (bottom, -1))
    finally:
        predecessor.train(was_training)
    if len(first[0]) < 2:
        raise ValueError("successor_init auto needs at least 2 training examples to measure")
    choice = InitChoice("bottom", cls_spread(first[0]), cls_spread(first[1]),
                        pooled=isinstance(predecessor, SentenceEncoder))  # fmt: skip
    if bottom < layers and (choice.pooled or choice.share < COLLAPSED_SHARE):
        choice.successor_init = "bottom-last-top"
    return choice


def _first_token_states(model, batches: Iterable[dict], layers: tuple[int, ...]) -> list:
    """The first token's hidden state after each of `layers`, for the first EXAMPLES inputs
    (only position 0 is kept, so batches of different lengths join)."""
    kept: list[list[torch.Tensor]] = [[] for _ in layers]
    for inputs in first_inputs(batches, EXAMPLES, next(model.parameters()).device):
        hidden = model(**inputs, output_hidden_states=True).hidden_states
        for states, layer in zip(kept, layers, strict=True):
            states.append(hidden[layer][:, :1])
    return [torch.cat(states) for states in kept]
