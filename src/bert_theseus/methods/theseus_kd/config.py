"""Configuration of module replacing with the predecessor's soft targets."""

from __future__ import annotations

from dataclasses import dataclass

from ..distillation import SoftTargets
from ..theseus.config import TheseusConfig


@dataclass
class TheseusKDConfig(SoftTargets, TheseusConfig):
    """Module replacing whose task loss is mixed with soft targets (the paper's §4.5 asks
    whether KD adds to it).

    >>> TheseusKDConfig(successor_layers=3, temperature=5, alpha=0.5)
    """

    def validate(self) -> None:
        TheseusConfig.validate(self)
        SoftTargets.validate(self)
