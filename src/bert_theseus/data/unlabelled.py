"""More data for the teacher term: the user's unlabelled in-domain texts (and TinyBERT's
augmented ones, `data.augment`).

They join the training set after the labelled examples, each with a sentinel label
(`UNLABELLED_CLASS` for classes, NaN for a score), so they shuffle with the rest and the
teacher cache (keyed by example index) covers them; the task loss skips them
(`losses.task_loss`), the teacher's outputs teach on them. Which part of a method's loss
they reach is the method's to say (`MethodSpec.unlabelled`). Light to import: the CLI's
parser reads the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .readers import DataError, Example, iter_rows, read_lines
from .tasks import Task

# The label of a row without one (classes): what PyTorch's cross-entropy ignores by default.
UNLABELLED_CLASS = -100


@dataclass
class UnlabelledConfig:
    """Rows for the teacher term alone (compress and compare): texts without labels, and
    augmented copies of the training examples."""

    unlabeled_file: str | None = field(
        default=None,
        metadata={
            "help": "teacher-only texts, or --unlabeled-dataset ID; a .txt file (one text a "
            "line) or a .csv/.tsv/.jsonl with the task's text columns, whose rows train the "
            "teacher term alone"
        },
    )
    unlabeled_dataset: str | None = field(
        default=None,
        metadata={
            "help": "a Hub dataset whose train split's text columns are such texts",
            "brief": False,  # compress --help names it in --unlabeled-file's line
        },
    )
    augment: int | None = field(  # None: none (0 refused with --augment-model)
        default=None,
        metadata={
            "help": "N new texts per example, or by --augment-model NAME; TinyBERT's "
            "augmentation (each word replaced with p 0.4 by one of 15 candidates: the nearest "
            "words in the predecessor's input embeddings, or a masked LM's), for the teacher "
            "term alone"
        },
    )
    augment_model: str | None = field(
        default=None,
        metadata={
            "help": "a masked language model (Hub id or folder) whose top words replace "
            "single-piece words, as in TinyBERT",
            "brief": False,  # compress --help names it in --augment's line
        },
    )

    def given(self) -> bool:
        return bool(self.unlabeled_file or self.unlabeled_dataset or self.augment
                    or self.augment_model)  # fmt: skip

    def validate(self) -> None:
        from .augment import check_count

        if self.unlabeled_file and self.unlabeled_dataset:
            raise DataError("give --unlabeled-file or --unlabeled-dataset, not both")
        check_count(self.augment, self.augment_model)


def not_a_teacher_method(method: str, supported: list[str]) -> str:
    """The one line that refuses unlabelled texts for a method without a teacher term."""
    return (
        f"method '{method}' has no teacher term for unlabelled or augmented texts to train: "
        f"with --unlabeled-file, --unlabeled-dataset or --augment use --method(s) "
        f"{', '.join(supported)}"
    )


NOT_FOR_EMBEDDING = (
    "--unlabeled-file, --unlabeled-dataset and --augment add texts to a classifier's "
    "distillation; a "
    "sentence-embedding run (--embedding) learns from unlabelled --train-file sentences "
    "already: put the texts there"
)


@dataclass
class Unlabelled:
    """The unlabelled rows read, where from, and how many were dropped for an empty text."""

    examples: list[Example]
    source: str
    empty: int = 0


def sentinel(task: Task) -> int | float:
    """The label an unlabelled row carries: one no task loss can take for a real label."""
    return math.nan if task.is_regression else UNLABELLED_CLASS


def read_unlabelled(config: UnlabelledConfig, task: Task) -> Unlabelled | None:
    """The rows `config` names, in `task`'s text columns (None when it names none); rows
    with an empty text are dropped and counted, a source with no text at all refused."""
    if config.unlabeled_file:
        path = Path(config.unlabeled_file)
        rows, source = _file_rows(path, task), str(path)
    elif config.unlabeled_dataset:
        rows, source = _hub_rows(config.unlabeled_dataset, task), config.unlabeled_dataset
    else:
        return None
    kept = [texts for texts in rows if all(text.strip() for text in texts)]
    if not kept:
        raise DataError(
            f"{source} holds no text for the teacher ({len(rows)} rows, all empty): check the "
            "file, or its --text-columns"
        )
    label = sentinel(task)
    return Unlabelled([(texts, label) for texts in kept], source, len(rows) - len(kept))


def _file_rows(path: Path, task: Task) -> list[tuple[str, ...]]:
    if path.suffix != ".txt":
        return _table_rows(path, task)
    if len(task.text_columns) != 1:
        raise DataError(
            f"{path} holds one text a line, but task '{task.name}' takes a pair of texts "
            f"({', '.join(task.text_columns)}): give a .csv/.tsv/.jsonl with those columns"
        )
    return [(line,) for line in read_lines(path)]


def _table_rows(path: Path, task: Task) -> list[tuple[str, ...]]:
    """The task's text columns of every row; a label column, if any, is not read."""
    rows = []
    for line, row in iter_rows(path):
        missing = [c for c in task.text_columns if c not in row]
        if missing:
            raise DataError(
                f"{path}:{line}: no text column {', '.join(map(repr, missing))}; columns are "
                f"{', '.join(map(repr, row))}: pass --text-columns, or use those names"
            )
        rows.append(tuple(_text(row[c]) for c in task.text_columns))
    return rows


def _hub_rows(dataset: str, task: Task) -> list[tuple[str, ...]]:
    """The text columns of a Hub dataset's train split (or a local dataset folder's)."""
    import datasets

    try:
        data = datasets.load_dataset(dataset, split="train")
    except Exception as error:  # datasets raises many types for a bad id or the network
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot load split 'train' of dataset '{dataset}': {first}") from None
    missing = [c for c in task.text_columns if c not in data.column_names]
    if missing:
        raise DataError(
            f"dataset '{dataset}' has no text column {', '.join(map(repr, missing))}; columns "
            f"are {', '.join(map(repr, data.column_names))}: pass --text-columns"
        )
    return [tuple(_text(row[c]) for c in task.text_columns) for row in data]


def _text(value) -> str:
    return "" if value is None else str(value)
