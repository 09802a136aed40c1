"""What a run needs before any method trains: the data read, checked and encoded, the model's
labels checked against the task, and a model scored. The jobs (`commands`, `compare`) and
deployment (`deploy/export`) build on it; it imports no job."""

from __future__ import annotations

import itertools
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass

from transformers import PreTrainedModel

from .data import TaskData, load_task_data
from .data.config import DataConfig
from .data.loading import encode, make_loader
from .data.unlabelled import UnlabelledConfig, read_unlabelled
from .methods import MethodContext
from .models import ModelError, fit_max_length, load_model
from .pooling import pooling_note, pretraining_pooling, say
from .training import TrainingConfig, evaluate, make_accelerator


def read_data(data: DataConfig, training: TrainingConfig, model_labels=None, need_train=True):
    """The task's data as `data` says, with `model_labels` (the model's own label names,
    when it has some) deciding the label order; says where splits are empty."""
    task_data = load_task_data(
        **asdict(data),
        model_labels=model_labels,
        max_train_samples=training.max_train_samples,
        need_train=need_train,
    )
    say(task_data.empty_note())
    return task_data


@dataclass
class Prepared:
    """What compress and compare do before any method trains: the predecessor loaded and
    checked, the data read and encoded, and the predecessor's own scores."""

    training: TrainingConfig  # max_length fitted to the predecessor
    predecessor: PreTrainedModel
    tokenizer: object
    trust_remote_code: bool
    task_data: TaskData
    accelerator: object
    features: dict  # each scored split's encoded examples
    train_features: list[dict]
    before: dict  # the predecessor's scores per split
    embedding: typing.Any = None  # the EmbeddingConfig of a sentence-embedding run
    unlabelled: UnlabelledConfig | None = None  # texts for the teacher term, when given

    def labelled_features(self) -> list[dict]:
        """The encoded training rows that have labels: all but the unlabelled ones, which
        follow them (a sentence-embedding run's sentences are all its rows)."""
        task_data = self.task_data
        others = len(task_data.unlabelled) + len(task_data.augmented)
        return self.train_features[: len(self.train_features) - others]

    def context(self, training: TrainingConfig) -> MethodContext:
        """A method's view of the run, with batches drawn under `training` (its seed)."""
        return MethodContext(
            self.predecessor,
            training.seed,
            self.task_data.task,
            self.trust_remote_code,
            dev_batches(self.features, self.tokenizer, training),
            self.accelerator.device,
            # The labelled examples alone (RefBERT stores them, with their labels).
            train_batches(self.labelled_features(), self.tokenizer, training),
            self.tokenizer,
        )


def prepare(
    model: str,
    data: DataConfig,
    training: TrainingConfig,
    trust_remote_code: bool,
    check: Callable[[MethodContext], None],
    unlabelled: UnlabelledConfig | None = None,
) -> Prepared:
    """Load the predecessor, run `check` on it (a bad size or architecture fails now, not
    after reading data and scoring the model), then read, check and encode the data;
    `unlabelled` texts join the training rows after the labelled ones."""
    predecessor, tokenizer = load_model(model, trust_remote_code)
    training = fit_max_length(training, predecessor, model)
    check(MethodContext(predecessor, training.seed, None, trust_remote_code))
    say(pooling_note(model, pretraining_pooling(model, predecessor.config)))
    task_data = read_data(data, training, model_labels(predecessor))
    check_labels(predecessor, task_data)
    accelerator = make_accelerator(training)
    add_unlabelled(task_data, unlabelled, predecessor, tokenizer, training.seed,
                   trust_remote_code, accelerator.device)  # fmt: skip
    features = encode_splits(task_data, tokenizer, training)
    before = score(predecessor, features, tokenizer, training, task_data, accelerator)
    train_features = encode(task_data.training_rows(), tokenizer, training.max_length,
                            task_data.task.is_regression)  # fmt: skip
    return Prepared(training, predecessor, tokenizer, trust_remote_code, task_data,
                    accelerator, features, train_features, before,
                    unlabelled=unlabelled)  # fmt: skip


def add_unlabelled(
    task_data: TaskData,
    unlabelled: UnlabelledConfig | None,
    predecessor=None,
    tokenizer=None,
    seed: int = 42,
    trust_remote_code: bool = False,
    device="cpu",
) -> None:
    """Read the unlabelled texts into `task_data` (in its task's text columns), build or
    read back the augmented set (drawn from `seed`), and say what the run trains on."""
    if unlabelled is None:
        return
    found = read_unlabelled(unlabelled, task_data.task)
    if found is not None:
        task_data.unlabelled = found.examples
        task_data.unlabelled_source, task_data.unlabelled_empty = found.source, found.empty
    if unlabelled.augment:
        from .data.augment import augment_training

        augmented = augment_training(task_data.train, unlabelled.augment,
                                     unlabelled.augment_model, predecessor, tokenizer, seed,
                                     trust_remote_code, device)  # fmt: skip
        task_data.augmented = augmented.examples
        say(augmented.describe(unlabelled.augment))
    say(task_data.examples_note())


def encode_splits(task_data: TaskData, tokenizer, training: TrainingConfig) -> dict:
    """Tokenised dev splits, plus "test" when a test file was given."""
    splits = dict(task_data.dev)
    if task_data.test:
        splits["test"] = task_data.test
    regression = task_data.task.is_regression
    return {
        split: encode(examples, tokenizer, training.max_length, regression)
        for split, examples in splits.items()
    }


def dev_batches(features: dict, tokenizer, training: TrainingConfig):
    """A function giving every dev split's labelled batches (for `MethodContext`)."""
    loaders = [
        make_loader(f, tokenizer, training.eval_batch_size, False)
        for split, f in features.items()
        if split != "test"
    ]
    return lambda: itertools.chain.from_iterable(loaders)


def train_batches(features: list[dict], tokenizer, training: TrainingConfig):
    """A function giving the training split's labelled batches in file order."""
    loader = make_loader(features, tokenizer, training.eval_batch_size, False)
    return lambda: iter(loader)


def score(model, features: dict, tokenizer, training, task_data: TaskData, accelerator) -> dict:
    """Metrics of `model` on each encoded split."""
    return {
        split: evaluate(
            model,
            accelerator.prepare(make_loader(f, tokenizer, training.eval_batch_size, False)),
            task_data.task,
            accelerator,
        )
        for split, f in features.items()
    }


def model_labels(model: PreTrainedModel) -> list[str] | None:
    """The label names the model's config gives, or None where it names none."""
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    # from_pretrained invents LABEL_0.. when a checkpoint names none; those mean nothing.
    return None if all(label == f"LABEL_{i}" for i, label in enumerate(labels)) else labels


def check_labels(model: PreTrainedModel, task_data: TaskData) -> None:
    """Refuse a model whose output count is not the task's label count."""
    task = task_data.task
    if model.config.num_labels != task.num_labels:
        raise ModelError(
            f"the model has {model.config.num_labels} output label(s) but task '{task.name}' "
            f"has {task.num_labels}: pass the model fine-tuned on this task "
            "('theseus finetune' first)"
        )


def speed_length(model: PreTrainedModel, wanted: int = 128) -> int:
    """A sequence length the model accepts, at most `wanted`."""
    # RoBERTa-style position ids start after the padding index: leave two positions spare.
    positions = getattr(model.config, "max_position_embeddings", 512) - 2
    return min(wanted, positions)
