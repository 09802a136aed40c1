"""Configuration of BERT-of-Theseus module replacing."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


class TheseusConfigError(ValueError):
    """A Theseus setting is invalid; the message says which and how to fix it."""


SCHEDULERS = ("linear", "constant", "anti-curriculum")
INITS = ("bottom", "first-of-group")
TRAIN_PARTS = ("embeddings", "head")


@dataclass
class TheseusConfig:
    """How to split the predecessor into modules and how to replace them.

    >>> TheseusConfig(successor_layers=6, scheduler="linear", replacing_rate=0.3)
    >>> TheseusConfig(grouping=[[0, 1, 2], [3, 4], [5, 6], [7, 8], [9, 10, 11]])  # 12 -> 5
    """

    successor_layers: int | None = field(
        default=None,
        metadata={
            "help": "successor depth n; must divide the predecessor depth (else use grouping)"
        },
    )
    grouping: list[list[int]] | None = field(
        default=None,
        metadata={
            "help": "explicit modules as lists of consecutive predecessor layers, e.g. "
            "[[0,1,2],[3,4],[5,6],[7,8],[9,10,11]] for 12 -> 5; overrides successor_layers"
        },
    )
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
    successor_init: str = field(
        default="bottom",
        metadata={
            "help": "initialise successor i from predecessor layer i (bottom, as the official "
            "code) or from the first layer of its module (first-of-group)"
        },
    )
    train_parts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "non-encoder parts that also train: embeddings, head (pooler and "
            "classifier); frozen by default, as in the official code"
        },
    )
    layers_path: str | None = field(
        default=None,
        metadata={"help": "dotted path of the encoder's layer list, for unknown architectures"},
    )

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
        unknown = [part for part in self.train_parts if part not in TRAIN_PARTS]
        if unknown:
            raise TheseusConfigError(
                f"unknown train_parts {unknown}: use any of {', '.join(TRAIN_PARTS)}"
            )
        if self.successor_layers is None and self.grouping is None:
            raise TheseusConfigError(
                "no successor size: pass successor_layers (--successor-layers 6) or a grouping"
            )
        if self.successor_layers is not None and self.successor_layers < 1:
            raise TheseusConfigError(f"successor_layers {self.successor_layers} must be at least 1")

    def modules(self, predecessor_layers: int) -> list[list[int]]:
        """The predecessor layer indices of each module, checked against the depth."""
        self.validate()
        if self.grouping is not None:
            flat = [i for group in self.grouping for i in group]
            if flat != list(range(predecessor_layers)) or any(not g for g in self.grouping):
                raise TheseusConfigError(
                    f"grouping {self.grouping} must split layers 0..{predecessor_layers - 1} into "
                    "non-empty runs of consecutive layers, in order, each layer once"
                )
            return [list(group) for group in self.grouping]
        n = self.successor_layers
        if n > predecessor_layers or predecessor_layers % n:
            raise TheseusConfigError(
                f"successor depth {n} does not divide the predecessor depth {predecessor_layers}: "
                f"pick a divisor ({', '.join(str(d) for d in _divisors(predecessor_layers))}) "
                "or pass an explicit grouping"
            )
        c = predecessor_layers // n
        return [list(range(i * c, (i + 1) * c)) for i in range(n)]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
