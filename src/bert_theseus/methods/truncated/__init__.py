"""Truncated fine-tuning: the baseline that keeps the predecessor's bottom layers and
fine-tunes them on the labels (the "Fine-tuning" row of the BERT-of-Theseus paper)."""

from ...training.loop import Method
from ...training.stages import Stage
from ..registry import register_method
from .config import TruncatedConfig
from .student import pretrained_student, truncate


class TruncatedMethod(Method):
    """Fine-tune every parameter of the truncated student on the task labels alone."""

    name = "truncated"


def build(context, config: TruncatedConfig) -> list[Stage]:
    return [Stage("train", lambda predecessor: (config.student(context), TruncatedMethod()))]


register_method(
    "truncated",
    TruncatedConfig,
    build,
    summary="the predecessor's bottom layers fine-tuned on the labels",
    paper="baseline of Xu et al., EMNLP 2020 (BERT-of-Theseus), Table 1",
    compare_default=True,
)

__all__ = ["TruncatedConfig", "TruncatedMethod", "pretrained_student", "truncate"]
