"""The data of a sentence-embedding run: unlabelled training sentences, and the pairs (or
held-out sentences) it is scored on.

Sentences come from a .txt file (one per line), the text columns of a .csv/.tsv/.jsonl
file, or a Hub dataset; empty lines and exact duplicates are dropped and counted. Pair
files are STS-B style: two sentences and a similarity score per row.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.config import DataConfig
from ..data.readers import DataError, iter_rows, read_lines
from ..data.tasks import Task
from .config import PAIR_COLUMNS, PAIR_LABEL, EmbeddingConfig

# Text columns tried, in order, when --text-columns is not given.
DEFAULT_TEXT_COLUMNS = ("text", "sentence")
HELD_OUT_SEED = 0  # fixed: every run (and seed) on the same data holds out the same sentences

# The two ways a run is scored (Task.metric): pairs by the Spearman correlation of the
# cosines with the gold scores, held-out sentences by the cosine to the teacher.
PAIRS = Task("sts-pairs", PAIR_COLUMNS, PAIR_LABEL, None, "spearman_cosine")
HELD_OUT = Task("held-out", ("text",), "", None, "teacher_cosine")

Pair = tuple[str, str, float]


@dataclass
class SentenceData:
    """Training sentences; scored splits, each a list of pairs or of sentences."""

    train: list[str]
    dev: dict[str, list]
    test: list[Pair] | None
    task: Task
    sources: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # empty lines, duplicates
    held_out: int = 0  # sentences kept out of training to score on
    unused: int = 0  # sentences beyond --max-train-samples

    def describe(self, lengths: list[int], max_length: int) -> str:
        """One line on the training sentences: how many, what was dropped, how long."""
        dropped = ", ".join(f"{n} {what}" for what, n in self.dropped.items() if n)
        aside = [f"{self.held_out} held out to score"] if self.held_out else []
        aside += [f"{self.unused} beyond --max-train-samples"] if self.unused else []
        return (
            f"training sentences: {len(self.train)}"
            + (f" ({dropped} dropped)" if dropped else "")
            + "".join(f"; {text}" for text in aside)
            + self._lengths(np.asarray(lengths), max_length)
        )

    @staticmethod
    def _lengths(sizes: np.ndarray, max_length: int) -> str:
        over = float((sizes >= max_length).mean()) if len(sizes) else 0.0
        return (
            f"; tokens per sentence: mean {sizes.mean():.1f}, median {np.median(sizes):.0f}, "
            f"95th percentile {np.percentile(sizes, 95):.0f}, max {sizes.max()}; "
            f"{100 * over:.1f}% cut at --max-length {max_length}"
        )


def read_sentence_data(data: DataConfig, embedding: EmbeddingConfig) -> SentenceData:
    """The training sentences and the splits to score, as the flags say."""
    if data.task or data.data_dir:
        raise DataError(
            "--embedding reads unlabelled sentences, not a GLUE task: pass --train-file "
            "(sentences) and --dev-file/--test-file (scored pairs) instead of --task/--data-dir"
        )
    if not data.train_file and not data.dataset:
        raise DataError("--embedding needs training sentences: pass --train-file or --dataset")
    raw = _read_training(data)
    sentences, dropped = _clean(raw)
    if not sentences:
        raise DataError(f"no sentences to train on in {data.train_file or data.dataset}")
    sources = {"train": data.train_file or data.dataset}
    test = _read_pairs(data.test_file, data, embedding) if data.test_file else None
    if data.test_file:
        sources["test"] = data.test_file
    if data.dev_file:
        dev = {"dev": _read_pairs(data.dev_file, data, embedding)}
        sources["dev"] = data.dev_file
        return SentenceData(sentences, dev, test, PAIRS, sources, dropped)
    train, held = hold_out(sentences, embedding.held_out)
    sources["dev"] = f"{len(held)} held-out training sentences"
    return SentenceData(train, {"dev": held}, test, HELD_OUT, sources, dropped, len(held))


def scored_task(data: DataConfig) -> Task:
    """How a run is scored, which the flags decide before any data is read: pairs when a
    --dev-file is given, else held-out sentences."""
    return PAIRS if data.dev_file else HELD_OUT


def reported_pairs(data: DataConfig, embedding: EmbeddingConfig) -> dict[str, list[Pair]]:
    """The pair file a run is reported on, by split name: the test file, else the dev file
    (none when neither is given)."""
    split, path = ("test", data.test_file) if data.test_file else ("dev", data.dev_file)
    return {split: _read_pairs(path, data, embedding)} if path else {}


def _read_pairs(path: str, data: DataConfig, embedding: EmbeddingConfig) -> list[Pair]:
    """A pair file's rows, in the columns the flags name."""
    columns = tuple(embedding.pair_columns or PAIR_COLUMNS)
    return read_pairs(Path(path), columns, data.label_column or PAIR_LABEL)


def hold_out(sentences: list[str], count: int) -> tuple[list[str], list[str]]:
    """`count` sentences drawn (seeded, the same for every run) out of `sentences`; at least
    one is left to train on."""
    if count >= len(sentences):
        raise DataError(
            f"--held-out {count} leaves nothing to train on ({len(sentences)} sentences): pass "
            "a smaller --held-out, or a --dev-file of scored pairs"
        )
    picked = set(random.Random(HELD_OUT_SEED).sample(range(len(sentences)), count))
    train = [s for i, s in enumerate(sentences) if i not in picked]
    held = [s for i, s in enumerate(sentences) if i in picked]
    return train, held


def _read_training(data: DataConfig) -> list[str]:
    if data.dataset:
        return _hub_sentences(data.dataset, data.dataset_config, data.text_columns)
    path = Path(data.train_file)
    if path.suffix == ".txt":
        return read_lines(path)
    return _column_sentences(path, data.text_columns)


def sentence_lines(path: Path) -> list[str]:
    """A .txt file's sentences: its non-empty lines, stripped, each once, in order."""
    return _clean(read_lines(path))[0]


def _column_sentences(path: Path, columns: list[str] | None) -> list[str]:
    sentences, chosen = [], None
    for line, row in iter_rows(path):
        if chosen is None:
            chosen = _text_columns(row, columns, str(path))
        missing = [c for c in chosen if c not in row]
        if missing:
            raise DataError(f"{path}:{line}: no column {missing[0]!r}: pass --text-columns")
        sentences += [_text(row[c]) for c in chosen]
    return sentences


def _hub_sentences(dataset: str, config: str | None, columns: list[str] | None) -> list[str]:
    import datasets

    try:
        rows = datasets.load_dataset(dataset, config, split="train")
    except Exception as error:  # datasets raises many types for a bad id or network
        raise DataError(f"cannot load split 'train' of dataset '{dataset}': {error}") from None
    chosen = _text_columns(dict.fromkeys(rows.column_names), columns, f"dataset '{dataset}'")
    return [_text(row[c]) for row in rows for c in chosen]


def _text_columns(row: dict, columns: list[str] | None, where: str) -> list[str]:
    """The columns holding sentences: those given, else the first default one present."""
    if columns:
        missing = [c for c in columns if c not in row]
        if missing:
            raise DataError(
                f"{where} has no column {missing[0]!r}; its columns are "
                f"{', '.join(map(repr, row))}: pass --text-columns"
            )
        return list(columns)
    for name in DEFAULT_TEXT_COLUMNS:
        if name in row:
            return [name]
    raise DataError(
        f"{where} has no text column ({' or '.join(DEFAULT_TEXT_COLUMNS)}); its columns are "
        f"{', '.join(map(repr, row))}: pass --text-columns"
    )


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _clean(raw: list[str]) -> tuple[list[str], dict[str, int]]:
    """The non-empty sentences, each once, in first-seen order; and what was dropped."""
    kept = [s.strip() for s in raw if s.strip()]
    unique = list(dict.fromkeys(kept))
    return unique, {"empty": len(raw) - len(kept), "duplicate": len(kept) - len(unique)}


def read_pairs(path: Path, columns: tuple[str, str], label: str) -> list[Pair]:
    """An STS-style file's (sentence, sentence, score) rows."""
    pairs = []
    for line, row in iter_rows(path):
        missing = [c for c in (*columns, label) if c not in row]
        if missing:
            raise DataError(
                f"{path}:{line}: no column {missing[0]!r}; columns are "
                f"{', '.join(map(repr, row))}: pass --pair-columns/--label-column"
            )
        try:
            score = float(row[label])
        except (TypeError, ValueError):
            raise DataError(
                f"{path}:{line}: score {row[label]!r} in column {label!r} is not a number"
            ) from None
        pairs.append((_text(row[columns[0]]), _text(row[columns[1]]), score))
    if len(pairs) < 2:
        raise DataError(f"{path} holds {len(pairs)} scored pair(s): a correlation needs 2")
    return pairs
