"""What `benchmark` times: one model in one variant, with what its rows report (light: the
embedding rows are built by `embedding/benchmark.py`, below which this sits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Entry:
    """A model in one variant: how to run a batch through it, and its sizes."""

    model: str
    variant: str
    run: Callable[[dict], object]
    parameters: int
    disk_bytes: int
    positions: int
    vocab: int
    inputs: set[str]
    onnx_folder: Path | None = None
    memory: bool = True  # a variant the memory probe can load on its own


def limits(model_config) -> tuple[int, int]:
    """The longest length a model takes, and its vocabulary size (for random batches)."""
    # RoBERTa-style position ids start after the padding index: two positions are spare.
    positions = getattr(model_config, "max_position_embeddings", 512) - 2
    return positions, getattr(model_config, "vocab_size", 1000)
