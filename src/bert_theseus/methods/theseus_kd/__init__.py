"""Theseus + KD: module replacing with the predecessor's soft targets added to its loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from ..registry import register_method
from .config import TheseusKDConfig

if TYPE_CHECKING:
    from ...training.stages import Stage

__all__ = ["TheseusKDConfig", "TheseusKDMethod"]

# Loaded on first use (torch): registering the method reads its config alone.
__getattr__ = lazy_exports(__name__, {"TheseusKDMethod": ".method"})


def build(context, config: TheseusKDConfig) -> list[Stage]:
    import copy

    from ...teacher import Distiller
    from ...training.stages import Stage
    from .method import TheseusKDMethod

    def start(predecessor):
        distiller = Distiller(predecessor, config, context.regression)
        compound = copy.deepcopy(predecessor)  # module replacing changes its model in place
        return compound, TheseusKDMethod(config, distiller, context.seed, context.train_batches)

    return [Stage("replace", start)]


register_method(
    "theseus-kd",
    TheseusKDConfig,
    build,
    summary="module replacing with the predecessor's soft targets added to the task loss",
    paper="Xu et al., EMNLP 2020 (BERT-of-Theseus), with Hinton et al.'s KD",
    compare_default=True,
    unlabelled="the teacher's soft targets (and --module-loss, where on: it takes no label); "
    "module replacing draws on them as on labelled rows",
)
