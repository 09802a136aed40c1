"""GLUE tasks: files, input columns, label sets and official metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A text-classification or regression task.

    `labels` are the label values as written in the files, in id order; `label_names`
    become the model's `id2label`. `labels=None` means regression (one output, MSE).
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...] | None
    # accuracy | matthews | f1_accuracy | pearson_spearman; embeddings: spearman_cosine
    # (scored pairs) | teacher_cosine (held-out sentences)
    metric: str
    label_names: tuple[str, ...] | None = None
    train_file: str = "train.tsv"
    dev_files: tuple[str, ...] = ("dev.tsv",)
    # Headerless files (CoLA) name their columns here.
    columns: tuple[str, ...] | None = None

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        names = self.label_names or self.labels or ("score",)
        return dict(enumerate(names))


_NLI = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task(
            "cola",
            ("sentence",),
            "label",
            ("0", "1"),
            "matthews",
            label_names=("unacceptable", "acceptable"),
            columns=("source", "label", "original_label", "sentence"),
        ),
        Task("sst2", ("sentence",), "label", ("0", "1"), "accuracy", ("negative", "positive")),
        Task(
            "mrpc",
            ("#1 String", "#2 String"),
            "Quality",
            ("0", "1"),
            "f1_accuracy",
            ("not_equivalent", "equivalent"),
        ),
        Task("stsb", ("sentence1", "sentence2"), "score", None, "pearson_spearman"),
        Task(
            "qqp",
            ("question1", "question2"),
            "is_duplicate",
            ("0", "1"),
            "f1_accuracy",
            ("not_duplicate", "duplicate"),
        ),
        Task(
            "mnli",
            ("sentence1", "sentence2"),
            "gold_label",
            ("entailment", "neutral", "contradiction"),
            "accuracy",
            dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
        ),
        Task("qnli", ("question", "sentence"), "label", _NLI, "accuracy"),
        Task("rte", ("sentence1", "sentence2"), "label", _NLI, "accuracy"),
        Task(
            "wnli",
            ("sentence1", "sentence2"),
            "label",
            ("0", "1"),
            "accuracy",
            ("not_entailment", "entailment"),
        ),
    ]
}

# Names users type for the same task.
ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli-mm": "mnli"}


class TaskError(ValueError):
    """Unknown task or inconsistent task settings."""


def get_task(name: str) -> Task:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in GLUE_TASKS:
        raise TaskError(
            f"unknown task '{name}': use one of {', '.join(GLUE_TASKS)}, or give --train-file, "
            "--dev-file, --text-columns and --label-column for your own data"
        )
    return GLUE_TASKS[key]


def custom_task(
    text_columns: tuple[str, ...],
    label_column: str,
    labels: tuple[str, ...] | None,
    name: str = "custom",
) -> Task:
    """A task for user files: classification over `labels`, or regression when None."""
    metric = "pearson_spearman" if labels is None else "accuracy"
    return Task(name, tuple(text_columns), label_column, labels, metric)
