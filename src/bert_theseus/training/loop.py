"""The one training loop. Methods plug in their trainable parameters, loss and per-step hook.

It runs on Accelerate, so `accelerate launch theseus ...` spreads the same run over GPUs
or machines; on one CPU it is a plain loop with bf16 autocast.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from torch import nn
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from ..data.loading import EXAMPLE_INDEX, make_loader
from ..data.tasks import Task
from ..metrics import VECTOR_METRICS, compute_metrics
from .checkpoint import Checkpoint, list_checkpoints, restore_rng, save_checkpoint
from .config import TrainingConfig
from .progress import TrainingProgress


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was saved after the step in progress."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.step, self.checkpoint = step, checkpoint
        name = signal.Signals(signum).name
        where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint folder"
        super().__init__(
            f"stopped by {name} after step {step} ({where}): rerun the same "
            "command with --resume auto to continue"
        )


class Method:
    """Plain fine-tuning of every parameter; other methods override the hooks they need."""

    name = "finetune"
    # Set by the loop: the training set's size (before `prepare`), and the indices in the
    # training set of the current batch's examples (before each loss), for methods that keep
    # per-example state, such as a teacher cache. Data itself reaches a method through the
    # `MethodContext` it is built from.
    training_examples: int | None = None
    batch_examples: torch.Tensor | None = None
    # Whether the run ends with its best weights on dev (the default) or its last: a stage
    # whose loss never reaches the output (TinyBERT's intermediate stage) has no dev score
    # to choose by, and its ties would keep its first evaluation's weights.
    select_on_dev: bool = True
    # The last batch's loss terms by name (detached), for methods that log them: the
    # default `after_backward` returns them.
    last: dict[str, torch.Tensor] | None = None

    def prepare(self, model: PreTrainedModel, total_steps: int) -> None:
        """Called once before training, when the run's length is known."""
        for parameter in model.parameters():
            parameter.requires_grad_(True)

    def trainable_parameters(self, model: PreTrainedModel) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def before_step(self, model: PreTrainedModel, step: int) -> dict[str, float]:
        """Called before each optimizer step `step` (0-based); returns values to log."""
        return {}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> Iterator[torch.Tensor]:
        """The step's loss in parts, each back-propagated as soon as it is yielded, so only
        one part's activations are held at a time (DynaBERT's sub-networks); their gradients
        add up into one optimizer step. One part, `loss`, by default."""
        yield self.loss(model, batch)

    def views(self, model: PreTrainedModel) -> Iterator[str | None]:
        """The model's variants to score at each evaluation: yield a name while `model` is
        set to each (DynaBERT's sub-networks). The checkpoint is selected on their mean
        score. One unnamed view, the model as it is, by default."""
        yield None

    def after_backward(self, model: PreTrainedModel, step: int) -> dict[str, float]:
        """Called after the backward pass of step `step`, before clipping (gradients are
        in place); returns values to log: by default the loss terms a method keeps in
        `last` (one host sync for them all)."""
        if not self.last:
            return {}
        values = torch.stack(list(self.last.values())).float().tolist()
        return dict(zip(self.last, values, strict=True))

    def after_step(self, model: PreTrainedModel, step: int) -> None:
        """Called after optimizer step `step` (0-based) has changed the weights (LadaBERT puts
        its pruned weights back to zero here)."""

    def finalize(self, model: PreTrainedModel) -> PreTrainedModel:
        """The plain Hugging Face model to save."""
        return model

    def summary(self, model: PreTrainedModel) -> dict:
        """What the method reports about a stage's final model (after `finalize`); saved in
        the stage's result.json and metrics.json's `stages` (LadaBERT: the budget reached)."""
        return {}

    def settings(self) -> dict:
        """The method's own settings; a resumed run must use the same ones."""
        return {}

    def generator_states(self) -> dict[str, torch.Tensor]:
        """States of the method's own random generators, saved in checkpoints."""
        return {}

    def set_generator_states(self, states: dict[str, torch.Tensor]) -> None:
        """Restore what `generator_states` returned (`states` holds every saved tensor)."""

    def cache_states(self) -> dict[str, torch.Tensor]:
        """Tensors a resume reuses instead of computing again (a teacher cache), saved in
        checkpoints beside the generator states (their names must not collide)."""
        return {}

    def set_cache_states(self, states: dict[str, torch.Tensor]) -> None:
        """Restore what `cache_states` returned (`states` holds every saved tensor)."""


@dataclass
class TrainResult:
    best_step: int
    best_dev: dict[str, dict[str, float]]
    steps: int
    train_seconds: float
    history: list[dict] = field(default_factory=list)
    # Evaluations at which the model answered one class, or one value, for all of dev.
    constant_steps: list[int] = field(default_factory=list)
    # [step, ["dev@view", ...]]: evaluations at which some views (sub-networks) did.
    constant_views: list[list] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # Method.summary of the stage's final model


def make_accelerator(config: TrainingConfig) -> Accelerator:
    cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    if config.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but no CUDA device is visible")
    precision = config.mixed_precision
    if precision == "auto":
        if cpu:
            precision = "bf16" if cpu_has_fast_bf16() else "no"
        else:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # Accelerate keeps one global state per process and refuses a second precision; several
    # runs in one process (the Python API, tests) need it dropped. The process group, held
    # by PartialState, stays.
    shared = AcceleratorState._shared_state
    on_cpu = getattr(shared.get("device"), "type", None) == "cpu"
    if shared and (shared.get("_mixed_precision"), on_cpu) != (precision, cpu):
        AcceleratorState._reset_state()
    # Theseus leaves unchosen modules unused in a step; DDP must be told.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=precision, cpu=cpu, kwargs_handlers=[ddp])


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 autocast is faster than fp32 there, and slower elsewhere."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def train(
    model: PreTrainedModel,
    method: Method,
    train_features: list[dict],
    dev_features: dict[str, list[dict]],
    task: Task,
    tokenizer,
    config: TrainingConfig,
    accelerator: Accelerator,
    run_dir: Path | None = None,
    resume: Checkpoint | None = None,
    settings: dict | None = None,
) -> TrainResult:
    """Train `model` with `method`, evaluate on dev, and leave the best-on-dev weights in it,
    with its own forward (not the mixed-precision wrapper Accelerate puts on it).

    The dev score picks the checkpoint; it is the first dev split's `score`. With `run_dir`
    the training log goes to `run_dir/train_log.jsonl` and checkpoints to
    `run_dir/checkpoints/` (every `save_steps`, at every evaluation by default, and when
    SIGTERM or SIGINT arrives). `resume` continues from one of those checkpoints, and the
    run then ends bit for bit where an uninterrupted run would have (on CPU). `settings`
    are more values a resume must match (a method's stage, say).
    """
    run = _start(model, method, train_features, dev_features, task, tokenizer, config,
                 accelerator, run_dir, resume, settings)  # fmt: skip
    state = run.state
    with run.progress, _StopOnSignal() as stop:
        run.progress.update(state.step)
        while state.step < run.total:
            _epoch(run, stop)
    seconds = time.perf_counter() - run.started
    _restore(model, state.best_weights)
    # Accelerate wrapped the model's forward in its bf16 autocast; the model handed back
    # runs in the precision its caller asks for (a target's fp32 timing ran bf16 before).
    run.accelerator.unwrap_model(run.wrapped, keep_fp32_wrapper=False)
    run.log.close()
    return TrainResult(
        state.best_step,
        state.best_dev,
        state.step,
        seconds,
        run.log.records,
        state.constant_steps,
        state.constant_views,
    )


@dataclass
class _Run:
    """A training run's parts, made once before its first step, and where it is (`state`)."""

    model: PreTrainedModel
    wrapped: nn.Module  # the model as Accelerate prepared it
    method: Method
    config: TrainingConfig
    accelerator: Accelerator
    task: Task
    loader: object  # the training batches, shuffled by `order`
    order: torch.Generator  # draws every epoch's data order
    parameters: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedule: object
    dev_loaders: dict
    total: int  # optimizer steps in the run
    steps_per_epoch: int
    settings: dict  # what a resume must match, saved in every checkpoint
    checkpoints: Path | None  # the checkpoint folder, on the main process only
    state: _State
    log: _Log
    progress: TrainingProgress
    started: float  # perf_counter at step 0 (a resume counts its saved seconds in)

    @property
    def eval_every(self) -> int:
        return self.config.eval_steps or self.steps_per_epoch

    @property
    def save_every(self) -> int:
        return self.config.save_steps or self.eval_every


def _start(model, method, train_features, dev_features, task, tokenizer, config, accelerator,
           run_dir, resume, settings) -> _Run:  # fmt: skip
    """Check a resume, prepare the method, and make the loaders, optimizer and schedule."""
    set_seed(config.seed)
    raw_loader = make_loader(train_features, tokenizer, config.batch_size, True, config.seed,
                             indexed=True)  # fmt: skip
    order = raw_loader.generator
    # Steps come from the loader as each process sees it: with N processes each takes every
    # N-th batch, so an epoch is len(raw_loader) / N batches here (then / accumulation).
    loader = accelerator.prepare(raw_loader)
    steps_per_epoch = math.ceil(len(loader) / config.gradient_accumulation_steps)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    # A resume of another run is refused before the method prepares anything (or says so).
    settings = {**_trajectory_settings(config, method, total), **(settings or {})}
    if accelerator.num_processes > 1:  # the global batch; one process records none, as before
        settings["processes"] = accelerator.num_processes
    if resume is not None:
        _check_same_run(resume, settings)
    method.training_examples = len(train_features)
    method.prepare(model, total)
    parameters = method.trainable_parameters(model)
    if not parameters:
        raise TrainingError(f"method '{method.name}' left no parameter to train")
    optimizer = torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay, eps=1e-8,
        fused=_fusable(parameters, accelerator.device),
    )  # fmt: skip
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    dev_loaders = {
        name: make_loader(f, tokenizer, config.eval_batch_size, False)
        for name, f in dev_features.items()
    }
    # The schedule is not prepared: Accelerate would step it once per process at each step,
    # for schedules counted in one process's steps; ours counts the steps taken here.
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    dev_loaders = {name: accelerator.prepare(dl) for name, dl in dev_loaders.items()}
    main = accelerator.is_main_process and run_dir is not None
    state = _State()
    if resume is not None:
        state = _resume(resume, model, optimizer, schedule, method, order)
    log = _Log(run_dir / "train_log.jsonl" if main else None, state.log_offset)
    progress = TrainingProgress(total, enabled=accelerator.is_local_main_process)
    return _Run(model, wrapped, method, config, accelerator, task, loader, order, parameters,
                optimizer, schedule, dev_loaders, total, steps_per_epoch, settings,
                run_dir / "checkpoints" if main else None, state, log, progress,
                time.perf_counter() - state.seconds)  # fmt: skip


def _epoch(run: _Run, stop: _StopOnSignal) -> None:
    """Train on the rest of the current epoch, or up to the run's last step."""
    state, loader, method = run.state, run.loader, run.method
    if state.position == 0:
        state.epoch_order = run.order.get_state()  # resumes replay the epoch from here
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(state.epoch)
    batches = (
        run.accelerator.skip_first_batches(loader, state.position) if state.position else loader
    )
    losses, backed, group = [], False, 0
    for batch in batches:
        step = state.step
        if not losses:  # the first batch of an optimizer step
            values = method.before_step(run.model, step)
            # Batches in this step: all but the epoch's last step take `accumulation`.
            group = min(run.config.gradient_accumulation_steps, len(loader) - state.position)
        run.wrapped.train()
        method.batch_examples = batch.pop(EXAMPLE_INDEX)
        loss, reached = _backward_parts(method, run.wrapped, batch, run.accelerator, 1 / group)
        if not torch.isfinite(loss):
            _stop_on_non_finite(run, loss, step)
        losses.append(loss.item())
        backed = backed or reached
        state.position += 1
        if len(losses) < group:
            continue
        _optimizer_step(run, step, values, backed)
        # One exchange a step: the loss over every process's batches, and whether a
        # signal reached any of them (all then stop after this step).
        stopping, step_loss = _synced(stop, float(np.mean(losses)), run.accelerator)
        state.running.append(step_loss)
        losses, backed = [], False
        _after_step(run, values, stopping, stop)
        if state.step >= run.total:
            return
    state.epoch, state.position = state.epoch + 1, 0


def _fusable(parameters: list[nn.Parameter], device: torch.device) -> bool:
    """Whether AdamW can update every parameter in one fused kernel, as the Trainer does;
    on the CPU the default updates one tensor at a time, which made most of our bf16 gap
    to the Trainer (docs/results.md, section 17). `device` is where the run trains: the
    parameters may still be on the CPU here, before Accelerate moves them. A checkpoint
    made without fusion resumes without it: loading the optimizer's state brings back its
    settings, so a run keeps one update rule throughout."""
    return device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in parameters)


def _stop_on_non_finite(run: _Run, loss: torch.Tensor, step: int) -> None:
    last = list_checkpoints(run.checkpoints) if run.checkpoints else []
    kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint"
    raise TrainingError(
        f"loss became {loss.item()} at step {step + 1}; stopped ({kept}): "
        "lower --learning-rate or check the labels"
    )


def _optimizer_step(run: _Run, step: int, values: dict, backed: bool) -> None:
    """Clip and apply the step's accumulated gradients (the method's hooks around them)."""
    method, model = run.method, run.model
    # With every module on its frozen predecessor path nothing trainable is in the
    # graph: there is no gradient, and the optimizer step leaves weights alone.
    if backed:
        values.update(method.after_backward(model, step))
        run.accelerator.clip_grad_norm_(run.parameters, run.config.max_grad_norm)
    run.optimizer.step()
    method.after_step(model, step)
    run.schedule.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.state.step += 1


def _after_step(run: _Run, values: dict, stopping: bool, stop: _StopOnSignal) -> None:
    """Log the step, evaluate and keep the best weights when due, and save a checkpoint
    when due or when a signal stops the run."""
    state, config = run.state, run.config
    step = state.step
    record = {"step": step, "epoch": round(step / run.steps_per_epoch, 4), **values}
    record["learning_rate"] = run.schedule.get_last_lr()[0]
    record["seconds"] = round(time.perf_counter() - run.started, 2)
    run.progress.update(step, loss=state.running[-1], **values, lr=record["learning_rate"])
    if step % config.logging_steps == 0 or step == run.total:
        run.log.write({**record, "loss": float(np.mean(state.running))})
        state.running = []
    if step % run.eval_every == 0 or step == run.total:
        _evaluate_and_select(run, step, record["seconds"])
    if stopping:
        path = _save(run)
        raise TrainingInterrupted(stop.signal or signal.SIGTERM, step, path)
    if step < run.total and step % run.save_every == 0:
        _save(run)


def _evaluate_and_select(run: _Run, step: int, seconds: float) -> None:
    """Score every view on dev, log it, and keep the weights when they are the best yet."""
    state, method = run.state, run.method
    dev, constant = _evaluate_views(method, run.model, run.wrapped, run.dev_loaders, run.task,
                                    run.accelerator)  # fmt: skip
    score = next(iter(dev.values()))["score"]
    entry = {"step": step, "dev": dev, "seconds": seconds}
    run.log.write({**entry, "constant_output": constant} if constant else entry)
    run.progress.note(f"step {step}: {_describe(dev)}")
    _note_constant(state, run.progress, step, dev, constant)
    if not method.select_on_dev or state.best_score is None or score > state.best_score:
        state.best_score, state.best_step, state.best_dev = score, step, dev
        state.best_weights = _snapshot(run.model)


def _save(run: _Run) -> Path | None:
    """A checkpoint of where the run is (on the main process, with a run folder)."""
    if run.checkpoints is None:
        return None
    state, method = run.state, run.method
    state.log_offset, state.seconds = run.log.offset(), time.perf_counter() - run.started
    return save_checkpoint(
        run.checkpoints,
        state.step,
        _snapshot(run.model),
        state.best_weights,
        run.optimizer,
        {**state.to_json(run.schedule), "settings": run.settings},
        {"data_order": state.epoch_order, **method.generator_states(), **method.cache_states()},
        run.config.keep_checkpoints,
    )


def _note_constant(state, progress, step: int, dev: dict, constant: dict) -> None:
    """Record and say where the model, or some of its views, ignored its input. The model
    counts as constant where a split is, or where every one of its views is."""
    whole = {key: verdict for key, verdict in constant.items() if "@" not in key}
    views = sorted(key for key in constant if "@" in key)
    total = sum("@" in key for key in dev)  # views scored at this evaluation
    every_view = views and len(views) == total
    if views:
        state.constant_views.append([step, views])
        names = ", ".join(key.split("@", 1)[1] for key in views[:4])
        more = ", ..." if len(views) > 4 else ""
        progress.warn(
            f"warning: at step {step}, {len(views)} of {total} "
            f"sub-networks give one answer for every example ({names}{more}): "
            "constant_views_at_best in metrics.json"
        )
    if whole or every_view:
        state.constant_steps.append(step)
        split, verdict = next(iter(whole.items())) if whole else (views[0], "gives one answer")
        progress.warn(
            f"warning: at step {step} the model {verdict} on {split}: it "
            "ignores its input (constant_output_steps in metrics.json)"
        )


def _synced(stop: _StopOnSignal, loss: float, accelerator) -> tuple[bool, float]:
    """Whether a signal reached this process or, under several processes, any of them (all
    stop after the same step, so their checkpoint is one state), and the step's loss averaged
    over the processes (so the log, and a resume's running mean, are the whole batch's)."""
    stopping = stop.signal is not None
    if accelerator.num_processes == 1:
        return stopping, loss
    values = torch.tensor([float(stopping), loss], dtype=torch.float64, device=accelerator.device)
    total = accelerator.reduce(values, reduction="sum").tolist()
    return total[0] > 0, total[1] / accelerator.num_processes


def _all_finite(part: torch.Tensor, accelerator) -> bool:
    """Whether the part is finite on every process: one process's NaN stops them all before
    the backward, rather than leaving the others waiting in its all-reduce."""
    finite = bool(torch.isfinite(part))
    if accelerator.num_processes > 1:
        flag = torch.tensor(float(finite), device=accelerator.device)
        finite = accelerator.reduce(flag, reduction="sum").item() == accelerator.num_processes
    return finite


def _backward_parts(
    method: Method, wrapped, batch, accelerator, scale: float = 1.0
) -> tuple[torch.Tensor, bool]:
    """Back-propagate each part of the method's loss (times `scale`, 1 / the batches that
    accumulate into the step) as it comes; return their sum (detached, unscaled) and whether
    any reached a trainable weight. A non-finite part stops before its backward."""
    total, backed = None, False
    parts = method.losses(wrapped, batch)
    while True:
        with accelerator.autocast():
            part = next(parts, None)
        if part is None:
            break
        if not _all_finite(part, accelerator):
            # Another process's NaN: say so here too (this one's part may be finite).
            bad = part.detach() if not torch.isfinite(part) else part.detach() * float("nan")
            return bad, backed
        if part.requires_grad:
            accelerator.backward(part * scale if scale != 1.0 else part)
            backed = True
        total = part.detach() if total is None else total + part.detach()
    if total is None:
        raise TrainingError(f"method '{method.name}' gave no loss for a batch")
    return total, backed


def _evaluate_views(method, model, wrapped, dev_loaders, task, accelerator):
    """Metrics of every view on every dev split, and the splits where an output is constant.

    With named views, `dev[split]` is the mean of each metric over the views (what selects the
    checkpoint) and `dev["split@view"]` each view's own."""
    dev, constant = {}, {}
    for name, dl in dev_loaders.items():
        views = {}
        for view in method.views(model):
            logits, labels = predict(wrapped, dl, accelerator)
            key = name if view is None else f"{name}@{view}"
            views[key] = _metrics(task, logits, labels)
            if (verdict := constant_output(task, logits, labels)) is not None:
                constant[key] = verdict
        if name not in views:
            keys = next(iter(views.values())).keys()
            dev[name] = {k: float(np.mean([m[k] for m in views.values()])) for k in keys}
        dev.update(views)
    return dev, constant


@dataclass
class _State:
    """Where a run is; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # batches of the current epoch already trained on
    running: list[float] = field(default_factory=list)
    best_score: float | None = None
    best_step: int = 0
    best_dev: dict = field(default_factory=dict)
    best_weights: dict = field(default_factory=dict)
    epoch_order: torch.Tensor | None = None
    log_offset: int | None = None
    seconds: float = 0.0
    constant_steps: list[int] = field(default_factory=list)
    constant_views: list[list] = field(default_factory=list)

    # Fields saved in state.json as they are (weights and generators go to safetensors).
    SAVED = (
        "epoch",
        "position",
        "running",
        "best_score",
        "best_step",
        "best_dev",
        "log_offset",
        "seconds",
        "constant_steps",
        "constant_views",
    )

    def to_json(self, schedule) -> dict:
        return {**{k: getattr(self, k) for k in self.SAVED}, "schedule": schedule.state_dict()}


# The training settings that decide a run's path (with the method's own); a resume, and a
# finished stage that a resume skips, must have been made with the same ones.
TRAJECTORY = (
    "epochs",
    "max_steps",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "warmup_ratio",
    "max_grad_norm",
    "max_length",
    "eval_steps",
    "seed",
    "mixed_precision",
    "max_train_samples",
)


def trajectory(config: TrainingConfig) -> dict:
    """The TRAJECTORY settings of `config`, and the accumulation where it is not 1 (runs
    made before it existed have none recorded, and must still resume)."""
    values = {k: getattr(config, k) for k in TRAJECTORY}
    if config.gradient_accumulation_steps != 1:
        values["gradient_accumulation_steps"] = config.gradient_accumulation_steps
    return values


def _trajectory_settings(config: TrainingConfig, method: Method, total: int) -> dict:
    """The settings that decide a run's path; a resume must use the same ones."""
    settings = {"method": method.name, "total_steps": total}
    values = trajectory(config)
    settings.update({k: v for k, v in values.items() if k not in ("epochs", "max_steps")})
    if method.settings():  # absent for plain fine-tuning, as in checkpoints before it existed
        settings["method_settings"] = method.settings()
    return settings


# What a resume must match besides the settings: a digest of the training rows. Checkpoints
# and finished stages from before it have none, and resume as they did.
TRAIN_DATA = "train_data"


def comparable(saved: dict, settings: dict) -> dict:
    """`settings` less the digest where `saved` predates it and so has nothing to compare."""
    return {k: v for k, v in settings.items() if k != TRAIN_DATA or TRAIN_DATA in saved}


def _check_same_run(checkpoint: Checkpoint, settings: dict) -> None:
    saved = checkpoint.state.get("settings", {})
    settings = comparable(saved, settings)
    # Recorded only where they are not 1 (older runs lack them): absent means 1, both ways.
    ones = {"processes": 1, "gradient_accumulation_steps": 1}
    saved, settings = {**ones, **saved}, {**ones, **settings}
    keys = list(settings) + [k for k in saved if k not in settings]
    changed = [
        f"{k} {saved.get(k)!r} -> {settings.get(k)!r}"
        for k in keys
        if saved.get(k) != settings.get(k)
    ]
    if changed:
        raise TrainingError(
            f"checkpoint {checkpoint.path.name} belongs to a different run ({'; '.join(changed)}):"
            " resume with the original command, or start over with --overwrite"
        )


def _resume(checkpoint: Checkpoint, model, optimizer, schedule, method, order) -> _State:
    saved = checkpoint.state
    _restore(model, checkpoint.trainable)
    optimizer.load_state_dict(checkpoint.optimizer)
    schedule.load_state_dict(saved["schedule"])
    generators = restore_rng(checkpoint)
    epoch_order = generators.pop("data_order")
    order.set_state(epoch_order)  # the resumed epoch replays its order, then skips ahead
    method.set_generator_states(generators)
    method.set_cache_states(generators)
    return _State(
        step=saved["step"],
        best_weights=checkpoint.best,
        epoch_order=epoch_order,
        **{k: saved[k] for k in _State.SAVED if k in saved},  # older checkpoints lack some
    )


class _StopOnSignal:
    """Turn SIGTERM/SIGINT into a flag the loop checks after each step (main thread only)."""

    signals = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self):
        self.signal: int | None = None
        self.previous = {}
        try:
            for signum in self.signals:
                self.previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = {}
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


@torch.no_grad()
def predict(model: nn.Module, loader, accelerator: Accelerator) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels over a loader, gathered from every process."""
    model.eval()
    logits, labels = [], []
    for batch in loader:
        with accelerator.autocast():
            out = model(**batch).logits.float()
        out, label = accelerator.gather_for_metrics((out, batch["labels"]))
        logits.append(out.cpu())
        labels.append(label.cpu())
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def evaluate(model: nn.Module, loader, task: Task, accelerator: Accelerator) -> dict[str, float]:
    logits, labels = predict(model, loader, accelerator)
    return _metrics(task, logits, labels)


def _metrics(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if task.metric in VECTOR_METRICS:
        return compute_metrics(task.metric, logits, labels)
    predictions = logits[:, 0] if task.is_regression else logits.argmax(-1)
    return compute_metrics(task.metric, predictions, labels)


# A regression output whose spread across inputs is below this share of the labels' spread
# is a constant: the collapsed successor of issue 15 had 1e-4 of its predecessor's.
CONSTANT_SPREAD = 1e-3


def constant_output(task: Task, logits: np.ndarray, labels: np.ndarray) -> str | None:
    """How the model ignores its input, if it does: it answers one class for every example,
    or (regression) one value; None otherwise.

    >>> constant_output(rte, np.array([[2.0, 0.1], [1.5, 0.3]]), np.array([0, 1]))
    "answers 'entailment' for all 2 examples"
    """
    if len(labels) < 2 or len(np.unique(labels)) < 2:
        return None  # one answer is right when dev holds one label
    if task.is_regression:
        spread, scale = float(np.std(logits[:, 0])), float(np.std(labels))
        if spread <= CONSTANT_SPREAD * max(scale, 1e-6):
            value = float(np.mean(logits[:, 0]))
            return f"outputs {value:.4g} ± {spread:.2g} for all {len(labels)} examples"
        return None
    answers = np.unique(logits.argmax(-1))
    if len(answers) > 1:
        return None
    label = task.id2label.get(int(answers[0]), str(int(answers[0])))
    return f"answers '{label}' for all {len(labels)} examples"


def _describe(dev: dict[str, dict[str, float]]) -> str:
    # Views ("dev@w0.5-d1") are in the log; the line shows each split's score (their mean).
    return ", ".join(
        f"{split} " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        for split, metrics in dev.items()
        if "@" not in split
    )


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    # Frozen weights cannot change, so the trained ones fully describe this checkpoint.
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def _restore(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    parameters = dict(model.named_parameters())
    for name, value in snapshot.items():
        parameters[name].copy_(value)


class _Log:
    """JSON-lines training log, flushed per record so a crashed run still has its history.

    Resuming truncates it to the offset saved with the checkpoint: records written after
    the checkpoint are written again by the resumed run.
    """

    def __init__(self, path: Path | None, resume_offset: int | None = None):
        self.records: list[dict] = []
        self.handle = None
        if path is None:
            return
        if resume_offset is not None and path.exists():
            with path.open("r+b") as handle:
                handle.truncate(resume_offset)
            self.records = [json.loads(line) for line in path.read_text().splitlines()]
            self.handle = path.open("a")
        else:
            self.handle = path.open("w")

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self.handle:
            self.handle.write(json.dumps(record) + "\n")
            self.handle.flush()

    def offset(self) -> int | None:
        return self.handle.tell() if self.handle else None

    def close(self) -> None:
        if self.handle:
            self.handle.close()
