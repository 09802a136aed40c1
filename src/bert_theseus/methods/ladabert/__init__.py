"""LadaBERT (Mao et al., COLING 2020): SVD factorisation, magnitude pruning and layer-wise
distillation, in small steps, at the predecessor's own depth and width.

Stage "factorise" replaces every encoder weight matrix by its truncated SVD at the rank that
keeps P_svd (and the word-embedding table at P_embd), then recovers; each stage
"prune-i" prunes the factors by magnitude to the next kept fraction of the geometric
schedule 1 -> P_weight, then recovers; stage "recover" trains at the final size for the
rest of the budget. Every recovery is TinyBERT's layer-wise distillation from the frozen
predecessor. The result is a compact model (low-rank layers, pruned entries stored as zeros).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...lazy import lazy_exports
from ..registry import ReportInput, register_method
from .config import PRESETS, LadaBERTConfig

if TYPE_CHECKING:
    from ...training.stages import Stage


def build(context, config: LadaBERTConfig) -> list[Stage]:
    from ...training.stages import Stage
    from .compression import factorised, pruning_scales
    from .method import LadaBERTMethod
    from .pruning import Masks

    keeps = config.keep_schedule()
    teacher, regression = context.predecessor, context.regression
    share = config.compress_share / (1 + len(keeps))  # the SVD and each pruning step alike

    def factorise(predecessor):
        student = factorised(predecessor, config, context.train_batches)
        student = student.to(context.device)
        return student, LadaBERTMethod(student, teacher, config, None, regression, "factorise")

    def prune(keep: float | None, name: str, recover: bool = False):
        def start(model):
            masks, model = None, model.to(context.device)  # calibrate where the run trains
            if keep is not None:
                # The recovery keeps the last step's mask: the non-zero entries, by |w|.
                scales = None if recover else pruning_scales(model, config, context.train_batches)
                masks = Masks(model, keep, scales)
            return model, LadaBERTMethod(model, teacher, config, masks, regression, name)

        return start

    stages = [Stage("factorise", factorise, share=share)]
    for i, keep in enumerate(keeps):
        stages.append(Stage(f"prune-{i + 1}", prune(keep, f"prune-{i + 1}"), share=share))
    final = keeps[-1] if keeps else None  # the last pruning's zeros stay zero
    recover = prune(final, "recover", recover=True)
    stages.append(Stage("recover", recover, share=1 - config.compress_share))
    # Each stage is a fresh run of the loop, whose data order comes from its seed: with one
    # seed, stages shorter than an epoch would all train on the same first batches.
    for index, stage in enumerate(stages):
        stage.training["seed"] = context.seed + index
    return stages


def report(config: LadaBERTConfig, run: ReportInput) -> dict:
    """The budget table (Eq. 7 per group: target against stored and non-zero parameters) and
    the bytes the weights take."""
    from ...runs import write_atomic
    from .budget import budget_table, format_budget

    rows = budget_table(run.predecessor, run.model, config.kept())
    stored = sum(t.numel() * t.element_size() for t in run.model.state_dict().values())
    if run.folder is not None:
        text = f"# LadaBERT budget ({config.preset}; kept P_embd, P_svd, P_weight = "
        text += ", ".join(f"{p:.4g}" for p in config.kept()) + ")\n\n"
        text += format_budget(rows) + "\n\n" + iterations(run.metrics.get("stages", []))
        write_atomic(run.folder / "budget.md", text)
    return {"budget": rows, "weight_bytes": stored}


def iterations(stages: list[dict]) -> str:
    """Target against achieved kept fraction per group after every stage, as Markdown."""
    lines = [
        "## After each iteration: kept (target)",
        "",
        "| stage | dev score | embeddings | encoder | head | total |",
        "|---|---|---|---|---|---|",
    ]
    for stage in stages:
        rows = stage.get("summary", {}).get("budget")
        if not rows:
            continue
        score = next(iter(stage["dev"].values()))["score"]
        cells = " | ".join(f"{r['kept']:.1%} ({r['target_kept']:.1%})" for r in rows)
        lines.append(f"| {stage['stage']} | {score:.4f} | {cells} |")
    return "\n".join(lines) + "\n"


def summary_lines(metrics: dict) -> list[str]:
    """The CLI's summary of the budget: kept parameters per group against Eq. 7's target."""
    budget = metrics.get("budget")
    if not budget:
        return []
    lines = ["  budget (non-zero of the predecessor's, target in brackets):"]
    return lines + [
        f"    {r['group']}: {r['nonzero'] / 1e6:.2f}M of {r['parameters'] / 1e6:.2f}M, "
        f"{r['kept']:.1%} ({r['target_kept']:.1%})"
        for r in budget
    ]


def card_lines(metrics: dict, split: str) -> list[str]:
    """The model card's line on the budget (the table is the run's budget.md)."""
    budget = metrics.get("budget")
    if not budget:
        return []
    total = budget[-1]
    return [
        f"- {total['kept']:.1%} of the predecessor's parameters are non-zero (target "
        f"{total['target_kept']:.1%}); per group in budget.md."
    ]


register_method(
    "ladabert",
    LadaBERTConfig,
    build,
    summary="the predecessor's own shape with low-rank (SVD), magnitude-pruned matrices, "
    "recovered by layer-wise distillation after each step",
    paper="Mao et al., COLING 2020 (LadaBERT); TinyBERT's losses (Jiao et al., 2020)",
    report=report,
    summary_lines=summary_lines,
    card_lines=card_lines,
    unlabelled="the teacher's embedding output, attention scores, hidden states and logits; "
    "--label-weight's task term skips them",
)

__all__ = [
    "PRESETS",
    "LadaBERTConfig",
    "LadaBERTMethod",
    "Masks",
    "budget_table",
    "embedding_rank",
    "encoder_ranks",
    "factorised",
    "input_moments",
    "input_scales",
    "magnitude_mask",
    "prunable",
    "pruning_scales",
    "svd_rank",
]

# Loaded on first use (torch): registering the method reads its config alone.
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ("budget_table", "embedding_rank", "encoder_ranks", "format_budget", "svd_rank"),
            ".budget",
        ),  # fmt: skip
        **dict.fromkeys(("factorised", "pruning_scales"), ".compression"),
        **dict.fromkeys(("input_moments", "input_scales"), ".calibration"),
        "LadaBERTMethod": ".method",
        **dict.fromkeys(("Masks", "magnitude_mask", "prunable", "prunable_modules"), ".pruning"),
    },
)
