"""RefBERT (Wang et al., IJCNN 2021), RECONSTRUCTED: only the paper's abstract and part of its
introduction are public, and no code. What is verified: for each input, the most similar other
training example is its reference; the teacher's representation of every reference is computed
once and stored; the student's first attention layer changes its keys and values to use it.
Everything else here is our reading (../shared/methods/refbert.md, section b), each piece a
setting: TF-IDF similarity over tokens, the predecessor's last-layer states (tokens or [CLS]),
keys and values extended by projected reference states, TinyBERT's prediction-stage
distillation (its intermediate stage first with `intermediate_share` above 0).

`refbert-none`, `refbert-zero` and `refbert-random` are its ablations, trained the same way:
no references (the plain student), all-zero states, a random training example's states.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...extra_inputs import ExtraInputs, register_extra_inputs
from ...lazy import lazy_exports
from ..registry import MethodError, ReportInput, register_method
from .config import RefBERTConfig

if TYPE_CHECKING:
    from ...training.stages import Stage

# The saved model's class joins transformers' Auto classes as transformers is imported
# (bert_theseus/__init__.py).


def build(context, config: RefBERTConfig, mode: str = "nearest") -> list[Stage]:
    """TinyBERT's intermediate stage (skipped at intermediate_share 0), then its prediction
    stage; `mode` is nearest (RefBERT), or an ablation: none, zero, random."""
    from ...training.stages import Stage
    from .method import RefBERTMethod
    from .model import ReferenceStudent
    from .references import References

    teacher, regression = context.predecessor, context.regression
    layers = config.teacher_layers(teacher)

    def method(student, stage):
        return RefBERTMethod(student, teacher, config, regression, stage, layers,
                             context.dev_batches)  # fmt: skip

    def student():
        model = config.student(context)
        if mode != "none":
            if context.train_batches is None:
                raise MethodError("RefBERT stores the training set's references: pass the "
                                  "training data (compress and compare do)")  # fmt: skip
            ignore = context.tokenizer.all_special_ids if context.tokenizer is not None else []
            references = References.build(
                teacher, context.train_batches(), config.reference_states, ignore, context.device
            )
            model = ReferenceStudent.wrap(model, references, mode)  # fmt: skip
        return model.to(context.device)

    def first(stage):
        def start(predecessor):
            model = student()
            return model, method(model, stage)

        return start

    def prediction(model):
        return model, method(model, "prediction")

    share = config.intermediate_share
    if share == 0:
        return [Stage("prediction", first("prediction"))]
    stages = [Stage("intermediate", first("intermediate"), share=share),
              Stage("prediction", prediction, share=1 - share)]  # fmt: skip
    for index, stage in enumerate(stages):  # each stage draws its own data order
        stage.training["seed"] = context.seed + index
    return stages


def build_none(context, config: RefBERTConfig) -> list[Stage]:
    return build(context, config, "none")


def build_zero(context, config: RefBERTConfig) -> list[Stage]:
    return build(context, config, "zero")


def build_random(context, config: RefBERTConfig) -> list[Stage]:
    return build(context, config, "random")


def report(config: RefBERTConfig, run: ReportInput) -> dict:
    """Storage, and retrieval against the student's own forward, timed apart and together
    (batch 32 at the run's length; median of 5 interleaved rounds)."""
    import statistics
    import time

    import torch

    from ...speed import random_batch
    from .model import ReferenceStudent

    model = run.model
    if not isinstance(model, ReferenceStudent):
        return {}
    model.eval()
    device = next(model.parameters()).device
    batch = random_batch(32, run.seq_length, model.student.config.vocab_size)
    batch = {k: v.to(device) for k, v in batch.items()}
    times = {"retrieval": [], "student": [], "together": []}
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=run.bf16):
        states, mask = model.retrieve(**batch)
        for _ in range(6):
            for name, call in (("retrieval", lambda: model.retrieve(**batch)),
                               ("student", lambda: model(**batch, reference_states=states,
                                                         reference_mask=mask)),
                               ("together", lambda: model(**batch))):  # fmt: skip
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    sizes = model.references.nbytes()
    return {
        "reference_bytes": sizes,
        "reference_latency_ms": {
            k: round(1000 * statistics.median(v[1:]), 2) for k, v in times.items()
        },  # fmt: skip
    }


RECONSTRUCTED = "RECONSTRUCTED from the abstract (no paper body, no code): "
# What unlabelled rows train (they are no references: those are the labelled training set).
REFBERT_UNLABELLED = (
    "the intermediate stage's embedding output, attention scores and hidden states, and the "
    "prediction stage's soft targets (regression: that stage learns the scores, not them)"
)

register_method(
    "refbert",
    RefBERTConfig,
    build,
    summary=RECONSTRUCTED + "the truncated student's first layer also attends to the stored "
    "predecessor states of the most similar training example; TinyBERT's distillation",
    paper="Wang et al., IJCNN 2021 (RefBERT), reconstructed; TinyBERT (Jiao et al., 2020)",
    report=report,
    unlabelled=REFBERT_UNLABELLED,
)
register_method(
    "refbert-none",
    RefBERTConfig,
    build_none,
    summary="RefBERT ablation: the same student and training, without references",
    paper="ablation of the RefBERT reconstruction (TinyBERT's task distillation)",
    unlabelled=REFBERT_UNLABELLED,
)
register_method(
    "refbert-zero",
    RefBERTConfig,
    build_zero,
    summary="RefBERT ablation: all-zero reference states (same shapes and masks)",
    paper="ablation of the RefBERT reconstruction",
    report=report,
    unlabelled=REFBERT_UNLABELLED,
)
register_method(
    "refbert-random",
    RefBERTConfig,
    build_random,
    summary="RefBERT ablation: a random training example's states as the reference",
    paper="ablation of the RefBERT reconstruction",
    report=report,
    unlabelled=REFBERT_UNLABELLED,
)


def _export_references(folder: Path):
    """An export's reference inputs, retrieved as the model did: from the references saved
    beside its graph, in the model's reference mode."""
    import json

    from .model import load_references, retrieve

    references = load_references(str(folder), {})
    mode = json.loads((folder / "config.json").read_text()).get("reference_mode", "nearest")

    def fill(batch: dict) -> dict:
        states, mask = retrieve(references, mode, batch["input_ids"], batch.get("attention_mask"))
        return {"reference_states": states, "reference_mask": mask}

    return fill


# Deployment runs an export's graph, which takes the references as inputs, and times the
# retrieval apart from the student (`theseus benchmark`).
register_extra_inputs(
    ExtraInputs(
        inputs=("reference_states", "reference_mask"),
        load=_export_references,
        model_step=lambda model: (
            model.export_inputs if getattr(model, "references", None) is not None else None
        ),
        step="retrieval",
        given="references given",
    )
)

__all__ = [
    "MODES",
    "RefBERTConfig",
    "RefBERTMethod",
    "ReferenceAttention",
    "ReferenceIndex",
    "ReferenceStudent",
    "ReferenceStudentConfig",
    "References",
    "student_of",
]

# Loaded on first use (torch, scikit-learn): registering the method reads its config alone.
__getattr__ = lazy_exports(
    __name__,
    {
        "RefBERTMethod": ".method",
        "student_of": ".method",
        **dict.fromkeys(
            (
                "MODES",
                "ReferenceAttention",
                "ReferenceStudent",
                "ReferenceStudentConfig",
                "register",
            ),
            ".model",
        ),  # fmt: skip
        "ReferenceIndex": ".references",
        "References": ".references",
    },
)
