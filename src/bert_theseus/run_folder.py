"""A run from its stages to its folder: train the stages, measure the final model against
its predecessor, and write the run folder (model, run_config.json, log, plot, card,
metrics.json, then commit it and upload it). The jobs (`commands`, `compare`) describe a
run as a `RunPlan`; this module imports no job."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

from transformers import PreTrainedModel

from .card import push_to_hub, write_model_card
from .data import TaskData
from .data.config import DataConfig
from .data.loading import encode, features_digest
from .methods import get_method
from .methods.registry import ReportInput
from .models import first_line
from .run_setup import encode_splits, score, speed_length
from .runs import OutputDir, RunError, plot_training, write_json
from .speed import count_nonzero, count_parameters, measure_latency
from .training import TrainingConfig, make_accelerator, train
from .training.loop import TRAIN_DATA
from .training.stages import Stage, merged_history, run_stages


@dataclass
class RunPlan:
    """What a run needs: what to train and on what, where to write, what to compare with.

    `model` is what the first stage starts from; `predecessor` the original model and its
    dev scores, for retention and speed-up; `features` the encoded dev (and test) splits and
    `train_features` the encoded training split, when the caller has them already.
    `measure_speed=False` leaves the speed-up to the caller (`compare` times all its runs
    side by side). `report` adds a method's own results (see `MethodSpec.report`);
    `push_to_hub` names a Hub repository to upload the finished folder to."""

    stages: list[Stage]
    model: PreTrainedModel
    tokenizer: object
    task_data: TaskData
    training: TrainingConfig
    out: OutputDir
    settings: dict  # recorded in run_config.json: model, data, method and its config
    predecessor: tuple[PreTrainedModel, dict] | None = None
    accelerator: object = None
    features: dict[str, list[dict]] | None = None
    train_features: list[dict] | None = None
    measure_speed: bool = True
    push_to_hub: str | None = None
    trust_remote_code: bool = False
    report: Callable[[ReportInput], dict] | None = None

    def filled(self) -> RunPlan:
        """The plan with its accelerator and encoded splits made where the caller gave none."""
        training, task = self.training, self.task_data.task
        if self.accelerator is None:
            self.accelerator = make_accelerator(training)
        if self.train_features is None:
            self.train_features = encode(self.task_data.training_rows(), self.tokenizer,
                                         training.max_length, task.is_regression)  # fmt: skip
        if self.features is None:
            self.features = encode_splits(self.task_data, self.tokenizer, training)
        return self


def execute(plan: RunPlan) -> dict:
    """Train the plan's stages, then save the final model and the run's files (and upload
    them, from the main process); return metrics.json's contents."""
    plan = plan.filled()
    accelerator, out = plan.accelerator, plan.out
    folder = out.open() if accelerator.is_main_process else None
    try:
        final, stage_results = _train(plan, folder is not None)
        metrics = run_metrics(plan, final, stage_results)
        if plan.predecessor is not None:
            _against_predecessor(plan, final, metrics, folder)
        if folder is not None:
            write_run_folder(plan, folder, final, stage_results, metrics)
    except BaseException:
        if folder is not None:  # the main process owns the folder
            out.abort()
        raise
    accelerator.wait_for_everyone()  # the others return once the folder is complete
    return metrics


def _train(plan: RunPlan, main: bool):
    """The stages run one after the other (resumed where a checkpoint says)."""
    dev_features = {split: f for split, f in plan.features.items() if split != "test"}
    train_stage = partial(
        _train_stage,
        train_features=plan.train_features,
        dev_features=dev_features,
        task=plan.task_data.task,
        tokenizer=plan.tokenizer,
        accelerator=plan.accelerator,
    )
    match = {"method_config": plan.settings["config"]} if "config" in plan.settings else {}
    match[TRAIN_DATA] = features_digest(plan.train_features)
    return run_stages(
        plan.stages,
        plan.model,
        plan.training,
        train_stage,
        plan.out.path,
        main,
        plan.out.resume,
        plan.accelerator.wait_for_everyone,
        match,
        plan.trust_remote_code,
    )


def _train_stage(model, method, config, run_dir, checkpoint, settings, **fixed):
    return train(model, method, config=config, run_dir=run_dir, resume=checkpoint,
                 settings=settings, **fixed)  # fmt: skip


def run_metrics(plan: RunPlan, final: PreTrainedModel, stage_results) -> dict:
    """metrics.json's account of the training itself: scores, steps, sizes, what ran."""
    result = stage_results[-1].result
    # Steps count across stages, as in train_log.jsonl.
    offset = sum(stage.result.steps for stage in stage_results[:-1])
    metrics = {
        "method": plan.settings.get("method", "finetune"),
        "task": plan.task_data.task.name,
        "model": plan.settings["model"],
        "dev": result.best_dev,
        "best_step": result.best_step + offset,
        "steps": sum(stage.result.steps for stage in stage_results),
        "train_seconds": round(sum(s.result.train_seconds for s in stage_results), 1),
        "parameters": count_parameters(final),
        "nonzero_parameters": count_nonzero(final),
        "layers": final.config.num_hidden_layers,
        "data": plan.task_data.sources,
        # What it trained on: labelled examples, and rows that taught the teacher term alone.
        **_training_examples(plan),
        # Evaluations where the model answered one class (or value) for all of dev.
        "constant_output_steps": [step + offset for step in result.constant_steps],
        "constant_at_best": result.best_step in result.constant_steps,
        # What ran: --mixed-precision auto resolved (bf16, fp16 or no).
        "mixed_precision": plan.accelerator.mixed_precision,
    }
    if result.constant_views:  # the views (sub-networks) answering one thing at the best step
        at_best = [views for step, views in result.constant_views if step == result.best_step]
        metrics["constant_views_at_best"] = at_best[0] if at_best else []
    if len(stage_results) > 1:
        metrics["stages"] = [_stage_metrics(stage) for stage in stage_results]
    elif result.summary:  # a one-stage method's own account (its teacher cache, say)
        metrics.update(result.summary)
    if "test" in plan.features:
        test = {"test": plan.features["test"]}
        metrics.update(score(final, test, plan.tokenizer, plan.training, plan.task_data,
                             plan.accelerator))  # fmt: skip
    return metrics


def _training_examples(plan: RunPlan) -> dict:
    """The training examples by kind (a sentence-embedding run's sentences have no labels:
    its own report counts them)."""
    if "embedding" in plan.settings:
        return {}
    return {"training_examples": plan.task_data.example_counts()}


def _against_predecessor(plan: RunPlan, final, metrics: dict, folder) -> None:
    """Add retention, speed-up and the method's own report, measured against the
    predecessor, to `metrics`."""
    reference, before = plan.predecessor
    accelerator = plan.accelerator
    metrics["predecessor_dev"] = before
    metrics.update(_retention(reference, before, metrics["dev"]))
    # The main process times alone: timings beside the others' work measure contention.
    if plan.measure_speed and accelerator.is_main_process:
        metrics.update(_speedup(reference, final, plan.training, accelerator))
    # The method's own results (LadaBERT's budget, RefBERT's storage and latency), in
    # `compare` too, which leaves the speed-up to its side-by-side timing.
    if plan.report is not None and accelerator.is_main_process:
        length, bf16 = _speed_setting(final, plan.training, accelerator)
        export = partial(_export, plan, final)
        report = ReportInput(final, reference, metrics, folder, length, bf16, export)
        metrics.update(plan.report(report))


def _export(plan: RunPlan, final, target, config) -> dict:
    """`theseus export` of the final model into `target`, verified and scored on the run's
    dev data; the run owns the folder, so a resume replaces what a killed run left."""
    from .deploy.export import export_onnx

    data = DataConfig(**plan.settings["data"]) if "data" in plan.settings else None
    with tempfile.TemporaryDirectory(prefix="theseus-export-") as scratch:
        final.save_pretrained(scratch)
        plan.tokenizer.save_pretrained(scratch)
        return export_onnx(scratch, str(target), config, data, plan.training.max_length,
                           overwrite=True, trust_remote_code=plan.trust_remote_code)  # fmt: skip


def write_run_folder(plan: RunPlan, folder, final, stage_results, metrics: dict) -> None:
    """Save the model and the run's files in the open folder, then commit and upload it."""
    training = plan.training
    config = {**plan.settings, "training": asdict(training)}
    final.save_pretrained(folder)
    plan.tokenizer.save_pretrained(folder)
    write_json(folder / "run_config.json", config)
    history = merged_history(stage_results)
    if len(stage_results) > 1:  # a one-stage run's log is written as it trains
        _write_log(folder / "train_log.jsonl", history)
    plot_training(history, folder / "training.png")
    method = get_method(plan.settings["method"]) if "config" in plan.settings else None
    write_model_card(folder, metrics, plan.settings, training, plan.push_to_hub, method)
    write_json(folder / "metrics.json", metrics)  # last: its presence marks completion
    plan.out.commit()
    _push(plan.out, plan.push_to_hub, metrics)


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


def _retention(reference, before: dict, best_dev: dict) -> dict:
    """The successor's dev score in percent of its predecessor's."""
    split = next(iter(before))
    score_before, score_after = before[split]["score"], best_dev[split]["score"]
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
