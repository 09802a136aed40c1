"""BERT-of-Theseus as a method of the shared training loop."""

from __future__ import annotations

from dataclasses import asdict

import torch
from transformers import PreTrainedModel

from ...training.loop import Method
from .config import TheseusConfig
from .model import apply_theseus, merge_theseus, theseus_layers
from .scheduler import make_scheduler


class TheseusMethod(Method):
    """Module replacing: before every optimizer step, draw which modules use successors.

    The draws come from a generator of their own seeded with `seed`, so they do not
    depend on dropout or data order, are identical on every process of a distributed run
    (the path must be the same everywhere), and can be replayed.

    >>> method = TheseusMethod(TheseusConfig(successor_layers=3), seed=42)
    >>> result = train(model, method, ...); successor = method.finalize(model)
    """

    name = "theseus"

    def __init__(self, config: TheseusConfig, seed: int = 42):
        config.validate()
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)
        self.scheduler = None

    def prepare(self, model: PreTrainedModel, total_steps: int) -> None:
        if getattr(model, "theseus_layers_path", None) is None:
            apply_theseus(model, self.config)
        self.scheduler = make_scheduler(self.config, total_steps)

    def before_step(self, model: PreTrainedModel, step: int) -> dict[str, float]:
        rate = self.scheduler.rate(step)
        replaced = theseus_layers(model).sample(rate, self.generator)
        return {"replacing_rate": rate, "successor_modules": replaced}

    def finalize(self, model: PreTrainedModel) -> PreTrainedModel:
        return merge_theseus(model)

    def settings(self) -> dict:
        return asdict(self.config)

    def generator_states(self) -> dict[str, torch.Tensor]:
        return {"draws": self.generator.get_state()}

    def set_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(states["draws"])
