"""Shared fixtures: a tiny tokenizer, tiny saved models and small task files built in code."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizerFast

sys.path.insert(0, str(Path(__file__).parent))
from tiny import VOCAB, tiny_model  # noqa: E402

# Tiny models gain nothing from threads, and OpenMP threads that spin while another process
# holds the cores make a 1 s test take a minute (seen on a 2-core machine).
torch.set_num_threads(1)

SHARED_GLUE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "glue"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(VOCAB - len(SPECIALS) - 2)] + ["good", "bad"]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokenizer")
    vocab = {token: index for index, token in enumerate(SPECIALS + WORDS)}
    BertTokenizerFast(vocab=vocab).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny BERT classifier saved like a fine-tuned predecessor (4 layers, 2 labels)."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    model = tiny_model("bert", layers=4)
    model.config.id2label = {0: "negative", 1: "positive"}
    model.config.label2id = {"negative": 0, "positive": 1}
    model.save_pretrained(folder)
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def dropout_bert_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny predecessor with dropout on, so a resume must restore the random state too."""
    folder = tmp_path_factory.mktemp("dropout-bert")
    tiny_model("bert", layers=4, dropout=0.1).save_pretrained(folder)
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


def sentence(rng: random.Random, label: int) -> str:
    # A learnable signal: the label word appears among random filler words.
    words = [rng.choice(WORDS[:-2]) for _ in range(rng.randint(3, 8))]
    words.insert(rng.randint(0, len(words)), "good" if label else "bad")
    return " ".join(words)


@pytest.fixture(scope="session")
def sst2_dir(tmp_path_factory) -> Path:
    """SST-2-format files (sentence<TAB>label, with header) with a learnable signal."""
    folder = tmp_path_factory.mktemp("SST-2")
    rng = random.Random(0)
    for split, rows in (("train", 64), ("dev", 24)):
        lines = ["sentence\tlabel"]
        for i in range(rows):
            label = i % 2
            lines.append(f"{sentence(rng, label)}\t{label}")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


def shared_glue(task_folder: str) -> Path:
    folder = SHARED_GLUE / task_folder
    if not (folder / "train.tsv").is_file():
        pytest.skip(f"real GLUE data not found at {folder} (it lives in ../shared/data)")
    return folder
