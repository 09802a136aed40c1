"""Configuration of RefBERT (reconstructed): the student, the stored states and TinyBERT's
distillation (its prediction stage, after an optional intermediate stage)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..distillation import LayerwiseWeights
from ..registry import MethodConfigError
from ..truncated.config import TruncatedConfig

# What is stored of each training example: every token's state, or the first token's.
STATES_KINDS = ("tokens", "cls")


@dataclass
class RefBERTConfig(LayerwiseWeights, TruncatedConfig):
    """The truncated student (by default the predecessor's bottom layers, as for KD), trained
    with TinyBERT's task distillation: its prediction stage, after an optional intermediate
    stage (embedding output, attention scores and hidden states of the mapped teacher layers).

    >>> RefBERTConfig(successor_layers=3, reference_states="cls", intermediate_share=0.5)
    """

    reference_states: str = field(
        default="tokens",
        metadata={
            "help": "RefBERT: what is stored of each training example, from the predecessor's "
            "last layer: tokens (every token's state) or cls (the first token's; far smaller)"
        },
    )
    # 0 by default: in a fixed budget the intermediate stage never scored above the
    # prediction stage alone, and on a predecessor whose [CLS] starts constant it left the
    # student answering nearly one value (docs/methods/refbert.md, docs/results.md section 13).
    intermediate_share: float = field(
        default=0.0,
        metadata={
            "help": "RefBERT: share of the training budget for TinyBERT's intermediate stage "
            "(embedding output, attention scores and hidden states) before the prediction "
            "stage; 0 (default): the prediction stage alone; 0.5: TinyBERT's two stages"
        },
    )
    prediction_temperature: float = field(
        default=1.0,
        metadata={
            "help": "RefBERT: temperature of the prediction stage's soft cross-entropy "
            "(TinyBERT: 1); regression tasks learn the labels by MSE there, as TinyBERT does"
        },
    )

    def validate(self) -> None:
        super().validate()
        if self.reference_states not in STATES_KINDS:
            raise MethodConfigError(
                f"unknown reference_states '{self.reference_states}': use one of "
                f"{', '.join(STATES_KINDS)}"
            )
        if not 0.0 <= self.intermediate_share < 1.0:
            raise MethodConfigError(
                f"intermediate_share {self.intermediate_share} must be in [0, 1): the "
                "prediction stage needs part of the budget; pass e.g. 0.5"
            )
        if not self.prediction_temperature > 0:
            raise MethodConfigError(
                f"prediction_temperature {self.prediction_temperature} must be positive: pass 1"
            )
        for name in ("embedding_weight", "attention_weight", "hidden_weight"):
            if getattr(self, name) < 0:
                raise MethodConfigError(f"{name} {getattr(self, name)} must not be negative")

    def check(self, context) -> None:
        """Before any data is read: the student's first attention must be in the layer table."""
        from ...arch import model_type_of
        from ...compact import UnsupportedArchitectureError, layout_for

        kind = model_type_of(context.predecessor.config)
        if kind == "bert-theseus-refbert":
            raise MethodConfigError(
                "the predecessor is a RefBERT model already: compress the model it was made from"
            )
        super().check(context)
        try:
            layout_for(kind)
        except UnsupportedArchitectureError as error:
            raise MethodConfigError(
                f"RefBERT cannot extend this model's first attention layer: {error}"
            ) from None

    def teacher_layers(self, predecessor) -> list[int]:
        """The teacher layer each student layer learns (counted from 1): the top of its
        group, TinyBERT's uniform map g(l) = l * c."""
        return [group[-1] + 1 for group in self.modules(self.layer_count(predecessor))]
