"""Configuration of vanilla KD: the truncated student and the teacher's soft targets."""

from __future__ import annotations

from dataclasses import dataclass

from ..distillation import SoftTargets
from ..truncated.config import TruncatedConfig


@dataclass
class KDConfig(SoftTargets, TruncatedConfig):
    """The truncated student, trained on (1 - alpha) task loss + alpha soft-target loss.

    >>> KDConfig(successor_layers=3, temperature=5, alpha=0.5)
    """

    def validate(self) -> None:
        TruncatedConfig.validate(self)
        SoftTargets.validate(self)
