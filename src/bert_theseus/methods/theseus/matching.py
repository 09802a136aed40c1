"""Module matching: each successor learns its predecessor module's output on the same input.

The paper trains successors on the task loss alone. Then a successor only hears, through
the frozen layers above it and the frozen head, how the final answer should change, and a
successor whose output carries nothing about the input (the [CLS] state of a mean-pooling
model's lower layers) gets little to learn from (issue 15). Matching gives every successor a
dense target of its own: the output of the predecessor layers it replaces, computed on the
very input the successor received, by calling them with the arguments the encoder gave the
successor (masks, position biases), so it needs nothing per architecture.
"""

from __future__ import annotations

import torch
from torch import nn

from .layer import TheseusLayers


class ModuleMatching:
    """Hooks on the successors that collect, in each training forward, the relative MSE
    between every successor's output and its predecessor module's output.

    >>> matching = ModuleMatching(theseus_layers(model))
    >>> loss = task_loss + weight * matching.pop(task_loss)
    """

    def __init__(self, layers: TheseusLayers):
        self.layers = layers
        self.terms: list[torch.Tensor] = []
        self.handles = [
            successor.register_forward_hook(self._hook(index), with_kwargs=True)
            for index, successor in enumerate(layers.successor)
        ]

    def _hook(self, index: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output) -> None:
            if not (self.layers.training and torch.is_grad_enabled()):
                return  # evaluation and no-grad passes are not trained
            hidden = args[0] if args else kwargs["hidden_states"]
            rest = args[1:]
            extra = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            target = self._predecessor(index, hidden, rest, extra)
            produced = _first(output).float()
            self.terms.append(((produced - target) ** 2).mean() / (target**2).mean())

        return hook

    @torch.no_grad()
    def _predecessor(self, index: int, hidden, rest: tuple, extra: dict) -> torch.Tensor:
        for position in self.layers.groups[index]:
            layer = self.layers.predecessor[position]
            was_training = layer.training
            layer.eval()  # a target without dropout noise, and no random numbers drawn
            try:
                hidden = _first(layer(hidden, *rest, **extra))
            finally:
                layer.train(was_training)
        return hidden.float()

    def pop(self, like: torch.Tensor) -> torch.Tensor:
        """The mean of the terms collected since the last call (zero if no successor ran)."""
        terms, self.terms = self.terms, []
        if not terms:
            return like.new_zeros(())
        return torch.stack(terms).mean()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _first(output):
    # Layers return a tensor in transformers 5; DeBERTa-v2 returns a tuple.
    return output[0] if isinstance(output, tuple) else output
