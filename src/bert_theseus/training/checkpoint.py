"""Training checkpoints: everything a resumed run needs to end exactly where it would have.

A checkpoint is a folder `step-0000500/` holding
  trainable.safetensors  the parameters being trained (frozen ones cannot have changed)
  best.safetensors       the best-on-dev snapshot so far
  rng.safetensors        torch CPU/CUDA generators, the data-order generator at the start of
                         the current epoch, and the method's own generator (Theseus draws)
  optimizer.pt           AdamW state, read back with torch.load(weights_only=True)
  state.json             step, epoch, position, learning-rate schedule, best score,
                         running losses, Python and NumPy RNG states, training-log offset
Tensors go to safetensors and the rest to JSON; nothing is unpickled beyond plain tensors.
A checkpoint is written to `step-N.tmp` and renamed, so a half-written one is never read.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


@dataclass
class Checkpoint:
    """What `load_checkpoint` gives back to the training loop."""

    path: Path
    state: dict
    trainable: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    rng: dict[str, torch.Tensor]
    optimizer: dict


def save_checkpoint(
    folder: Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    best: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: dict,
    generator_states: dict[str, torch.Tensor],
    keep: int,
) -> Path:
    """Write checkpoint `step` under `folder` and keep only the newest `keep` of them."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step:07d}"
    partial = folder / f"{PREFIX}{step:07d}.tmp"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    save_file(_contiguous(trainable), partial / "trainable.safetensors")
    save_file(_contiguous(best), partial / "best.safetensors")
    rng = {f"generator.{name}": value for name, value in generator_states.items()}
    rng["torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"cuda.{index}"] = cuda_state
    save_file(rng, partial / "rng.safetensors")
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    full_state = {**state, "step": step, "python_rng": _python_rng(), "numpy_rng": _numpy_rng()}
    (partial / "state.json").write_text(json.dumps(full_state))
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints under `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.suffix != ".tmp"]
    return sorted(p for p in found if (p / "state.json").is_file())


def load_checkpoint(path: Path) -> Checkpoint:
    return Checkpoint(
        path=path,
        state=json.loads((path / "state.json").read_text()),
        trainable=load_file(path / "trainable.safetensors"),
        best=load_file(path / "best.safetensors"),
        rng=load_file(path / "rng.safetensors"),
        optimizer=torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"),
    )


def restore_rng(checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
    """Put the global generators back as they were; return the named generator states."""
    torch.set_rng_state(checkpoint.rng["torch"])
    if torch.cuda.is_available():
        states = [checkpoint.rng[k] for k in sorted(checkpoint.rng) if k.startswith("cuda.")]
        if states:
            torch.cuda.set_rng_state_all(states)
    version, internal, gauss = checkpoint.state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = checkpoint.state["numpy_rng"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    prefix = "generator."
    return {k[len(prefix) :]: v for k, v in checkpoint.rng.items() if k.startswith(prefix)}


def _python_rng() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _numpy_rng() -> list:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return [kind, keys.tolist(), int(position), int(has_gauss), float(cached)]


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
