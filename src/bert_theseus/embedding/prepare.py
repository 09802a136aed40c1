"""What a sentence-embedding run needs before a method trains: the predecessor loaded as a
`SentenceEncoder`, the sentences read and encoded with the teacher's embeddings as their
labels, the scored splits encoded, and the predecessor's own scores. The result is the
`Prepared` a classifier run gets, so the methods and the loop see one kind of run."""

from __future__ import annotations

from collections.abc import Callable

from ..data import TaskData
from ..data.config import DataConfig
from ..data.loading import PAIR
from ..methods import MethodContext
from ..models import fit_max_length
from ..pooling import say
from ..run_setup import Prepared, score
from ..training import TrainingConfig, make_accelerator
from .config import EmbeddingConfig
from .data import PAIRS, SentenceData, read_sentence_data, scored_task
from .model import SentenceEncoder, check_installed, load_encoder
from .teacher import teacher_embeddings


def prepare_embedding(
    model: str,
    data: DataConfig,
    embedding: EmbeddingConfig,
    training: TrainingConfig,
    trust_remote_code: bool,
    check: Callable[[MethodContext], None],
) -> Prepared:
    """Load the sentence-transformers predecessor, run `check` on it, then read the data,
    compute (or read back) the teacher's embeddings and score the predecessor."""
    check_installed()
    embedding.validate()
    predecessor = load_encoder(model, trust_remote_code)
    tokenizer = predecessor.tokenizer
    training = fit_max_length(training, predecessor, model)
    # The task is known from the flags: a method may refuse how the run is scored (the
    # target's width cut needs pairs) before anything is read or computed.
    check(MethodContext(predecessor, training.seed, scored_task(data), trust_remote_code))
    sentences = read_sentence_data(data, embedding)
    if training.max_train_samples:
        sentences.unused = max(0, len(sentences.train) - training.max_train_samples)
        sentences.train = sentences.train[: training.max_train_samples]
    encoded = tokenizer(sentences.train, truncation=True, max_length=training.max_length)
    say(sentences.describe([len(ids) for ids in encoded["input_ids"]], training.max_length))
    targets = teacher_embeddings(predecessor, sentences.train, tokenizer, training.max_length)
    say(targets.describe())
    train_features = [
        {**{key: values[i] for key, values in encoded.items()}, "labels": targets.embeddings[i]}
        for i in range(len(sentences.train))
    ]
    features = scored_features(sentences, predecessor, tokenizer, training.max_length)
    task_data = TaskData(sentences.task, [], {}, None, sentences.sources)
    accelerator = make_accelerator(training)
    before = score(predecessor, features, tokenizer, training, task_data, accelerator)
    return Prepared(training, predecessor, tokenizer, trust_remote_code, task_data,
                    accelerator, features, train_features, before, embedding)  # fmt: skip


def scored_features(
    sentences: SentenceData, teacher: SentenceEncoder, tokenizer, max_length: int
) -> dict[str, list[dict]]:
    """Each scored split encoded: pairs with their gold score as the label, held-out
    sentences with the teacher's embedding (fp32, computed now: a few of them). Test pairs
    beside held-out sentences are scored apart (`pair_scores`): one run, one metric."""
    from .teacher import embed

    splits = dict(sentences.dev)
    if sentences.test is not None and sentences.task is PAIRS:
        splits["test"] = sentences.test
    features = {}
    for split, rows in splits.items():
        if sentences.task is PAIRS:
            features[split] = encode_pairs(rows, tokenizer, max_length)
        else:
            encoded = tokenizer(rows, truncation=True, max_length=max_length)
            labels = embed(teacher, rows, tokenizer, max_length)
            features[split] = [
                {**{key: values[i] for key, values in encoded.items()}, "labels": labels[i]}
                for i in range(len(rows))
            ]
    return features


def encode_pairs(pairs: list, tokenizer, max_length: int) -> list[dict]:
    """Scored pairs as features: the first sentence's inputs, the second's under `pair_`."""
    first = tokenizer([a for a, _, _ in pairs], truncation=True, max_length=max_length)
    second = tokenizer([b for _, b, _ in pairs], truncation=True, max_length=max_length)
    return [
        {
            **{key: values[i] for key, values in first.items()},
            **{PAIR + key: values[i] for key, values in second.items()},
            "labels": float(score),
        }
        for i, (_, _, score) in enumerate(pairs)
    ]
