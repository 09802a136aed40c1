"""The one training loop. Methods plug in their trainable parameters, loss and per-step hook.

It runs on Accelerate, so `accelerate launch theseus ...` spreads the same run over GPUs
or machines; on one CPU it is a plain loop with bf16 autocast.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch import nn
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from ..data.loading import make_loader
from ..data.tasks import Task
from ..metrics import compute_metrics
from .config import TrainingConfig
from .progress import TrainingProgress


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message names the step."""


class Method:
    """Plain fine-tuning of every parameter; other methods override the hooks they need."""

    name = "finetune"

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

    def finalize(self, model: PreTrainedModel) -> PreTrainedModel:
        """The plain Hugging Face model to save."""
        return model


@dataclass
class TrainResult:
    best_step: int
    best_dev: dict[str, dict[str, float]]
    steps: int
    train_seconds: float
    history: list[dict] = field(default_factory=list)


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
    log_path: Path | None = None,
) -> TrainResult:
    """Train `model` with `method`, evaluate on dev, and leave the best-on-dev weights in it.

    The dev score picks the checkpoint; it is the first dev split's `score`.
    """
    set_seed(config.seed)
    loader = make_loader(train_features, tokenizer, config.batch_size, True, config.seed)
    total = config.max_steps or math.ceil(config.epochs * len(loader))
    method.prepare(model, total)
    parameters = method.trainable_parameters(model)
    if not parameters:
        raise TrainingError(f"method '{method.name}' left no parameter to train")
    optimizer = torch.optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay, eps=1e-8
    )
    schedule = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    dev_loaders = {
        name: make_loader(f, tokenizer, config.eval_batch_size, False)
        for name, f in dev_features.items()
    }
    wrapped, optimizer, loader, schedule = accelerator.prepare(model, optimizer, loader, schedule)
    dev_loaders = {name: accelerator.prepare(dl) for name, dl in dev_loaders.items()}
    eval_every = config.eval_steps or len(loader)

    log = _Log(log_path if accelerator.is_main_process else None)
    progress = TrainingProgress(total, enabled=accelerator.is_local_main_process)
    best: tuple[float, int, dict, dict] | None = None
    step, epoch, running, started = 0, 0, [], time.perf_counter()
    with progress:
        while step < total:
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            for batch in loader:
                values = method.before_step(model, step)
                wrapped.train()
                with accelerator.autocast():
                    loss = method.loss(wrapped, batch)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {step + 1}: lower --learning-rate "
                        "or use --mixed-precision no"
                    )
                # With every module on its frozen predecessor path nothing trainable is in the
                # graph: there is no gradient, and the optimizer step leaves weights alone.
                if loss.requires_grad:
                    accelerator.backward(loss)
                    accelerator.clip_grad_norm_(parameters, config.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                running.append(loss.item())
                record = {"step": step, "epoch": round(step / len(loader), 4), **values}
                record["learning_rate"] = schedule.get_last_lr()[0]
                record["seconds"] = round(time.perf_counter() - started, 2)
                progress.update(step, loss=running[-1], **values, lr=record["learning_rate"])
                if step % config.logging_steps == 0 or step == total:
                    log.write({**record, "loss": float(np.mean(running))})
                    running = []
                if step % eval_every == 0 or step == total:
                    dev = {
                        name: evaluate(wrapped, dl, task, accelerator)
                        for name, dl in dev_loaders.items()
                    }
                    score = next(iter(dev.values()))["score"]
                    log.write({"step": step, "dev": dev, "seconds": record["seconds"]})
                    progress.note(f"step {step}: {_describe(dev)}")
                    if best is None or score > best[0]:
                        best = (score, step, dev, _snapshot(model))
                if step >= total:
                    break
            epoch += 1
    seconds = time.perf_counter() - started
    _restore(model, best[3])
    log.close()
    return TrainResult(best[1], best[2], step, seconds, log.records)


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
    predictions = logits[:, 0] if task.is_regression else logits.argmax(-1)
    return compute_metrics(task.metric, predictions, labels)


def _describe(dev: dict[str, dict[str, float]]) -> str:
    return ", ".join(
        f"{split} " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        for split, metrics in dev.items()
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
    """JSON-lines training log, flushed per record so a crashed run still has its history."""

    def __init__(self, path: Path | None):
        self.records: list[dict] = []
        self.handle = path.open("w") if path else None

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self.handle:
            self.handle.write(json.dumps(record) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle:
            self.handle.close()
