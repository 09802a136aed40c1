"""Vanilla knowledge distillation (Hinton et al., 2015) into the truncated student."""

from ...teacher import Distiller
from ...training.stages import Stage
from ..registry import register_method
from .config import KDConfig
from .method import KDMethod


def build(context, config: KDConfig, name: str = "kd", layer_map=None) -> list[Stage]:
    """One stage: the truncated student learns from the frozen predecessor (BERT-PKD passes
    its name and layer map)."""

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
)

__all__ = ["KDConfig", "KDMethod"]
