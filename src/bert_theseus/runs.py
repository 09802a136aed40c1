"""A run's output folder: written aside, renamed into place only when complete."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from .training.stages import STAGES_FOLDER, saved_progress


class RunError(ValueError):
    """The output folder cannot be used as asked."""


class OutputDir:
    """Everything a run writes goes to `.<name>.partial` beside `output`; `commit()` renames it.

    A run that fails leaves no folder that looks finished, and an existing finished
    output (allowed with `overwrite`) is only removed once the new one is complete. The
    partial folder also holds the run's checkpoints, so an interrupted run can resume;
    a new run refuses to wipe them unless told to (`overwrite`).

    >>> out = OutputDir("runs/successor", overwrite=False)
    >>> model.save_pretrained(out.open()); out.commit()
    """

    def __init__(self, output: str | Path, overwrite: bool = False, resume: str | None = None):
        self.output = Path(output)
        self.path = self.partial_path(self.output)
        self.resume = resume
        if self.output.exists() and not self.output.is_dir():
            raise RunError(f"--output {self.output} is a file: choose a folder path")
        if self.output.is_dir() and any(self.output.iterdir()) and not overwrite:
            raise RunError(
                f"output folder {self.output} already exists and is not empty: "
                "pass --overwrite to replace it, or choose another --output"
            )
        saved = saved_progress(self.path)
        if resume is None and saved and not overwrite:
            raise RunError(
                f"{self.path} holds an unfinished run ({_describe(saved[-1])}): pass "
                "--resume auto to continue it, or --overwrite to start over"
            )
        if resume == "auto" and not saved:
            raise RunError(f"nothing to resume: no checkpoint in {self.path}; run without --resume")
        if resume not in (None, "auto") and not (Path(resume) / "state.json").is_file():
            raise RunError(f"--resume {resume} is not a checkpoint folder (no state.json)")

    @staticmethod
    def partial_path(output: Path) -> Path:
        """Where a run bound for `output` is written until it is complete."""
        return output.parent / f".{output.name}.partial"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def open(self) -> Path:
        if self.path.exists() and self.resume is None:
            shutil.rmtree(self.path)  # left by an earlier run that died with no checkpoint
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def commit(self) -> Path:
        """Rename into place, then drop the checkpoints and the stages' models (the finished
        model replaces them; the stages' logs stay). Renaming first means a kill at any
        point leaves either a resumable partial folder or a complete output."""
        old = self.output.parent / f".{self.output.name}.old"
        if self.output.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.output, old)
        os.replace(self.path, self.output)
        if old.exists():
            shutil.rmtree(old)
        for leftover in [self.output / "checkpoints", *self.output.glob(f"{STAGES_FOLDER}/*/*")]:
            if leftover.is_dir():
                shutil.rmtree(leftover)
        return self.output

    def abort(self) -> None:
        """Remove the partial folder, unless it holds checkpoints a resume can use."""
        if self.path.exists() and not saved_progress(self.path):
            shutil.rmtree(self.path)


def _describe(progress: Path) -> str:
    if not progress.name.startswith("step-"):
        return f"stage {progress.parent.name} finished"
    if progress.parent.parent.parent.name == STAGES_FOLDER:
        return f"checkpoint {progress.parent.parent.name}/{progress.name}"
    return f"checkpoint {progress.name}"


def write_atomic(path: Path, text: str) -> None:
    """Write `text` aside and rename it into place: a kill leaves the old file or the new."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def save_figure(figure, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    partial = path.with_name(f".{path.name}.partial")
    figure.savefig(partial, dpi=110, format="png")
    plt.close(figure)
    os.replace(partial, path)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def load_yaml_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"config file {path} does not exist: check --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise RunError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise RunError(f"config file {path} must hold a mapping of option: value")
    return {key.replace("-", "_"): value for key, value in data.items()}


def plot_training(records: list[dict], path: Path) -> None:
    """Loss, dev score and replacing rate against optimizer steps, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "loss" in r]
    dev = [r for r in records if "dev" in r]
    rate = [r for r in records if "replacing_rate" in r]
    panels = 3 if rate else 2
    figure, axes = plt.subplots(panels, 1, figsize=(7, 2.4 * panels), sharex=True)
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train])
    axes[0].set_ylabel("training loss")
    # Views ("dev@w0.5-d1", DynaBERT's sub-networks) would crowd the panel; their mean stays.
    for split in [s for s in dev[0]["dev"] if "@" not in s] if dev else []:
        axes[1].plot(
            [r["step"] for r in dev], [r["dev"][split]["score"] for r in dev], "o-", label=split
        )
    axes[1].set_ylabel("dev score")
    if dev:
        axes[1].legend(loc="lower right")
    if rate:
        axes[2].plot([r["step"] for r in rate], [r["replacing_rate"] for r in rate])
        axes[2].set_ylabel("replacing rate p")
        axes[2].set_ylim(-0.02, 1.02)
    axes[-1].set_xlabel("optimizer step")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
