"""Settings of the training loop shared by every method."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields

PRECISIONS = ("auto", "bf16", "fp16", "no")
DEVICES = ("auto", "cpu", "cuda")
# Below this many tokens, [CLS], [SEP] and a word or two are all a model reads of a text.
USEFUL_MAX_LENGTH = 8


class TrainingConfigError(ValueError):
    """A training setting out of its range; the message names the flag and a valid value."""


@dataclass
class TrainingConfig:
    """Optimisation, evaluation and hardware settings.

    Defaults follow the paper's setup (AdamW, lr 2e-5, batch 32, linear decay, clip 1.0).
    """

    epochs: float = field(
        default=3.0,
        metadata={
            "help": "passes over the training data; a method of several stages gives each "
            "stage its share of them, or all of them where its stages each train fully "
            "(its 'theseus methods' line says so)"
        },
    )
    max_steps: int | None = field(
        default=None,
        metadata={
            "help": "optimizer steps in all, overriding --epochs: a method of several stages "
            "splits them over its stages (in proportion to the stages' epochs)"
        },
    )
    batch_size: int = field(
        default=32,
        metadata={
            "help": "training batch size per process (Accelerate's convention): one optimizer "
            "step sees batch size x processes x --gradient-accumulation-steps examples"
        },
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={
            "help": "batches whose gradients add up into one optimizer step (a larger batch "
            "than memory holds); steps, schedules and evaluation count optimizer steps"
        },
    )
    eval_batch_size: int = field(default=64, metadata={"help": "evaluation batch size"})
    learning_rate: float = field(default=2e-5, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(
        default=0.0, metadata={"help": "fraction of steps of linear warm-up before linear decay"}
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "gradient clipping norm over the trained parameters"}
    )
    max_length: int = field(
        default=128,
        metadata={
            "help": "maximum tokens per example; at most the model's position count (the "
            "default 128 shrinks to it on a model with fewer)"
        },
    )
    eval_steps: int | None = field(
        default=None,
        metadata={
            "help": "evaluate on dev every N steps (default: once per epoch) and keep the best"
        },
    )
    save_steps: int | None = field(
        default=None,
        metadata={
            "help": "save a resumable checkpoint every N steps (default: at each evaluation)"
        },
    )
    keep_checkpoints: int = field(default=2, metadata={"help": "how many checkpoints to keep"})
    resume: str | None = field(
        default=None,
        metadata={"help": "continue an interrupted run: auto (its newest checkpoint) or a path"},
    )
    logging_steps: int = field(default=10, metadata={"help": "log the mean loss every N steps"})
    seed: int = field(default=42, metadata={"help": "seed for weights, data order and draws"})
    mixed_precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 where supported), bf16, fp16 (CUDA only) or no"},
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "use only the first N training examples (quick runs)"}
    )

    def validate(self) -> None:
        """Refuse settings out of range before any work is done."""
        positive = ("epochs", "learning_rate", "max_grad_norm")
        at_least_one = ("batch_size", "gradient_accumulation_steps", "eval_batch_size",
                        "max_length", "keep_checkpoints", "logging_steps", "max_steps",
                        "eval_steps", "save_steps", "max_train_samples")  # fmt: skip
        for name in ("epochs", "learning_rate", "max_grad_norm", "weight_decay", "warmup_ratio"):
            if not math.isfinite(getattr(self, name)):
                raise TrainingConfigError(
                    _bad(name, getattr(self, name), "must be a finite number")
                )
        for name in positive:
            if not getattr(self, name) > 0:
                raise TrainingConfigError(_bad(name, getattr(self, name), "must be > 0"))
        for name in at_least_one:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainingConfigError(_bad(name, value, "must be at least 1"))
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise TrainingConfigError(_bad("warmup_ratio", self.warmup_ratio, "must be in [0, 1)"))
        if self.weight_decay < 0:
            raise TrainingConfigError(_bad("weight_decay", self.weight_decay, "must be >= 0"))
        for name, allowed in (("mixed_precision", PRECISIONS), ("device", DEVICES)):
            if getattr(self, name) not in allowed:
                raise TrainingConfigError(
                    _bad(name, getattr(self, name), f"must be one of {', '.join(allowed)}")
                )
        if self.mixed_precision == "fp16" and not self._on_cuda():
            where = "--device cpu" if self.device == "cpu" else "no CUDA device is visible"
            raise TrainingConfigError(
                f"--mixed-precision fp16 needs a CUDA device, and this run is on the CPU "
                f"({where}): pass --mixed-precision bf16, no or auto"
            )
        if self.max_length < USEFUL_MAX_LENGTH:
            print(
                f"warning: --max-length {self.max_length} keeps fewer than {USEFUL_MAX_LENGTH} "
                "tokens of each example, special tokens included: the model reads little of "
                "any text (default 128)",
                file=sys.stderr,
            )

    def _on_cuda(self) -> bool:
        if self.device == "cpu":
            return False
        import torch  # here: settings alone load without it

        return torch.cuda.is_available()


def _bad(name: str, value, rule: str) -> str:
    default = next(f.default for f in fields(TrainingConfig) if f.name == name)
    example = f" (default {default})" if default is not None else ""
    return f"--{name.replace('_', '-')} {value} {rule}{example}"
