"""Resolve where a run's data comes from, and turn examples into padded batches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .readers import (
    DataError,
    Example,
    iter_rows,
    missing_label,
    read_glue_split,
    read_hub_dataset,
    read_table,
)
from .tasks import Task, TaskError, custom_task, get_task


@dataclass
class TaskData:
    """A task with its train split and one or more dev splits (MNLI has two)."""

    task: Task
    train: list[Example]
    dev: dict[str, list[Example]]
    test: list[Example] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    # Per split, the examples with an empty text: kept, or dropped with `drop_empty`.
    empty: dict[str, int] = field(default_factory=dict)
    dropped_empty: bool = False
    # Per split, the rows dropped for an empty or NaN label (`drop_empty`; else refused).
    empty_labels: dict[str, int] = field(default_factory=dict)
    # Rows without a label, after `train` in training: they teach through the teacher's
    # outputs alone (`data.unlabelled`); where from, and how many were empty and dropped.
    unlabelled: list[Example] = field(default_factory=list)
    unlabelled_source: str | None = None
    unlabelled_empty: int = 0
    # TinyBERT's augmented copies of `train` (`data.augment`), with their sources' labels:
    # they train like unlabelled rows (a swapped word may flip the label), after those.
    augmented: list[Example] = field(default_factory=list)

    def training_rows(self) -> list[Example]:
        """What a run trains on, in the order the teacher cache indexes it: the labelled
        examples, then the rows for the teacher term alone (whose label is the sentinel)."""
        from .unlabelled import sentinel

        label = sentinel(self.task)
        return self.train + self.unlabelled + [(texts, label) for texts, _ in self.augmented]

    def example_counts(self) -> dict[str, int]:
        """The training examples by kind, as metrics.json, the card and compare report them."""
        return {"labelled": len(self.train), "unlabelled": len(self.unlabelled),
                "augmented": len(self.augmented)}  # fmt: skip

    def examples_note(self) -> str | None:
        """The line saying what a run trains on, where rows without labels join it."""
        if not self.unlabelled and not self.augmented:
            return None
        parts = []
        if self.unlabelled:
            empty = f", {self.unlabelled_empty} empty dropped" if self.unlabelled_empty else ""
            parts.append(f"{len(self.unlabelled):,} unlabelled texts from "
                         f"{self.unlabelled_source}{empty}")  # fmt: skip
        if self.augmented:
            parts.append(f"{len(self.augmented):,} augmented")
        return (
            f"data: {len(self.train):,} labelled training examples and {' and '.join(parts)} "
            "(teacher term only)"
        )

    def splits(self) -> dict[str, list[Example]]:
        named = {"train": self.train, **self.dev}
        return {**named, "test": self.test} if self.test is not None else named

    def empty_note(self) -> str | None:
        """A line on rows with an empty text (a tokenizer reads them as nothing), and one on
        rows dropped for an empty label, if any."""
        notes = []
        if self.empty:
            counts = _counts(self.empty)
            if self.dropped_empty:
                notes.append(
                    f"note: dropped rows with an empty text ({counts}) as --drop-empty asks"
                )
            else:
                notes.append(
                    f"note: rows with an empty text ({counts}) are kept; --drop-empty drops them"
                )
        if self.empty_labels:
            notes.append(
                f"note: dropped rows with an empty or NaN label ({_counts(self.empty_labels)}) "
                "as --drop-empty asks"
            )
        return "\n".join(notes) or None


def _counts(per_split: dict[str, int]) -> str:
    return ", ".join(f"{n} in {split}" for split, n in per_split.items())


def load_task_data(
    task: str | None = None,
    data_dir: str | None = None,
    train_file: str | None = None,
    dev_file: str | None = None,
    test_file: str | None = None,
    text_columns: list[str] | None = None,
    label_column: str | None = None,
    dataset: str | None = None,
    dataset_config: str | None = None,
    regression: bool = False,
    model_labels: list[str] | None = None,
    max_train_samples: int | None = None,
    need_train: bool = True,
    drop_empty: bool = False,
) -> TaskData:
    """Find the task and read its splits.

    Three sources: a GLUE folder (`task` + `data_dir`), your own files (`train_file`,
    `dev_file`, optional `text_columns`/`label_column`, with `task` naming a GLUE task or
    left out), or a Hub dataset id (`dataset`, with `task` or the columns).

    >>> load_task_data("sst2", data_dir="glue/SST-2")
    >>> load_task_data(train_file="train.jsonl", dev_file="dev.jsonl",
    ...                text_columns=["text"], label_column="label")
    """
    # Rows with an empty or NaN label: refused (None), or dropped and their lines kept here.
    unlabelled: dict[str, list[int]] = {}

    def drop(split: str) -> list[int] | None:
        return unlabelled.setdefault(split, []) if drop_empty else None

    glue = get_task(task) if task else None
    if glue and (text_columns or label_column):
        glue = custom_task(
            tuple(text_columns or glue.text_columns),
            label_column or glue.label_column,
            glue.labels,
            glue.name,
        )
    if dataset:
        resolved = glue or _custom(text_columns, label_column, regression, model_labels, None)
        splits = _hub_splits(dataset)
        data = TaskData(
            resolved,
            read_hub_dataset(dataset, dataset_config, "train", resolved, drop("train"))
            if need_train
            else [],
            {
                split: read_hub_dataset(dataset, dataset_config, split, resolved, drop(split))
                for split in splits
            },
            sources={"dataset": dataset},
        )
        return _count_empty_labels(data, unlabelled)
    if train_file or dev_file:
        if not dev_file or (need_train and not train_file):
            raise DataError("give both --train-file and --dev-file (evaluate needs --dev-file)")
        resolved = glue or _custom(
            text_columns, label_column, regression, model_labels, train_file or dev_file
        )
        data = TaskData(
            resolved,
            read_table(train_file, resolved, unlabelled=drop("train")) if need_train else [],
            {"dev": read_table(dev_file, resolved, unlabelled=drop("dev"))},
            sources={"train": str(train_file), "dev": str(dev_file)},
        )
    else:
        if glue is None:
            raise TaskError("no data: pass --task with --data-dir, or --train-file and --dev-file")
        if not data_dir:
            raise DataError(f"task '{glue.name}' needs --data-dir, the folder with its GLUE files")
        data = TaskData(
            glue,
            read_glue_split(data_dir, glue, glue.train_file, drop("train")) if need_train else [],
            {
                Path(f).stem: read_glue_split(data_dir, glue, f, drop(Path(f).stem))
                for f in glue.dev_files
            },
            sources={"data_dir": str(data_dir)},
        )
    if test_file:
        data.test = read_table(test_file, data.task, unlabelled=drop("test"))
        data.sources["test"] = str(test_file)
    if max_train_samples:
        data.train = data.train[:max_train_samples]
    return _count_empty(_count_empty_labels(data, unlabelled), drop_empty)


def _count_empty_labels(data: TaskData, unlabelled: dict[str, list[int]]) -> TaskData:
    data.empty_labels = {split: len(lines) for split, lines in unlabelled.items() if lines}
    return data


def _count_empty(data: TaskData, drop: bool) -> TaskData:
    for split, examples in data.splits().items():
        kept = [e for e in examples if all(text.strip() for text in e[0])]
        if len(kept) == len(examples):
            continue
        data.empty[split] = len(examples) - len(kept)
        if not drop:
            continue
        if not kept and (split != "train" or examples):
            raise DataError(f"every row of the {split} split has an empty text: check the columns")
        if split == "train":
            data.train = kept
        elif split == "test":
            data.test = kept
        else:
            data.dev[split] = kept
    data.dropped_empty = drop and bool(data.empty)
    return data


def _hub_splits(dataset: str) -> list[str]:
    # GLUE's MNLI on the Hub names its dev splits this way; everything else uses "validation".
    return ["validation_matched", "validation_mismatched"] if "mnli" in dataset else ["validation"]


def _custom(text_columns, label_column, regression, model_labels, path) -> Task:
    text_columns = tuple(text_columns or ("text",))
    label_column = label_column or "label"
    if regression:
        return custom_task(text_columns, label_column, None)
    labels = tuple(model_labels) if model_labels else _infer_labels(path, label_column)
    return custom_task(text_columns, label_column, labels)


def _infer_labels(path, label_column: str) -> tuple[str, ...]:
    """The sorted distinct labels of a file (numerically when they are all integers)."""
    if path is None:
        raise DataError("cannot infer labels: pass --task or train from a labelled file")
    seen = set(_raw_labels(Path(path), label_column))
    if not seen:
        raise DataError(f"{path} has no examples: the split is empty")
    is_int = all(label.lstrip("-").isdigit() for label in seen)
    return tuple(sorted(seen, key=int if is_int else str))


def _raw_labels(path: Path, label_column: str):
    """The file's labels; empty and NaN ones are not classes (read_table refuses or drops
    their rows)."""
    for line, row in iter_rows(path):
        if label_column not in row:
            raise DataError(f"{path}:{line}: no column {label_column!r}: pass --label-column")
        if not missing_label(row[label_column]):
            yield str(row[label_column]).strip()


def encode(examples: list[Example], tokenizer, max_length: int, regression: bool) -> list[dict]:
    """Tokenise once, without padding: batches are padded to their own longest example."""
    columns = list(zip(*(texts for texts, _ in examples), strict=True))
    encoded = tokenizer(*columns, truncation=True, max_length=max_length)
    features = []
    for index, (_, label) in enumerate(examples):
        item = {key: values[index] for key, values in encoded.items()}
        item["labels"] = float(label) if regression else int(label)
        features.append(item)
    return features


def features_digest(features: list[dict]) -> str:
    """A short digest of training rows (their token ids and labels, the teacher's targets
    where they are labels): a resume must train on the same rows, not just as many of them,
    and a file edited in place keeps its name and often its length."""
    digest = hashlib.blake2b(digest_size=8)
    for item in features:
        for key in sorted(item):
            value = item[key]
            if isinstance(value, torch.Tensor):
                digest.update(value.detach().float().cpu().numpy().tobytes())
            else:
                digest.update(repr(value).encode())
        digest.update(b"|")
    return digest.hexdigest()


EXAMPLE_INDEX = "example_index"
# Prefix of a second text's inputs in a feature (a scored pair of sentences): padded on its own.
PAIR = "pair_"


def pad(tokenizer, features: list[dict]) -> dict[str, torch.Tensor]:
    """One batch of `features`, padded to its longest example. A feature's second text
    (`pair_` inputs) is padded apart from the first; tensor labels (a teacher's embeddings)
    are stacked as they are."""
    vectors = isinstance(features[0].get("labels"), torch.Tensor)
    skip = ("labels",) if vectors else ()
    first = [{k: v for k, v in f.items() if not k.startswith(PAIR) and k not in skip}
             for f in features]  # fmt: skip
    padded = tokenizer.pad(first, return_tensors="pt")
    second = [{k[len(PAIR) :]: v for k, v in f.items() if k.startswith(PAIR)} for f in features]
    if second[0]:
        padded.update({PAIR + k: v for k, v in tokenizer.pad(second, return_tensors="pt").items()})
    if vectors:
        padded["labels"] = torch.stack([f["labels"] for f in features]).float()
    return padded


def make_loader(
    features: list[dict],
    tokenizer,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    indexed: bool = False,
) -> DataLoader:
    """A DataLoader with dynamic padding; shuffling is reproducible from `seed`. `indexed`
    adds each example's position in `features` to the batch, as `example_index`."""

    def collate(batch: list) -> dict[str, torch.Tensor]:
        if not indexed:
            return pad(tokenizer, batch)
        padded = pad(tokenizer, [feature for _, feature in batch])
        padded[EXAMPLE_INDEX] = torch.tensor([index for index, _ in batch])
        return padded

    items = list(enumerate(features)) if indexed else features
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        items, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator
    )


def first_inputs(batches: Iterable[dict], examples: int, device) -> Iterator[dict]:
    """The model inputs (labels dropped) of the first `examples` examples of `batches`, moved
    to `device`; the last batch is cut so exactly `examples` are given where there are as many.
    The probes that read a model on a few training inputs share this."""
    seen = 0
    for batch in batches:
        if seen >= examples:
            return
        inputs = {k: v[: examples - seen].to(device) for k, v in batch.items() if k != "labels"}
        seen += len(inputs["input_ids"])
        yield inputs
