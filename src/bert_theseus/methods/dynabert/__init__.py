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
from ..registry import MethodCommand, MethodError, ReportInput, register_method
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
        cells = config.cells(depth=False)
        method = DynaBERTMethod(
            student,
            cells,
            teacher=predecessor,
            regression=regression,
            hidden_weight=config.width_hidden_weight,
            logit_weight=config.logit_weight,
            output_mse=config.output_mse,
            name="dynabert-width",
            rewiring=order,
            sampler=config.sampler(cells, context.seed, "dynabert-width"),
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
            sampler=config.sampler(config.cells(), context.seed, "dynabert"),
        )
        return dynabert_w, method

    def finetune(dynabert):
        # The rule stage 2 trained with (recorded in the model's config).
        method = DynaBERTMethod(
            dynabert, config.cells(), name="dynabert-finetune", dropped=trained_rule(dynabert),
            sampler=config.sampler(config.cells(), context.seed, "dynabert-finetune"),
        )  # fmt: skip
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


def summary_lines(metrics: dict) -> list[str]:
    """The CLI's summary of the grid: the run's dev score is the mean over its cells."""
    grid = metrics.get("grid")
    if not grid:
        return []
    lines = [f"  {len(grid)} sub-networks (dev score above: their mean):"]
    return lines + [
        f"    width {r['width']:g} depth {r['depth']:g}: {r['score']:.4f} "
        f"({r['retention_percent']}%), {r['parameters'] / 1e6:.1f}M parameters, "
        f"{r['speedup']:.2f}x"
        for r in grid
    ]


def card_lines(metrics: dict, split: str) -> list[str]:
    """The model card's table of every sub-network."""
    grid = metrics.get("grid")
    if not grid:
        return []
    lines = [
        f"- This model holds {len(grid)} sub-networks (`theseus extract` saves one); the "
        f"{split} score above is their mean. Each, with its speed-up over the predecessor:",
        "",
        "| width | depth | layers kept | score | retention | parameters | speed-up | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['width']:g} | {r['depth']:g} | {r.get('layers', '')} | {r['score']:.4f} "
        f"| {r['retention_percent']}% "
        f"| {r['parameters']:,} | {r['speedup']}x "
        f"| {'one answer for every example' if r.get('one_answer') else ''} |"
        for r in grid
    ]
    return [*lines, ""]


def _extract_arguments(parser) -> None:
    parser.add_argument("model", help="folder of a model trained with --method dynabert")
    parser.add_argument("--width", type=float, required=True, help="width multiplier, e.g. 0.25")
    parser.add_argument("--depth", type=float, required=True, help="depth multiplier, e.g. 0.5")
    parser.add_argument("--output", required=True, help="folder to write the model to")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")


def _extract(args) -> dict:
    from .standalone import extract_to

    return extract_to(args.model, args.width, args.depth, args.output, args.overwrite,
                      args.trust_remote_code)  # fmt: skip


def _extract_report(metrics: dict) -> str:
    scores = "".join(f"; {split} score {v['score']:.4f} in training"
                     for split, v in metrics.get("dev", {}).items())  # fmt: skip
    return (
        f"extracted width {metrics['width']:g}, depth {metrics['depth']:g}: "
        f"{metrics['layers']} layers, {metrics['parameters'] / 1e6:.1f}M parameters "
        f"(of {metrics['source_parameters'] / 1e6:.1f}M){scores} -> {metrics['output']}"
    )


EXTRACT = MethodCommand(
    "extract",
    "save one sub-network of a DynaBERT model as its own model",
    _extract_arguments,
    _extract,
    _extract_report,
)

register_method(
    "dynabert",
    DynaBERTConfig,
    build,
    summary="one model whose width x depth sub-networks share weights, rewired by importance; "
    "'theseus extract' cuts out any size; each of its 2-3 stages trains --epochs",
    paper="Hou et al., NeurIPS 2020 (DynaBERT), without TinyBERT data augmentation",
    report=report,
    variants=variants,
    summary_lines=summary_lines,
    card_lines=card_lines,
    commands=[EXTRACT],
    unlabelled="stages 1-2 (distillation alone): every sub-network's KL to the teacher's "
    "logits (MSE for a score) and its hidden states; --final-finetune's stage has no "
    "teacher, and they carry no loss there",
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
