"""BERT-of-Theseus: progressive module replacing (Xu et al., EMNLP 2020)."""

import copy

from ...training.stages import Stage
from ..registry import register_method
from .config import TheseusConfig, TheseusConfigError
from .init import InitChoice, choose_successor_init
from .layer import TheseusLayers
from .method import TheseusMethod
from .model import apply_theseus, merge_theseus, theseus_layers
from .scheduler import (
    AntiCurriculumScheduler,
    ConstantScheduler,
    LinearScheduler,
    make_scheduler,
)

__all__ = [
    "AntiCurriculumScheduler",
    "ConstantScheduler",
    "InitChoice",
    "LinearScheduler",
    "TheseusConfig",
    "TheseusConfigError",
    "TheseusLayers",
    "TheseusMethod",
    "apply_theseus",
    "choose_successor_init",
    "make_scheduler",
    "merge_theseus",
    "theseus_layers",
]


def build(context, config: TheseusConfig) -> list[Stage]:
    def start(predecessor):
        compound = copy.deepcopy(predecessor)  # module replacing changes its model in place
        return compound, TheseusMethod(config, seed=context.seed)

    return [Stage("replace", start)]


register_method(
    "theseus",
    TheseusConfig,
    build,
    summary="progressive module replacing: successor layers swapped in at a rising rate",
    paper="Xu et al., EMNLP 2020 (BERT-of-Theseus)",
    compare_default=True,
)
