"""The flags of the sentence-embedding objective (light to import: the CLI's parser reads
them without loading torch or sentence-transformers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# An STS-B style file: two sentences and a similarity score per row.
PAIR_COLUMNS = ("sentence1", "sentence2")
PAIR_LABEL = "score"


def is_sentence_transformers(path: str) -> bool:
    """Whether `path` is a sentence-transformers folder (it lists its modules)."""
    return (Path(path) / "modules.json").is_file()


class EmbeddingError(ValueError):
    """The model or the data cannot be used to train a sentence-embedding student; the
    message says what to pass instead."""


@dataclass
class EmbeddingConfig:
    """Train a sentence-embedding student: the predecessor's sentence embedding is the
    target, the data are unlabelled sentences (see `bert_theseus.embedding`)."""

    embedding: bool = field(
        default=False,
        metadata={
            "help": "the model is a sentence-transformers model: train the student on the "
            "MSE to its sentence embeddings, from unlabelled sentences (--train-file: .txt, "
            "one per line, or the --text-columns of a .csv/.tsv/.jsonl); --dev-file and "
            "--test-file are scored pair files (Spearman of cosines)"
        },
    )
    pair_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "the two sentence columns of the --dev-file/--test-file pair files "
            "(default: sentence1 sentence2; their score: --label-column, default score)"
        },
    )
    held_out: int = field(
        default=1000,
        metadata={
            "help": "without --dev-file: training sentences kept out of training and scored "
            "by the cosine to the teacher's embeddings (selection)"
        },
    )

    def validate(self) -> None:
        if self.pair_columns is not None and len(self.pair_columns) != 2:
            raise EmbeddingError(
                f"--pair-columns takes two column names, not {len(self.pair_columns)}: pass "
                "e.g. --pair-columns sentence1 sentence2"
            )
        if self.held_out < 1:
            raise EmbeddingError(f"--held-out {self.held_out} must be at least 1")
