"""BERT-of-Theseus: progressive module replacing (Xu et al., EMNLP 2020)."""

from .config import TheseusConfig, TheseusConfigError
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
    "LinearScheduler",
    "TheseusConfig",
    "TheseusConfigError",
    "TheseusLayers",
    "TheseusMethod",
    "apply_theseus",
    "make_scheduler",
    "merge_theseus",
    "theseus_layers",
]
