"""Replacing-rate schedules: the probability p_t that a module uses its successor.

`t` counts optimizer steps already taken, so the first batch uses `rate(0)` (the base rate),
as in the official code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import TheseusConfig


@dataclass(frozen=True)
class LinearScheduler:
    """Curriculum p_t = min(1, k*t + b) (paper Eq. 6).

    >>> LinearScheduler(b=0.3, k=0.0006).full_step
    1167
    """

    b: float
    k: float

    @property
    def full_step(self) -> int:
        """First step with p = 1: ceil((1 - b) / k), computed once so rounding cannot move it."""
        return max(0, math.ceil((1.0 - self.b) / self.k - 1e-9))

    def rate(self, t: int) -> float:
        return 1.0 if t >= self.full_step else self.k * t + self.b


@dataclass(frozen=True)
class ConstantScheduler:
    """p for the first `replacing_steps` steps, then 1 (successor fine-tuning)."""

    p: float
    replacing_steps: int

    def rate(self, t: int) -> float:
        return self.p if t < self.replacing_steps else 1.0


@dataclass(frozen=True)
class AntiCurriculumScheduler:
    """1 - (k*t + b) clipped at 0: the paper's ablation; it ends on predecessor modules."""

    linear: LinearScheduler

    def rate(self, t: int) -> float:
        return 1.0 - self.linear.rate(t)


def make_scheduler(config: TheseusConfig, total_steps: int):
    """Build the configured schedule for a run of `total_steps` optimizer steps.

    Without `k` or `replacing_steps`, replacing lasts half the run, leaving the other half
    for successor fine-tuning (the official README reaches p = 1 at about 70%).
    """
    config.validate()
    steps = config.replacing_steps or max(1, total_steps // 2)
    if config.scheduler == "constant":
        return ConstantScheduler(config.replacing_rate, steps)
    k = config.k if config.k is not None else (1.0 - config.replacing_rate) / steps
    if k <= 0:  # b = 1: p is 1 from the start, any slope will do
        k = 1.0
    linear = LinearScheduler(config.replacing_rate, k)
    return linear if config.scheduler == "linear" else AntiCurriculumScheduler(linear)
