"""The dev split as the probes read it: encoded with a model's tokenizer, scored by the task's
official metric (imported by the probe scripts beside this file)."""

from __future__ import annotations

import argparse

import numpy as np
import torch
from transformers import AutoTokenizer

from bert_theseus.commands import DataConfig, read_data
from bert_theseus.data.loading import encode
from bert_theseus.metrics import compute_metrics
from bert_theseus.training import TrainingConfig


def dev_features(model: str, task: str, data_dir: str, max_length: int = 128):
    """The first dev split's examples encoded by `model`'s tokenizer, its tokenizer and task."""
    tokenizer = AutoTokenizer.from_pretrained(model)
    data = read_data(DataConfig(task=task, data_dir=data_dir), TrainingConfig(), need_train=False)
    regression = data.task.is_regression
    features = encode(next(iter(data.dev.values())), tokenizer, max_length, regression)
    return features, tokenizer, data.task


def train_features(model: str, task: str, data_dir: str, examples: int, max_length: int = 128):
    """The first `examples` training examples (file order), encoded by `model`'s tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(model)
    data = read_data(DataConfig(task=task, data_dir=data_dir), TrainingConfig())
    return encode(data.train[:examples], tokenizer, max_length, data.task.is_regression)


@torch.no_grad()
def outputs(model, batches) -> np.ndarray:
    """The model's logits over `batches`, in eval mode, as float32."""
    model.eval()
    return torch.cat([model(**batch).logits.float() for batch in batches]).numpy()


def score(outputs: np.ndarray, labels: np.ndarray, task) -> float:
    """The task's dev score x 100 from logits (a regression's single column, or class ids)."""
    predictions = outputs[:, 0] if task.is_regression else outputs.argmax(1)
    return 100 * compute_metrics(task.metric, predictions, labels)["score"]


def probe_parser(doc: str, reference: str) -> argparse.ArgumentParser:
    """The arguments every model-against-model probe takes: the `reference` model (the
    teacher or predecessor), the students measured against it, the task and its data."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument(reference)
    parser.add_argument("students", nargs="+")
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    return parser
