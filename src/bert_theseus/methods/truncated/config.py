"""Configuration of truncated fine-tuning: the student size and where the student comes from."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..depth import DepthConfig


@dataclass
class TruncatedConfig(DepthConfig):
    """The predecessor's bottom layers, embeddings and head, fine-tuned on the labels.

    >>> TruncatedConfig(successor_layers=6)
    >>> TruncatedConfig(successor_layers=6, student_from="bert-base-uncased")  # the paper's start
    """

    student_from: str | None = field(
        default=None,
        metadata={
            "help": "cut the student from this pre-trained model (folder or Hub id) with a new "
            "head, as the paper's baselines were, instead of from the fine-tuned predecessor"
        },
    )

    def check(self, context) -> None:
        super().check(context)
        if self.student_from:  # fail now, not after other runs have trained
            from .student import pretrained_student

            pretrained_student(self.student_from, context.predecessor, 0, context.trust_remote_code)

    def student(self, context):
        """The student: a copy of the predecessor, or of `student_from`, cut to the depth."""
        from .student import pretrained_student, truncate

        source = context.predecessor
        if self.student_from:
            source = pretrained_student(
                self.student_from, source, context.seed, context.trust_remote_code
            )
        return truncate(source, self.depth(context.predecessor), self.layers_path)
