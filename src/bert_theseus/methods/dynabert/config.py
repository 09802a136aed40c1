"""Configuration of DynaBERT: the widths and depths of the sub-networks, and each stage's loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..registry import MethodConfigError
from .sampling import SUBNETWORKS
from .sizes import DROPPED_LAYERS, kept_heads, kept_layers

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TEACHER_WIDTHS = ("same", "full")
DEPTH_RULES = ("auto", *DROPPED_LAYERS)  # "auto": chosen by a measurement (depth_rule.py)


@dataclass
class DynaBERTConfig:
    """Which sub-networks share the model, and how each of the three stages trains them.

    Defaults are the official code's (Hou et al., NeurIPS 2020; ../shared/methods/dynabert.md),
    but for two: the depth rule "auto" keeps the paper's unless its shallowest cell starts as
    a constant (`dropped_layer="last"` is the paper's always), and regression tasks distil the
    output too (`output_mse=0.0` is the official code's):

    >>> DynaBERTConfig(widths=[1.0, 0.75, 0.5, 0.25], depths=[1.0, 0.75, 0.5])
    >>> DynaBERTConfig(teacher_width="full", final_finetune=True)  # the released code's teacher
    """

    widths: list[float] = field(
        default_factory=lambda: [1.0, 0.75, 0.5, 0.25],
        metadata={
            "help": "width multipliers m_w: share of attention heads (round(m_w * heads)) and "
            "FFN neurons kept in every layer"
        },
    )
    depths: list[float] = field(
        default_factory=lambda: [1.0, 0.75, 0.5],
        metadata={
            "help": "depth multipliers m_d: round(m_d * layers) layers kept, one dropped from "
            "each group of 1 / (1 - m_d) (--dropped-layer); the width stage trains at depth 1 "
            "only"
        },
    )
    dropped_layer: str = field(
        default="auto",
        metadata={
            "help": "which layer of each group a shallower sub-network drops: 'last' (the "
            "paper: layers 0, 2, 4 of 6 at depth 0.5, so the top layer goes), 'first' (1, 3, "
            "5: the top layer, which writes [CLS] in sentence-embedding models, stays) or "
            "'auto' (the paper's unless its shallowest cell starts as a constant, measured on "
            "training inputs as the width-and-depth stage starts)"
        },
    )
    rewire: bool = field(
        default=True,
        metadata={
            "help": "re-order heads and FFN neurons by importance on dev before training, so "
            "narrow sub-networks keep the most useful ones (--no-rewire: the ablation)"
        },
    )
    width_hidden_weight: float = field(
        default=0.1,
        metadata={"help": "lambda2 of the width stage: weight of the hidden-state MSE terms"},
    )
    depth_hidden_weight: float = field(
        default=1.0,
        metadata={"help": "lambda2 of the width-and-depth stage: weight of the hidden-state MSE"},
    )
    logit_weight: float = field(
        default=1.0,
        metadata={
            "help": "lambda1 of both distillation stages: weight of the soft cross-entropy to the "
            "teacher's logits (as KL, zero when they agree; classification only)"
        },
    )
    output_mse: float = field(
        # Not the official code's 0: with hidden states alone, [CLS] is one token of many in
        # the loss, and the shallower cells' outputs drift (docs/results.md section 7, STS-B).
        default=1.0,
        metadata={
            "help": "regression tasks: weight of an MSE between student and teacher outputs, "
            "the counterpart of the logit term (0: the official code, hidden states only)"
        },
    )
    teacher_width: str = field(
        default="same",
        metadata={
            "help": "teacher of the width-and-depth stage: 'same' (the paper: DynaBERT_W at the "
            "student's width, full depth) or 'full' (the released code: full width)"
        },
    )
    subnetworks: str = field(
        default="all",
        metadata={
            "help": "sub-networks each step trains: 'all' (the paper) or 'sandwich' (slimmable "
            "networks, BigNAS): the largest, the smallest and --sampled others drawn per step "
            "from the run's seed; every evaluation still scores them all"
        },
    )
    sampled: int = field(
        default=2,
        metadata={
            "help": "with --subnetworks sandwich: sub-networks drawn per step besides the "
            "largest and the smallest (a stage with fewer trains all of its own)"
        },
    )
    final_finetune: bool = field(
        default=False,
        metadata={
            "help": "add a third stage that trains every sub-network on the task's labels "
            "(the official code's final_finetuning)"
        },
    )

    def validate(self) -> None:
        for name in ("widths", "depths"):
            values = getattr(self, name)
            if not values or any(not 0.0 < v <= 1.0 for v in values):
                raise MethodConfigError(
                    f"{name} {values} must be multipliers in (0, 1], e.g. --{name} 1.0 0.5"
                )
            if len(set(values)) != len(values):
                raise MethodConfigError(f"{name} {values} lists a multiplier twice")
        if max(self.widths) != 1.0 or max(self.depths) != 1.0:
            # The width stage's teacher is the full model, and the depth stage's the full depth.
            raise MethodConfigError(
                f"widths {self.widths} and depths {self.depths} must include 1.0 (the full model)"
            )
        if self.dropped_layer not in DEPTH_RULES:
            raise MethodConfigError(
                f"dropped_layer '{self.dropped_layer}' is not one of {', '.join(DEPTH_RULES)}"
            )
        if self.teacher_width not in TEACHER_WIDTHS:
            raise MethodConfigError(
                f"teacher_width '{self.teacher_width}' is not one of {', '.join(TEACHER_WIDTHS)}"
            )
        if self.subnetworks not in SUBNETWORKS:
            raise MethodConfigError(
                f"subnetworks '{self.subnetworks}' is not one of {', '.join(SUBNETWORKS)}"
            )
        if self.sampled < 0:
            raise MethodConfigError(f"sampled {self.sampled} must be >= 0, e.g. --sampled 2")
        for name in ("width_hidden_weight", "depth_hidden_weight", "logit_weight", "output_mse"):
            if getattr(self, name) < 0:
                raise MethodConfigError(f"{name} {getattr(self, name)} must be >= 0")

    def cells(self, depth: bool = True) -> list[tuple[float, float]]:
        """The (width, depth) sub-networks a stage trains, widest and deepest first."""
        widths = sorted(self.widths, reverse=True)
        depths = sorted(self.depths, reverse=True) if depth else [1.0]
        return [(w, d) for d in depths for w in widths]

    def sampler(self, cells: list[tuple[float, float]], seed: int, stage: str):
        from .sampling import CellSampler

        return CellSampler(tuple(cells), self.subnetworks, self.sampled, seed, stage)

    def check(self, context) -> None:
        check_predecessor(context.predecessor, self)


def check_predecessor(model: PreTrainedModel, config: DynaBERTConfig) -> None:
    """Fail unless every sub-network can be cut from `model` (architecture and sizes)."""
    # Here, not at the top: the CLI reads this module for its flags without loading torch.
    from ...arch import model_type_of
    from ...compact import CompactConfig, UnsupportedArchitectureError, layout_for

    compact = isinstance(model.config, CompactConfig)
    try:
        layout_for(model_type_of(model.config))
    except UnsupportedArchitectureError as error:
        raise MethodConfigError(f"DynaBERT cannot slice this model: {error}") from None
    if compact and (
        any(model.config.layer_ranks)
        or set(model.config.layer_heads) != {model.config.num_attention_heads}
        or len(set(model.config.layer_intermediate_sizes)) != 1
    ):
        raise MethodConfigError(
            "DynaBERT needs whole layers of one size; this compact model's layers are cut "
            "(pass the fine-tuned model it was made from)"
        )
    heads = model.config.num_attention_heads
    layers = model.config.num_hidden_layers
    sizes = {kept_heads(width, heads) for width in config.widths}
    depths = {len(kept_layers(depth, layers)) for depth in config.depths}
    if sizes == {heads} and depths == {layers}:
        raise MethodConfigError(
            f"widths {config.widths} and depths {config.depths} keep every head and layer of "
            f"the {layers}-layer, {heads}-head model: nothing compressed; add smaller "
            "multipliers, e.g. --widths 1.0 0.5 --depths 1.0 0.5"
        )
