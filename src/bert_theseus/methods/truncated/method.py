"""Truncated fine-tuning's training: every parameter, on the labels alone."""

from ...training.loop import Method


class TruncatedMethod(Method):
    """Fine-tune every parameter of the truncated student on the task labels alone."""

    name = "truncated"
