"""What an embedding run reports besides the loop's scores: sentence-transformers' own
evaluator on the pairs the run is reported on (the test file, else the dev file), for the
predecessor and the student, as their users compute it (the model as `SentenceTransformer`
encodes, at its own token limit, in fp32)."""

from __future__ import annotations

from ..methods.registry import ReportInput
from .data import Pair
from .model import SentenceEncoder


def pair_report(splits: dict[str, list[Pair]], report: ReportInput) -> dict:
    """metrics.json's `sentence_transformers` entry: per split, both models' Spearman and
    Pearson correlations of cosine similarities (fractions), and the retention."""
    if not splits:
        return {}
    entry = {}
    for split, pairs in splits.items():
        before = pair_scores(report.predecessor, split, pairs)
        after = pair_scores(report.model, split, pairs)
        retention = 100 * after["spearman_cosine"] / before["spearman_cosine"]
        entry[split] = {"predecessor": before, "student": after,
                        "retention_percent": round(retention, 2)}  # fmt: skip
    return {"sentence_transformers": entry}


def pair_scores(encoder: SentenceEncoder, name: str, pairs: list[Pair]) -> dict[str, float]:
    """sentence-transformers' EmbeddingSimilarityEvaluator on `pairs`, cosine similarity."""
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
    )

    first, second, scores = (list(column) for column in zip(*pairs, strict=True))
    evaluator = EmbeddingSimilarityEvaluator(
        first, second, scores, batch_size=64, name=name, similarity_fn_names=["cosine"],
        write_csv=False,
    )  # fmt: skip
    model = encoder.sentence_transformer
    was_training = model.training
    try:
        values = evaluator(model)
    finally:
        model.train(was_training)
    return {key: float(values[f"{name}_{key}"]) for key in ("spearman_cosine", "pearson_cosine")}
