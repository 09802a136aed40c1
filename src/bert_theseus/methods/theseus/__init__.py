"""BERT-of-Theseus: progressive module replacing (Xu et al., EMNLP 2020)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from ..registry import register_method
from .config import TheseusConfig, TheseusConfigError

if TYPE_CHECKING:
    from ...training.stages import Stage

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

# Loaded on first use (torch): registering the method reads its config alone.
__getattr__ = lazy_exports(
    __name__,
    {
        "AntiCurriculumScheduler": ".scheduler",
        "ConstantScheduler": ".scheduler",
        "LinearScheduler": ".scheduler",
        "make_scheduler": ".scheduler",
        "InitChoice": ".init",
        "choose_successor_init": ".init",
        "TheseusLayers": ".layer",
        "TheseusMethod": ".method",
        "apply_theseus": ".model",
        "merge_theseus": ".model",
        "theseus_layers": ".model",
    },
)


def build(context, config: TheseusConfig) -> list[Stage]:
    import copy

    from ...training.stages import Stage
    from .method import TheseusMethod

    def start(predecessor):
        compound = copy.deepcopy(predecessor)  # module replacing changes its model in place
        return compound, TheseusMethod(config, context.seed, context.train_batches)

    return [Stage("replace", start)]


register_method(
    "theseus",
    TheseusConfig,
    build,
    summary="progressive module replacing: successor layers swapped in at a rising rate",
    paper="Xu et al., EMNLP 2020 (BERT-of-Theseus)",
    compare_default=True,
    embedding=True,
)
