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


def not_an_embedding_method(method: str, supported: list[str]) -> str:
    """The one line that refuses `method` for a sentence-embedding run."""
    return (
        f"method '{method}' does not train sentence-embedding models: with --embedding use "
        f"--method {' or '.join(supported)}"
    )


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
            "help": "the model is a sentence-transformers model: the student learns its "
            "sentence embeddings from unlabelled --train-file sentences"
        },
    )
    pair_columns: list[str] | None = field(
        default=None,
        metadata={"help": "the sentence columns of the pair files (default: sentence1 sentence2)"},
    )
    held_out: int = field(
        default=1000,
        metadata={"help": "without --dev-file: training sentences held out to select on"},
    )

    def validate(self) -> None:
        if self.pair_columns is not None and len(self.pair_columns) != 2:
            raise EmbeddingError(
                f"--pair-columns takes two column names, not {len(self.pair_columns)}: pass "
                "e.g. --pair-columns sentence1 sentence2"
            )
        if self.held_out < 1:
            raise EmbeddingError(f"--held-out {self.held_out} must be at least 1")
