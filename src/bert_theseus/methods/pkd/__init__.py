"""BERT-PKD (Sun et al., EMNLP 2019): KD plus the patient loss on intermediate [CLS] states."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kd import build as build_kd
from ..registry import register_method
from .config import PKDConfig
from .layers import pkd_layer_map

if TYPE_CHECKING:
    from ...training.stages import Stage


def build(context, config: PKDConfig) -> list[Stage]:
    return build_kd(context, config, "pkd", config.pairs(context.predecessor))


register_method(
    "pkd",
    PKDConfig,
    build,
    summary="KD plus the patient loss on the teacher's intermediate [CLS] states",
    paper="Sun et al., EMNLP 2019 (BERT-PKD); baseline of Xu et al., EMNLP 2020, Table 1",
    compare_default=True,
    unlabelled="the teacher's soft targets and the [CLS] states of the layer map (patient loss)",
)

__all__ = ["PKDConfig", "pkd_layer_map"]
