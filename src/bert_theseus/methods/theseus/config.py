"""Configuration of BERT-of-Theseus module replacing."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..depth import DepthConfig
from ..registry import MethodConfigError

# Kept under its old name: callers catch it for any Theseus setting.
TheseusConfigError = MethodConfigError

SCHEDULERS = ("linear", "constant", "anti-curriculum")
INITS = ("bottom", "first-of-group", "last-of-group", "bottom-last-top", "auto")
TRAIN_PARTS = ("embeddings", "head")

# Settings a recipe decides unless given. "paper" is Xu et al.'s recipe as the official code
# runs it. "default" is what measured best here (docs/results.md section 6): the paper's
# bottom layers, unless their [CLS] state barely depends on the input (then the top
# successor starts as the predecessor's last layer, the one that writes what the head
# reads; see init.py), and the head and embeddings train too, as in every baseline.
RECIPES: dict[str, dict] = {
    "paper": {"successor_init": "bottom", "module_loss": 0.0, "train_parts": []},
    "default": {
        "successor_init": "auto",
        "module_loss": 0.0,
        "train_parts": ["head", "embeddings"],
    },
}


@dataclass
class TheseusConfig(DepthConfig):
    """How to split the predecessor into modules and how to replace them.

    >>> TheseusConfig(successor_layers=6, scheduler="linear", replacing_rate=0.3)
    >>> TheseusConfig(grouping=[[0, 1, 2], [3, 4], [5, 6], [7, 8], [9, 10, 11]])  # 12 -> 5
    """

    scheduler: str = field(
        default="linear",
        metadata={
            "help": "replacing-rate schedule: linear (curriculum p = min(1, k*t + b)), "
            "constant (p until replacing_steps, then 1) or anti-curriculum (1 - linear, ablation)"
        },
    )
    replacing_rate: float = field(
        default=0.3,
        metadata={"help": "base rate b of the linear schedule, or the constant rate p; in (0, 1]"},
    )
    k: float | None = field(
        default=None,
        metadata={"help": "slope of the linear schedule per optimizer step (paper README: 0.0006)"},
    )
    replacing_steps: int | None = field(
        default=None,
        metadata={
            "help": "optimizer steps of module replacing: constant switches to p = 1 there; "
            "linear without k reaches p = 1 there (k = (1 - b) / steps). Default: half the run"
        },
    )
    recipe: str = field(
        default="default",
        metadata={
            "help": "default (what measured best here: auto successor init, head and "
            "embeddings trained) or paper (bottom-layer successors, frozen head, task loss "
            "only): fills in successor_init, module_loss and train_parts not given"
        },
    )
    successor_init: str | None = field(
        default=None,
        metadata={
            "help": "successor i starts as predecessor layer i (bottom, as the official "
            "code), as the first or last layer of its module (first-of-group, last-of-group), "
            "or as bottom but the top one as the last layer (bottom-last-top); auto: "
            "bottom-last-top where the [CLS] state after the bottom layers varies under a "
            "tenth as much as after the last, else bottom; default: the recipe's"
        },
    )
    module_loss: float | None = field(
        default=None,
        metadata={
            "help": "weight of a loss matching each successor's output to its predecessor "
            "module's on the same input (relative MSE); paper: 0; default: the recipe's"
        },
    )
    train_parts: list[str] | None = field(
        default=None,
        metadata={
            "help": "non-encoder parts that also train: embeddings, head (pooler and "
            "classifier); default: the recipe's (paper: none; default: both)"
        },
    )

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise TheseusConfigError(
                f"unknown recipe '{self.recipe}': use one of {', '.join(RECIPES)}"
            )
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, list(value) if isinstance(value, list) else value)

    def validate(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise TheseusConfigError(
                f"unknown scheduler '{self.scheduler}': use one of {', '.join(SCHEDULERS)}"
            )
        if not 0.0 < self.replacing_rate <= 1.0:
            raise TheseusConfigError(
                f"replacing_rate {self.replacing_rate} is outside (0, 1]: pass a rate such as 0.3"
            )
        if self.k is not None and not self.k > 0:
            raise TheseusConfigError(f"k {self.k} must be positive: pass e.g. --k 0.0006")
        if self.replacing_steps is not None and self.replacing_steps <= 0:
            raise TheseusConfigError(
                f"replacing_steps {self.replacing_steps} must be positive: pass e.g. 1000"
            )
        if self.successor_init not in INITS:
            raise TheseusConfigError(
                f"unknown successor_init '{self.successor_init}': use one of {', '.join(INITS)}"
            )
        if self.module_loss < 0:
            raise TheseusConfigError(
                f"module_loss {self.module_loss} must not be negative: pass e.g. 1.0, or 0"
            )
        unknown = [part for part in self.train_parts if part not in TRAIN_PARTS]
        if unknown:
            raise TheseusConfigError(
                f"unknown train_parts {unknown}: use any of {', '.join(TRAIN_PARTS)}"
            )
        super().validate()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)
