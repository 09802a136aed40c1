"""Inference speed measured side by side: models interleaved in one process, same inputs."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Parameters that are not exactly zero: what a pruned model keeps (zeros are still
    stored, and dense kernels still multiply by them)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def is_pruned(parameters: int, nonzero: int) -> bool:
    """Whether a model's zeros are worth saying: at least 1% of its weights (a freshly
    initialised bias is zero too, and no one pruned it)."""
    return nonzero < 0.99 * parameters


def random_batch(
    batch_size: int, length: int, vocab: int, seed: int = 0, token_types: bool = False
) -> dict[str, torch.Tensor]:
    """A fixed batch of random token ids (above the first 5, where special tokens sit), no
    padding: what every timing here runs on. `token_types` adds zeros for models that take
    them (callers filter by what each model accepts)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab, (batch_size, length), generator=generator)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    if token_types:
        batch["token_type_ids"] = torch.zeros_like(input_ids)
    return batch


def interleaved(calls: list[Callable[[], object]], warmup: int, repeats: int) -> list[list[float]]:
    """Seconds of each timed call of each of `calls`: `warmup` untimed rounds, then `repeats`
    timed ones. Every round calls each in turn and the order alternates between rounds, so
    drift in the machine's speed (other load, frequency changes) hits them all alike.

    >>> interleaved([lambda: big(batch), lambda: small(batch)], warmup=2, repeats=5)
    """
    times: list[list[float]] = [[] for _ in calls]
    for round_ in range(warmup + repeats):
        order = range(len(calls)) if round_ % 2 == 0 else reversed(range(len(calls)))
        for index in order:
            start = time.perf_counter()
            calls[index]()
            if round_ >= warmup:
                times[index].append(time.perf_counter() - start)
    return times


@torch.inference_mode()
def measure_latency(
    models: dict[str, nn.Module],
    batch_size: int = 32,
    seq_length: int = 128,
    repeats: int = 10,
    warmup: int = 2,
    bf16: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Median seconds per forward pass of each model on one fixed random batch.

    Models are timed in turn within every repeat, so drift in the machine's speed (other
    load, frequency changes) hits them alike; compare the ratios, not the absolute times.

    >>> times = measure_latency({"predecessor": big, "successor": small})
    >>> times["predecessor"] / times["successor"]   # speed-up
    """
    vocab = min(getattr(m.config, "vocab_size", 1000) for m in models.values())
    batch = random_batch(batch_size, seq_length, vocab, seed)
    for model in models.values():
        model.eval()
    device_type = next(next(iter(models.values())).parameters()).device.type
    autocast = (
        torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    times: dict[str, list[float]] = {name: [] for name in models}
    with autocast:
        for round_ in range(warmup + repeats):
            for name, model in models.items():
                device = next(model.parameters()).device
                inputs = {k: v.to(device) for k, v in batch.items()}
                _synchronize(device)
                start = time.perf_counter()
                model(**inputs)
                _synchronize(device)
                if round_ >= warmup:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
