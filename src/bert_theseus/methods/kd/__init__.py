"""Vanilla knowledge distillation (Hinton et al., 2015) into the truncated student."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from ..registry import register_method
from .config import KDConfig

if TYPE_CHECKING:
    from ...training.stages import Stage

__all__ = ["KDConfig", "KDMethod"]

# Loaded on first use (torch): registering the method reads its config alone.
__getattr__ = lazy_exports(__name__, {"KDMethod": ".method"})


def build(context, config: KDConfig, name: str = "kd", layer_map=None) -> list[Stage]:
    """One stage: the truncated student learns from the frozen predecessor (BERT-PKD passes
    its name and layer map)."""
    from ...teacher import Distiller
    from ...training.stages import Stage
    from .method import KDMethod

    def start(predecessor):
        distiller = Distiller(predecessor, config, context.regression, layer_map)
        return config.student(context), KDMethod(distiller, name)

    return [Stage("train", start)]


register_method(
    "kd",
    KDConfig,
    build,
    summary="the truncated student distilled from the predecessor's soft targets",
    paper="Hinton et al., 2015; baseline of Xu et al., EMNLP 2020, Table 1",
    compare_default=True,
    embedding=True,
    unlabelled="the teacher's soft targets (regression: its output, by MSE)",
)
