"""The distillation settings several methods share, light to import (the CLI's flags come
from them): Hinton's soft targets (the loss is teacher.py's) and the weights of TinyBERT's
layer-wise terms (the losses are tinybert.py's)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .registry import MethodConfigError


@dataclass
class SoftTargets:
    """Hinton's soft targets. Defaults sit inside BERT-PKD's grids (Sun et al., 2019):
    T in {5, 10, 20}, alpha in {0.2, 0.5, 0.7}."""

    temperature: float = field(
        default=5.0, metadata={"help": "softmax temperature T of the soft targets"}
    )
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "weight of the soft-target loss; the hard-label loss gets 1 - alpha "
            "(regression tasks: MSE to the teacher's output)"
        },
    )
    teacher_cache: bool = field(
        default=True,
        metadata={
            "identity": False,  # speed only: runs with it on or off are the same run
            "help": "keep the frozen teacher's outputs for each training example from the "
            "batch it first appears in, and reuse them in later epochs instead of running the "
            "teacher again (saved in checkpoints, so a resume reuses them); one process only",
        },
    )

    def validate(self) -> None:
        if not self.temperature > 0:
            raise MethodConfigError(
                f"temperature {self.temperature} must be positive: pass e.g. --temperature 5"
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise MethodConfigError(f"alpha {self.alpha} is outside [0, 1]: pass e.g. 0.5")


@dataclass
class LayerwiseWeights:
    """The weights of TinyBERT's layer-wise terms (one set of flags for every method)."""

    embedding_weight: float = field(
        default=1.0, metadata={"help": "weight of the embedding-output MSE to the teacher"}
    )
    attention_weight: float = field(
        default=1.0,
        metadata={
            "help": "weight of the attention-score MSE to the teacher, summed over layers "
            "(pre-softmax scores, padded keys zeroed, as TinyBERT)"
        },
    )
    hidden_weight: float = field(
        default=1.0,
        metadata={"help": "weight of the hidden-state MSE to the teacher, summed over layers"},
    )
