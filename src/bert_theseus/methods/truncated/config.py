"""Configuration of truncated fine-tuning: the student size and where the student comes from."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..depth import DepthConfig
from ..registry import MethodConfigError, check_fields


@dataclass
class TruncatedConfig(DepthConfig):
    """The predecessor's bottom layers, embeddings and head, fine-tuned on the labels.

    >>> TruncatedConfig(successor_layers=6)
    >>> TruncatedConfig(successor_layers=6, student_from="bert-base-uncased")  # the paper's start
    >>> TruncatedConfig(keep_layers=[1, 4, 7, 10])  # sentence-transformers' 12 -> 4 student
    """

    keep_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "the predecessor layers the student keeps, in order, counted from 0, "
            "e.g. 1 4 7 10 (sentence-transformers' distillation recipe spreads them over the "
            "depth); default: the bottom --successor-layers",
            "shape": "a list of layer indices, e.g. 1 4 7 10",
        },
    )

    student_from: str | None = field(
        default=None,
        metadata={
            "help": "cut the student from this pre-trained model (folder or Hub id) with a new "
            "head, as the paper's baselines were, instead of from the fine-tuned predecessor"
        },
    )

    def validate(self) -> None:
        if self.keep_layers is None:
            return super().validate()
        check_fields(self)
        kept = self.keep_layers
        if not kept or kept != sorted(set(kept)) or kept[0] < 0:
            raise MethodConfigError(
                f"keep_layers {kept} must be distinct layer indices from 0, in increasing "
                "order: pass e.g. --keep-layers 1 4 7 10"
            )
        if self.successor_layers not in (None, len(kept)) or self.grouping is not None:
            raise MethodConfigError(
                f"keep_layers names {len(kept)} layers: leave out --successor-layers and "
                "--grouping, or make them agree"
            )

    def depth(self, predecessor) -> int:
        if self.keep_layers is None:
            return super().depth(predecessor)
        layers = self.layer_count(predecessor)
        if self.keep_layers[-1] >= layers:
            raise MethodConfigError(
                f"keep_layers {self.keep_layers} names layer {self.keep_layers[-1]}, but the "
                f"predecessor has layers 0 to {layers - 1}"
            )
        return len(self.keep_layers)

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
        depth = self.depth(context.predecessor)
        return truncate(source, depth, self.layers_path, self.keep_layers)
