"""The module that module replacing adds: a stand-in for an encoder's layer list."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn


class TheseusLayers(nn.Module):
    """Predecessor layers grouped into modules, each with one successor layer.

    It takes the place of the encoder's `nn.ModuleList`. The encoder's own forward iterates
    over it, so it is handed exactly the layers of the current path: in training, module i
    runs `successor[i]` if its draw chose the successor and its predecessor layers
    otherwise; in eval, only successors. Only the chosen path is computed, and the
    encoder calls each layer with its usual arguments (masks, position biases, ...), which
    keeps this independent of the architecture. The layers are the original classes, so
    the output-recording hooks of transformers 5 (`output_hidden_states`) still fire.

    >>> layers = TheseusLayers(encoder.layer, successor, [[0, 1], [2, 3]])
    >>> layers.sample(p=0.5, generator=torch.Generator().manual_seed(0))
    """

    def __init__(
        self, predecessor: nn.ModuleList, successor: nn.ModuleList, modules: Sequence[Sequence[int]]
    ):
        super().__init__()
        if len(successor) != len(modules):
            raise ValueError(f"{len(successor)} successor layers for {len(modules)} modules")
        self.predecessor = predecessor
        self.successor = successor
        self.groups = [list(group) for group in modules]
        # One choice per module, shared by the whole batch; set once per optimizer step.
        self.use_successor = [True] * len(modules)

    def sample(self, p: float, generator: torch.Generator | None = None) -> int:
        """Draw one Bernoulli(p) per module; return how many modules use their successor."""
        draws = torch.rand(len(self.groups), generator=generator) < p
        self.use_successor = draws.tolist()
        return sum(self.use_successor)

    def force(self, use_successor: Sequence[bool]) -> None:
        """Set the choices directly (ablations such as replacing one module only)."""
        if len(use_successor) != len(self.groups):
            raise ValueError(f"{len(use_successor)} choices for {len(self.groups)} modules")
        self.use_successor = [bool(choice) for choice in use_successor]

    def path(self) -> list[nn.Module]:
        if not self.training:
            return list(self.successor)
        layers: list[nn.Module] = []
        for module, group in enumerate(self.groups):
            if self.use_successor[module]:
                layers.append(self.successor[module])
            else:
                layers.extend(self.predecessor[i] for i in group)
        return layers

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.path())

    def __len__(self) -> int:
        return len(self.path())

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
