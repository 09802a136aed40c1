"""DynaBERT (Hou et al., NeurIPS 2020): one model whose width x depth sub-networks share weights.

Stage 1 ("width", DynaBERT_W) rewires the predecessor (most important heads and neurons
first) and distils it into every width at full depth; stage 2 ("width-depth") distils
DynaBERT_W into every width x depth; an optional stage 3 ("finetune") trains them all on the
labels. The result is the full-size, rewired model; `extract` cuts any sub-network out as a
standalone model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from ..registry import MethodError, ReportInput, register_method
from .config import DynaBERTConfig

if TYPE_CHECKING:
    from ...training.stages import Stage


def build(context, config: DynaBERTConfig) -> list[Stage]:
    import copy

    from ...pooling import say
    from ...training.stages import Stage
    from .adaptive import trained_rule
    from .depth_rule import choose_dropped_layer
    from .importance import importance, rewire, rewiring_digest
    from .method import DynaBERTMethod

    regression = context.regression

    def width(predecessor):
        student, order = copy.deepcopy(predecessor).to(context.device), None
        if config.rewire:
            if context.dev_batches is None:
                raise MethodError("rewiring needs the dev set: build DynaBERT through compress")
            heads, neurons = importance(student, context.dev_batches())
            student, order = rewire(student, heads, neurons), rewiring_digest(heads, neurons)
        method = DynaBERTMethod(
            student,
            config.cells(depth=False),
            teacher=predecessor,
            regression=regression,
            hidden_weight=config.width_hidden_weight,
            logit_weight=config.logit_weight,
            output_mse=config.output_mse,
            name="dynabert-width",
            rewiring=order,
        )
        return student, method

    def width_depth(dynabert_w):
        dropped, choice = config.dropped_layer, None
        if dropped == "auto":
            if context.train_batches is None:
                raise MethodError("--dropped-layer auto measures the model on training inputs: "
                                  "build DynaBERT through compress, or choose a rule")  # fmt: skip
            choice = choose_dropped_layer(dynabert_w, config.depths, context.train_batches())
            dropped = choice.dropped_layer
            say(choice.describe())
        teacher = copy.deepcopy(dynabert_w)
        method = DynaBERTMethod(
            dynabert_w,
            config.cells(),
            teacher=teacher,
            regression=regression,
            hidden_weight=config.depth_hidden_weight,
            logit_weight=config.logit_weight,
            output_mse=config.output_mse,
            same_width_teacher=config.teacher_width == "same",
            name="dynabert",
            dropped=dropped,
            depth_rule=choice,
        )
        return dynabert_w, method

    def finetune(dynabert):
        # The rule stage 2 trained with (recorded in the model's config).
        method = DynaBERTMethod(
            dynabert, config.cells(), name="dynabert-finetune", dropped=trained_rule(dynabert)
        )
        return dynabert, method

    stages = [Stage("width", width), Stage("width-depth", width_depth)]
    if config.final_finetune:
        stages.append(Stage("finetune", finetune))
    return stages


def report(config: DynaBERTConfig, run: ReportInput) -> dict:
    """The grid: every cell's dev score, retention, parameters and speed-up, side by side."""
    from .grid import grid, speed_setting, write_grid

    metrics = run.metrics
    rows = grid(run.model, run.predecessor, config.cells(), metrics["dev"],
                metrics["predecessor_dev"], run.seq_length, run.bf16,
                constant=metrics.get("constant_views_at_best", []))  # fmt: skip
    if run.folder is not None:
        setting = speed_setting(run.seq_length, run.bf16)
        write_grid(run.folder, rows, setting, metrics["task"])
    return {"grid": rows}


def variants(model) -> dict:
    """Every trained sub-network of a saved DynaBERT model, extracted, by cell name."""
    from .adaptive import cell_name, extract

    trained = model.config.dynabert
    return {
        cell_name(w, d): extract(model, w, d) for d in trained["depths"] for w in trained["widths"]
    }


register_method(
    "dynabert",
    DynaBERTConfig,
    build,
    summary="one model whose width x depth sub-networks share weights, rewired by importance; "
    "'theseus extract' cuts out any size; each of its 2-3 stages trains --epochs",
    paper="Hou et al., NeurIPS 2020 (DynaBERT), without TinyBERT data augmentation",
    report=report,
    variants=variants,
)

__all__ = [
    "AdaptiveModel",
    "DepthRuleChoice",
    "DynaBERTConfig",
    "DynaBERTMethod",
    "cell_name",
    "choose_dropped_layer",
    "extract",
    "importance",
    "kept_heads",
    "kept_layers",
    "rewire",
    "teacher_match",
]

# Loaded on first use (torch): registering the method reads its config alone.
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ("AdaptiveModel", "cell_name", "extract", "kept_heads", "kept_layers", "teacher_match"),
            ".adaptive",
        ),  # fmt: skip
        "DepthRuleChoice": ".depth_rule",
        "choose_dropped_layer": ".depth_rule",
        "DynaBERTMethod": ".method",
        "importance": ".importance",
        "rewire": ".importance",
        "rewiring_digest": ".importance",
        "trained_rule": ".adaptive",
        **dict.fromkeys(("grid", "speed_setting", "write_grid"), ".grid"),
    },
)
