"""Timing the plan's candidates on each runtime, side by side in one process.

Each candidate (the predecessor, or a model of one shape) is exported once to
the files its runtimes need, its fp32 graph checked against PyTorch; then every
(candidate, runtime) entry runs the same random batch in interleaved rounds
(speed.interleaved), and the median seconds per batch is kept.
"""

from __future__ import annotations

import contextlib
import gc
import io
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from ..deploy.runtime import (
    EXPORT_VARIANTS,
    INT8_FILE,
    ONNX_FILE,
    OnnxClassifier,
    accepted_inputs,
    load_variant,
    torch_logits,
)
from ..deploy.trace import trace_onnx
from ..deploy.variants import openvino_fp32, openvino_int8, quantize_dynamic_int8
from ..pooling import say
from ..speed import count_parameters, interleaved, random_batch
from .config import PlanConfig, PlanError
from .shapes import Shape, capacity

TOKENS = ("input_ids", "attention_mask", "token_type_ids")
TOLERANCE = 1e-3  # |logit - PyTorch| of the fp32 graph: the graph must be the model
CALIBRATION_BATCHES = 3  # random batches for OpenVINO's int8 statistics (latency only)


@dataclass(eq=False)
class Candidate:
    """One model to time: the predecessor (`shape` None) or a shape's model, with
    the runners of its runtimes once `prepare` has exported it. A shape's model is built
    when first needed (`build`) and dropped by `release`, so a plan holds two models at a
    time, not every shape of a large predecessor."""

    model: PreTrainedModel | None
    shape: Shape | None
    runtimes: list[str]
    folder: Path  # scratch: its exported files
    runners: dict[str, Callable[[dict], object]] = field(default_factory=dict)
    inputs: dict[str, set[str]] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)  # runtime -> what ran it
    build: Callable[[], PreTrainedModel] | None = None
    sizes: tuple[int, int] | None = None  # (parameters, capacity), once counted

    @property
    def name(self) -> str:
        return self.shape.name if self.shape is not None else "the predecessor"

    def built(self) -> PreTrainedModel:
        if self.model is None:
            self.model = self.build()
        if self.sizes is None:  # counted as it is built: a released shape is not built again
            self.sizes = (count_parameters(self.model), capacity(self.model))
        return self.model

    def counted(self) -> tuple[int, int]:
        """(parameters, capacity), counted once (building the model if it never was: a
        timer other than `measure` builds none)."""
        if self.sizes is None:
            held = self.model is not None
            self.built()
            if not held and self.build is not None:
                self.model = None
        return self.sizes

    def release(self) -> None:
        """Drop the model, its runners and its exported files (the counts stay)."""
        if self.build is None:
            return  # the predecessor is the caller's
        self.runners.clear()
        self.inputs.clear()
        self.model = None
        shutil.rmtree(self.folder, ignore_errors=True)
        gc.collect()

    def prepare(self, config: PlanConfig, threads: int) -> None:
        """Export to every file the runtimes need and load a runner for each runtime."""
        self.built()
        exported = [r for r in self.runtimes if r in EXPORT_VARIANTS]
        if exported:
            self._export(exported, config)
        for runtime in self.runtimes:
            if runtime.startswith("torch"):
                bf16 = runtime == "torch-bf16"
                self.runners[runtime] = partial(torch_logits, self.model, bf16=bf16)
                self.inputs[runtime] = accepted_inputs(self.model)
                self.engines[runtime] = f"torch {torch.__version__}"
            else:
                runner = load_variant(self.folder, runtime, threads)
                self.runners[runtime] = runner.logits
                self.inputs[runtime] = set(runner.input_names)
                self.engines[runtime] = _engine(runner)

    def _export(self, exported: list[str], config: PlanConfig) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        names = [n for n in TOKENS if n in accepted_inputs(self.model)]
        batch = _check_batch(self.model, config)
        trace_onnx(self.model, names, batch, self.folder / ONNX_FILE)
        expected = torch_logits(self.model, batch)
        plain = OnnxClassifier(self.folder)
        largest = float(np.abs(plain.logits(batch) - expected).max())
        if largest > TOLERANCE:
            raise PlanError(
                f"the ONNX graph of {self.name} differs from PyTorch by {largest:.3g} (more "
                f"than {TOLERANCE:g}): this architecture does not export faithfully; plan "
                "torch-* runtimes only"
            )
        if "onnx-int8" in exported:
            quantize_dynamic_int8(self.folder / ONNX_FILE, self.folder / INT8_FILE)
        if any(r.startswith("openvino") for r in exported):
            openvino_fp32(self.folder / ONNX_FILE, self.folder)
        if "openvino-int8" in exported:
            vocab = self.model.config.vocab_size
            calibration = [
                plain.feeds(random_batch(8, config.length, vocab, seed=seed, token_types=True))
                for seed in range(1, 1 + CALIBRATION_BATCHES)
            ]
            with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars
                openvino_int8(self.folder, calibration)


@dataclass(eq=False)
class Entry:
    """One candidate on one runtime: what a timer times."""

    candidate: Candidate
    runtime: str

    @property
    def shape(self) -> Shape | None:
        return self.candidate.shape

    def run(self, batch: dict) -> object:
        """The logits of `batch` (only the inputs this runner takes are passed)."""
        inputs = self.candidate.inputs[self.runtime]
        return self.candidate.runners[self.runtime]({k: v for k, v in batch.items()
                                                     if k in inputs})  # fmt: skip


# A timer: the median seconds per batch of each entry, in the entries' order.
Timer = Callable[[list[Entry], PlanConfig], list[float]]


def measure(entries: list[Entry], config: PlanConfig) -> list[float]:
    """The default timer: each candidate in turn is exported and timed on every runtime
    side by side with the predecessor on the baseline (the first entry), interleaved, on
    one random batch of `batch_size x length` tokens, then released. Each block's median
    seconds per batch are scaled by its own baseline time to the first block's, so every
    speed-up is a ratio measured side by side."""
    threads = config.threads or torch.get_num_threads()
    candidates = list({id(e.candidate): e.candidate for e in entries}.values())
    base = entries[0]
    base.candidate.prepare(config, threads)
    batch = random_batch(config.batch_size, config.length,
                         base.candidate.model.config.vocab_size, token_types=True)  # fmt: skip
    seconds: dict[int, float] = {}
    for index, candidate in enumerate(candidates):
        say(f"plan: timing {index + 1} of {len(candidates)}: {candidate.name} "
            f"({', '.join(candidate.runtimes)}) beside the predecessor on {base.runtime}, "
            f"batch {config.batch_size} x {config.length}")  # fmt: skip
        candidate.prepare(config, threads)
        block = [base] + [e for e in entries if e.candidate is candidate and e is not base]
        times = block_seconds(block, batch, config)
        seconds.setdefault(id(base), times[0])
        scale = seconds[id(base)] / times[0]
        seconds.update({id(e): t * scale for e, t in zip(block[1:], times[1:], strict=True)})
        candidate.release()
    return [seconds[id(e)] for e in entries]


def block_seconds(block: list[Entry], batch: dict, config: PlanConfig) -> list[float]:
    """Median seconds per batch of each entry of `block`, timed in interleaved rounds."""
    calls = [partial(entry.run, batch) for entry in block]
    return [statistics.median(t) for t in interleaved(calls, config.warmup, config.repeats)]


def _check_batch(model: PreTrainedModel, config: PlanConfig) -> dict[str, torch.Tensor]:
    """A few rows of the timing batch's length, the last ending in padding, so the traced
    graph keeps the attention mask's branch and the check covers it."""
    batch = random_batch(4, config.length, model.config.vocab_size, seed=1, token_types=True)
    batch["attention_mask"][-1, config.length // 2 :] = 0
    accepted = accepted_inputs(model)
    return {k: v for k, v in batch.items() if k in accepted}


def _engine(runner) -> str:
    """What runs an exported variant: ONNX Runtime's providers, or OpenVINO's device."""
    if isinstance(runner, OnnxClassifier):
        import onnxruntime

        providers = ",".join(runner.session.get_providers())
        return f"onnxruntime {onnxruntime.__version__} ({providers}) {runner.path.name}"
    import openvino

    return f"openvino {openvino.__version__} (CPU) {runner.path.name}"
