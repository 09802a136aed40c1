"""Methods as a sequence of stages, each a run of the one training loop.

A stage has its own model, `Method` (loss, teacher, trained parameters) and length. A
one-stage method trains in the run folder itself, as every method did before stages
existed. A method of several stages trains stage i in `stages/<i>-<name>/`, with its own
checkpoints and log; a finished stage leaves `result.json` and its final model (`model/`),
from which the next stage starts. A resume skips finished stages, reloads the last one's
model and continues inside the stage that was running, so a killed run ends bit for bit
where an uninterrupted one would (on CPU): the next stage always starts from the model
read back from disk, in an uninterrupted run too, and from freshly seeded generators.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from accelerate.utils import set_seed
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from .checkpoint import Checkpoint, list_checkpoints, load_checkpoint
from .config import TrainingConfig, TrainingConfigError
from .loop import Method, TrainingError, TrainResult, comparable, trajectory

STAGES_FOLDER = "stages"
RESULT_FILE = "result.json"
MODEL_FOLDER = "model"


@dataclass
class Stage:
    """One run of the shared loop inside a method.

    `start(model)` receives the previous stage's final model (the predecessor for the first
    stage, which it must not change: copy what it trains) and returns the model to train
    and the `Method` that trains it. `training` overrides TrainingConfig fields for this
    stage only. `share` is the stage's part of the run's epochs: a stage trains the run's
    epochs times `share` (1.0: all of them). A step budget (`max_steps`) is the whole run's:
    `step_budgets` splits it over the stages in proportion to their shares, so
    `--max-steps N` trains N optimizer steps in all, whatever the method. A stage whose
    `training` fixes its own `max_steps` keeps them, outside the split.

    >>> Stage("width", lambda model: (copy.deepcopy(model), WidthMethod(...)), {"epochs": 1})
    """

    name: str
    start: Callable[[PreTrainedModel], tuple[PreTrainedModel, Method]]
    training: dict = field(default_factory=dict)
    share: float = 1.0

    def config(self, training: TrainingConfig, steps: int | None = None) -> TrainingConfig:
        """The run's training settings as this stage uses them; `steps` is its part of the
        run's step budget (see `step_budgets`)."""
        config = replace(training, **self.training)
        if "max_steps" not in self.training:
            config = replace(config, max_steps=steps)
        if self.share == 1.0:
            return config
        return replace(config, epochs=config.epochs * self.share)


def step_budgets(stages: list[Stage], max_steps: int | None) -> list[int | None]:
    """Each stage's optimizer steps out of the run's `max_steps`, in proportion to the
    stages' shares and adding up to it exactly (cut at rounded cumulative shares; a stage
    rounded down to none takes one from the largest). Stages that fix their own max_steps
    are left out of the split."""
    split = [i for i, stage in enumerate(stages) if "max_steps" not in stage.training]
    budgets: list[int | None] = [None] * len(stages)
    if not max_steps or not split:
        return budgets
    if max_steps < len(split):
        raise TrainingConfigError(
            f"--max-steps {max_steps} is fewer than this method's {len(split)} training "
            f"stages (each needs a step): give --max-steps {len(split)} or more"
        )
    total = sum(stages[i].share for i in split)
    cuts, taken = [], 0.0
    for i in split:
        taken += stages[i].share
        cuts.append(round(max_steps * taken / total))
    steps = [end - start for start, end in zip([0, *cuts[:-1]], cuts, strict=True)]
    while 0 in steps:  # rounding left a stage none: the largest gives it one
        steps[steps.index(max(steps))] -= 1
        steps[steps.index(0)] = 1
    for i, count in zip(split, steps, strict=True):
        budgets[i] = count
    return budgets


@dataclass
class StageResult:
    name: str
    result: TrainResult


TrainStage = Callable[
    [PreTrainedModel, Method, TrainingConfig, Path | None, Checkpoint | None, dict], TrainResult
]


def stage_dirs(partial: Path, stages: list[Stage]) -> list[Path]:
    """Where each stage trains: the run folder itself for a one-stage method."""
    if len(stages) == 1:
        return [partial]
    return [partial / STAGES_FOLDER / f"{i + 1}-{s.name}" for i, s in enumerate(stages)]


def saved_progress(partial: Path) -> list[Path]:
    """Checkpoints and finished stages under a partial run folder: what a resume can use."""
    found = list_checkpoints(partial / "checkpoints")
    for stage in sorted((partial / STAGES_FOLDER).glob("*")):
        found += list_checkpoints(stage / "checkpoints")
        if (stage / RESULT_FILE).is_file():
            found.append(stage / RESULT_FILE)
    return found


def run_stages(
    stages: list[Stage],
    predecessor: PreTrainedModel,
    training: TrainingConfig,
    train_stage: TrainStage,
    partial: Path,
    write: bool,
    resume: str | None,
    barrier: Callable[[], None] = lambda: None,
    match: dict | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, list[StageResult]]:
    """Train every stage in order; return the last stage's final model and each result.

    `partial` is the run's partial folder (written only where `write`), `resume` None,
    "auto" or a checkpoint path. `train_stage(model, method, config, run_dir, checkpoint,
    settings)` runs the shared loop. `match` holds what else a resume must match (the
    method's registered settings).
    """
    dirs = stage_dirs(partial, stages)
    explicit = _explicit_stage(resume, dirs) if resume not in (None, "auto") else None
    model, results = predecessor, []
    budgets = step_budgets(stages, training.max_steps)
    for index, (stage, folder) in enumerate(zip(stages, dirs, strict=True)):
        last = index == len(stages) - 1
        config = stage.config(training, budgets[index])
        settings = {**(match or {}), **({"stage": stage.name} if len(stages) > 1 else {})}
        expected = {**settings, "training": stage_settings(config)}
        if resume is not None and not last and (folder / RESULT_FILE).is_file():
            if explicit is not None and index >= explicit:
                raise TrainingError(
                    f"--resume {resume} is inside stage '{stage.name}', which has finished: "
                    "use --resume auto"
                )
            results.append(StageResult(stage.name, _load_result(folder, expected)))
            model = _load_stage_model(folder, trust_remote_code)
            continue
        checkpoint = _stage_checkpoint(resume, folder, index, explicit)
        if explicit is not None and index < explicit:
            raise TrainingError(
                f"--resume {resume} is in a later stage, but stage '{stage.name}' has not "
                "finished: use --resume auto"
            )
        set_seed(config.seed)  # whatever `start` draws, it draws alike on a resume
        trained, method = stage.start(model)
        run_dir = folder if write else None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
        result = train_stage(trained, method, config, run_dir, checkpoint, settings)
        final = method.finalize(trained)
        result.summary = method.summary(final)
        results.append(StageResult(stage.name, result))
        if last:
            return final, results
        if write:
            final.save_pretrained(folder / MODEL_FOLDER)
            _save_result(folder, result, expected)  # marks the stage finished
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # no longer needed
        barrier()
        del trained, final
        model = _load_stage_model(folder, trust_remote_code)
    raise AssertionError("unreachable: the last stage returns")


def _explicit_stage(resume: str, dirs: list[Path]) -> int:
    """The index of the stage whose checkpoints hold the explicit `resume` path."""
    path = Path(resume).resolve()
    if len(dirs) == 1:
        return 0
    for index, folder in enumerate(dirs):
        if folder.resolve() in path.parents:
            return index
    raise TrainingError(
        f"--resume {resume} is not a checkpoint of this run's stages (under "
        f"{dirs[0].parent}): use --resume auto"
    )


def _stage_checkpoint(resume, folder: Path, index: int, explicit: int | None):
    if resume is None:
        return None
    if explicit is not None:
        return load_checkpoint(Path(resume)) if index == explicit else None
    saved = list_checkpoints(folder / "checkpoints")
    return load_checkpoint(saved[-1]) if saved else None


def stage_settings(config: TrainingConfig) -> dict:
    """The training settings a finished stage was made with, as JSON reads them back."""
    return json.loads(json.dumps(trajectory(config), default=str))


def _save_result(folder: Path, result: TrainResult, settings: dict) -> None:
    fields = {
        "settings": settings,
        "best_step": result.best_step,
        "best_dev": result.best_dev,
        "steps": result.steps,
        "train_seconds": result.train_seconds,
        "constant_steps": result.constant_steps,
        "constant_views": result.constant_views,
        "summary": result.summary,
    }
    partial = folder / f".{RESULT_FILE}.partial"  # a kill mid-write leaves no torn file
    partial.write_text(json.dumps(fields, indent=2) + "\n")
    os.replace(partial, folder / RESULT_FILE)


def _load_result(folder: Path, expected: dict) -> TrainResult:
    saved = json.loads((folder / RESULT_FILE).read_text())
    settings = saved.pop("settings", None) or {}
    expected = comparable(settings, expected)
    if settings != json.loads(json.dumps(expected, default=str)):
        changed = sorted(k for k in expected if settings.get(k) != expected.get(k))
        raise TrainingError(
            f"finished stage {folder.name} belongs to a different run ({', '.join(changed)} "
            "differ): resume with the original command, or start over with --overwrite"
        )
    log = folder / "train_log.jsonl"
    history = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    return TrainResult(history=history, **saved)


def _load_stage_model(folder: Path, trust_remote_code: bool = False) -> PreTrainedModel:
    return AutoModelForSequenceClassification.from_pretrained(
        folder / MODEL_FOLDER, trust_remote_code=trust_remote_code
    )


def merged_history(results: list[StageResult]) -> list[dict]:
    """Every stage's log records in order, steps counted across stages, each naming its
    stage (a one-stage run's records are returned as they are)."""
    if len(results) == 1:
        return results[0].result.history
    merged, offset = [], 0
    for stage in results:
        for record in stage.result.history:
            merged.append({**record, "stage": stage.name, "step": record["step"] + offset})
        offset += stage.result.steps
    return merged
