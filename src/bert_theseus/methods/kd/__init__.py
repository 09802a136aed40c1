"""Vanilla knowledge distillation (Hinton et al., 2015) into the truncated student."""

from ...teacher import Distiller
from ...training.stages import Stage
from ..registry import register_method
from .config import KDConfig
from .method import KDMethod


def build(context, config: KDConfig) -> list[Stage]:
    def start(predecessor):
        distiller = Distiller(predecessor, config, context.regression)
        return config.student(context), KDMethod(distiller, "kd")

    return [Stage("train", start)]


register_method(
    "kd",
    KDConfig,
    build,
    summary="the truncated student distilled from the predecessor's soft targets",
    paper="Hinton et al., 2015; baseline of Xu et al., EMNLP 2020, Table 1",
    compare_default=True,
)

__all__ = ["KDConfig", "KDMethod"]
