"""Truncated fine-tuning: the baseline that keeps the predecessor's bottom layers and
fine-tunes them on the labels (the "Fine-tuning" row of the BERT-of-Theseus paper)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from ..registry import register_method
from .config import TruncatedConfig

if TYPE_CHECKING:
    from ...training.stages import Stage

__all__ = ["TruncatedConfig", "TruncatedMethod", "pretrained_student", "truncate"]

# Loaded on first use (torch): registering the method reads its config alone.
__getattr__ = lazy_exports(
    __name__,
    {"TruncatedMethod": ".method", "pretrained_student": ".student", "truncate": ".student"},
)


def build(context, config: TruncatedConfig) -> list[Stage]:
    from ...training.stages import Stage
    from .method import TruncatedMethod

    return [Stage("train", lambda predecessor: (config.student(context), TruncatedMethod()))]


register_method(
    "truncated",
    TruncatedConfig,
    build,
    summary="the predecessor's bottom layers fine-tuned on the labels",
    paper="baseline of Xu et al., EMNLP 2020 (BERT-of-Theseus), Table 1",
    compare_default=True,
    embedding=True,
)
