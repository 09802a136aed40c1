"""BERT-of-Theseus as a method of the shared training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict

import torch
import torch.distributed as dist
from torch import nn
from transformers import PreTrainedModel

from ...pooling import say
from ...training.loop import Method
from ..registry import identity
from .config import TheseusConfig
from .init import InitChoice, choose_successor_init
from .matching import ModuleMatching
from .model import apply_theseus, merge_theseus, theseus_layers
from .scheduler import make_scheduler


class TheseusMethod(Method):
    """Module replacing: before every optimizer step, draw which modules use successors.

    The draws come from a generator of their own seeded with `seed`, so they do not
    depend on dropout or data order, are identical on every process of a distributed run
    (the path must be the same everywhere), and can be replayed.

    `train_batches` gives the training split's batches in file order (a `MethodContext`'s):
    `successor_init="auto"` measures the predecessor on them before training.

    >>> method = TheseusMethod(TheseusConfig(successor_layers=3), 42, context.train_batches)
    >>> result = train(model, method, ...); successor = method.finalize(model)
    """

    name = "theseus"

    def __init__(
        self,
        config: TheseusConfig,
        seed: int = 42,
        train_batches: Callable[[], Iterable[dict]] | None = None,
        init: InitChoice | None = None,
    ):
        config.validate()
        if init is not None and config.successor_init != "auto":
            raise ValueError(f"init given for successor_init '{config.successor_init}': only auto")
        self.config = config
        self.init = init  # what `successor_init="auto"` chose, and why
        self.train_batches = train_batches
        self.generator = torch.Generator().manual_seed(seed)
        self.scheduler = None
        self.matching: ModuleMatching | None = None
        self.module_loss_value: float | None = None

    def prepare(self, model: PreTrainedModel, total_steps: int) -> None:
        if getattr(model, "theseus_layers_path", None) is None:
            if self.config.successor_init == "auto" and self.init is None:
                self.init = self._choose_init(model)
            apply_theseus(model, self.config, self.init and self.init.successor_init)
        self.scheduler = make_scheduler(self.config, total_steps)
        if self.config.module_loss > 0 and self.matching is None:
            self.matching = ModuleMatching(theseus_layers(model))

    def _choose_init(self, model: PreTrainedModel) -> InitChoice:
        if self.train_batches is None:
            raise ValueError(
                "successor_init 'auto' measures the predecessor on training inputs: pass "
                "train_batches (a MethodContext's), or choose a successor_init"
            )
        # Starting a DataLoader's iteration draws from the global generator: keep it as it was
        # (the measurement draws nothing), so the run is the one that names the chosen start.
        with torch.random.fork_rng(devices=[]):
            batches = self.train_batches()
        choice = choose_successor_init(model, self.config, batches)
        if not dist.is_initialized() or dist.get_rank() == 0:
            say(choice.describe())
        return choice

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = self.task_loss(model, batch)
        if self.matching is None:
            return loss
        matched = self.matching.pop(loss)
        self.module_loss_value = float(matched.detach())
        return loss + self.config.module_loss * matched

    def task_loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss on the task (the paper's only loss)."""
        return model(**batch).loss

    def after_backward(self, model: PreTrainedModel, step: int) -> dict[str, float]:
        return {} if self.module_loss_value is None else {"module_loss": self.module_loss_value}

    def before_step(self, model: PreTrainedModel, step: int) -> dict[str, float]:
        rate = self.scheduler.rate(step)
        replaced = theseus_layers(model).sample(rate, self.generator)
        return {"replacing_rate": rate, "successor_modules": replaced}

    def finalize(self, model: PreTrainedModel) -> PreTrainedModel:
        if self.matching is not None:
            self.matching.remove()
        return merge_theseus(model)

    def summary(self, model: PreTrainedModel) -> dict:
        if self.init is None:
            return {}
        return {"successor_init": {**asdict(self.init), "share": self.init.share}}

    def settings(self) -> dict:
        return identity(self.config)  # speed-only fields (Theseus + KD's cache) left out

    def generator_states(self) -> dict[str, torch.Tensor]:
        return {"draws": self.generator.get_state()}

    def set_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(states["draws"])
