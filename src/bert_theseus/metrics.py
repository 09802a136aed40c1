"""GLUE's official metrics, and the single `score` used to select checkpoints.

`score` follows the paper's dev-table convention: MRPC and QQP average F1 and accuracy,
STS-B averages Pearson and Spearman, CoLA is Matthews correlation, the rest accuracy.
All values are fractions (0.915), not percentages.
"""

from __future__ import annotations

import warnings

import numpy as np


def compute_metrics(metric: str, predictions, labels) -> dict[str, float]:
    """Metrics for `metric` (accuracy | matthews | f1_accuracy | pearson_spearman).

    `predictions` are class ids, or scores for regression.

    >>> compute_metrics("f1_accuracy", [1, 0, 1], [1, 1, 1])["score"]
    0.7333...
    """
    # Imported here: scipy and scikit-learn (with its worker pool) are slow to import and
    # unneeded by anything that only builds or merges models.
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef

    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if metric == "teacher_cosine":  # embeddings against the teacher's, row by row
        return _against_teacher(predictions, labels)
    if metric == "spearman_cosine":  # cosines of sentence pairs against their gold scores
        scores = compute_metrics("pearson_spearman", predictions, labels)
        spearman, pearson = scores["spearman"], scores["pearson"]
        return {"spearman_cosine": spearman, "pearson_cosine": pearson, "score": spearman}
    if metric == "pearson_spearman":
        with warnings.catch_warnings():  # constant predictions early in training
            warnings.simplefilter("ignore")
            pearson = _finite(pearsonr(predictions, labels)[0]) if len(labels) > 1 else 0.0
            spearman = _finite(spearmanr(predictions, labels)[0]) if len(labels) > 1 else 0.0
        return {"pearson": pearson, "spearman": spearman, "score": (pearson + spearman) / 2}
    accuracy = float((predictions == labels).mean())
    if metric == "accuracy":
        return {"accuracy": accuracy, "score": accuracy}
    if metric == "matthews":
        mcc = float(matthews_corrcoef(labels, predictions))
        return {"matthews": mcc, "accuracy": accuracy, "score": mcc}
    if metric == "f1_accuracy":
        f1 = float(f1_score(labels, predictions, zero_division=0))
        return {"f1": f1, "accuracy": accuracy, "score": (f1 + accuracy) / 2}
    raise ValueError(f"unknown metric '{metric}'")


# Metrics that read whole outputs (embeddings), not one score or class per example.
VECTOR_METRICS = ("teacher_cosine",)


def row_cosines(a, b) -> np.ndarray:
    """The cosine of each row of `a` with the same row of `b`, in float64 (a zero row's is 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(axis=-1) / np.maximum(norms, 1e-12)


def _against_teacher(embeddings: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    """Mean cosine and mean squared error of each embedding to the teacher's."""
    a, b = embeddings.astype(np.float64), teacher.astype(np.float64)
    cosine = float(np.mean(row_cosines(a, b)))
    return {"cosine": cosine, "mse": float(np.mean((a - b) ** 2)), "score": cosine}


def _finite(value: float) -> float:
    # A constant prediction has no correlation; scipy returns NaN, a selection rule needs a number.
    return 0.0 if np.isnan(value) else float(value)


def constant_score(metric: str, labels, num_labels: int | None) -> float:
    """The best `score` a model that gives every example one answer can reach on `labels`.

    It is the floor a score must clear to show the model reads its input: the majority
    class's share for accuracy, 0 for Matthews correlation and for regression (a constant
    output has no correlation), and for F1 the better of the two constant answers.

    >>> constant_score("accuracy", [0, 1, 1, 1], 2)
    0.75
    """
    if metric == "teacher_cosine":  # the one embedding nearest to all the teacher's
        teacher = np.asarray(labels, dtype=np.float64)
        mean = (teacher / np.linalg.norm(teacher, axis=1, keepdims=True)).mean(axis=0)
        return compute_metrics(metric, np.broadcast_to(mean, teacher.shape), teacher)["score"]
    if num_labels is None:
        return 0.0
    return max(
        compute_metrics(metric, np.full(len(labels), c), labels)["score"] for c in range(num_labels)
    )
