"""After training to a target: export the model to the runtime (verified and scored as
`export` does), then time it against the predecessor on the baseline, side by side in one
process, at the plan's batch and length: the achieved speed-up, not the predicted one."""

from __future__ import annotations

import copy
import statistics
import tempfile
from functools import partial
from pathlib import Path

import torch

from ..registry import ReportInput

EXPORT_FOLDER = "export"  # inside the run folder: the model as the runtime loads it


def target_report(config, run: ReportInput) -> dict:
    """metrics.json's `target` entry; writes the export into the run folder."""
    planned = getattr(config, "planned", None) or {}
    result = {
        "target_speedup": config.target_speedup,
        "target_latency_ms": config.target_latency,
        "route": config.route,
        "depth": config.depth,
        "width": config.width,
        "runtime": config.runtime,
        "baseline": config.baseline,
        "batch_size": config.plan_batch_size,
        "length": config.plan_length,
        "machine": _machine(),
        "planned_speedup": planned.get("speedup"),
        "planned_latency_ms": planned.get("latency_ms"),
    }
    if run.folder is None:  # only the main process writes and times
        return result
    runner, names, exported = _deployed(config, run)
    result.update(exported)
    achieved = _achieved(config, run, runner, names)
    result.update(achieved)
    if result["planned_speedup"]:
        result["achieved_over_planned"] = round(
            achieved["achieved_speedup"] / result["planned_speedup"], 3
        )
    result["retention_percent"] = run.metrics.get("retention_percent")
    result["runtime_retention_percent"] = _runtime_retention(run.metrics, exported)
    result["met"] = _met(config, achieved)
    return result


def _runtime_retention(metrics: dict, exported: dict) -> float | None:
    """The export's dev score (on its runtime: int8 may lose some) in percent of the
    predecessor's; None where nothing was exported or no dev data was given."""
    dev = exported.get("export_check", {}).get("dev")
    before = metrics.get("predecessor_dev") or {}
    if not dev or not before:
        return None
    score = next(iter(before.values()))["score"]
    return round(100 * dev["score"] / score, 2) if score else None


def _met(config, achieved: dict) -> bool | None:
    """Whether the achieved speed (not the planned one) meets the target; None for a shape
    chosen by hand, which has no target."""
    if config.target_speedup is not None:
        return achieved["achieved_speedup"] >= config.target_speedup
    if config.target_latency is not None:
        return achieved["achieved_latency_ms"] <= config.target_latency
    return None


def _deployed(config, run: ReportInput):
    """The model on its runtime: PyTorch itself, or its export (written to the run folder,
    checked against PyTorch and scored on dev by `export`)."""
    from ...deploy.runtime import accepted_inputs, load_variant, torch_logits

    if config.runtime.startswith("torch"):
        bf16 = config.runtime == "torch-bf16"
        model = _on_cpu(run.model)
        return partial(torch_logits, model, bf16=bf16), accepted_inputs(model), {}
    from ...deploy.config import ExportConfig

    backend = "openvino" if "openvino" in config.runtime else "onnxruntime"
    export = ExportConfig(int8=config.runtime.endswith("int8"), backend=backend)
    target = Path(run.folder) / EXPORT_FOLDER
    report = run.export(target, export)  # the job's `export`, on the run's data
    variant = report["variants"][config.runtime]
    runner = load_variant(target, config.runtime, torch.get_num_threads())
    exported = {"export": EXPORT_FOLDER, "export_check": variant}
    return runner.logits, set(runner.input_names), exported


def _achieved(config, run: ReportInput, runner, names: set[str]) -> dict:
    """Seconds per batch of the predecessor on the baseline and of the model on its runtime,
    timed in interleaved rounds on one random batch."""
    from ...plan import PlanConfig
    from ...plan.timing import Candidate, Entry
    from ...speed import interleaved, random_batch

    plan = PlanConfig(batch_size=config.plan_batch_size, length=config.plan_length)
    with tempfile.TemporaryDirectory(prefix="theseus-target-") as scratch:
        predecessor = _on_cpu(run.predecessor)
        baseline = Candidate(predecessor, None, [config.baseline], Path(scratch))
        baseline.prepare(plan, torch.get_num_threads())
        vocab = run.predecessor.config.vocab_size
        batch = random_batch(plan.batch_size, plan.length, vocab, token_types=True)
        calls = [
            partial(Entry(baseline, config.baseline).run, batch),
            partial(runner, {k: v for k, v in batch.items() if k in names}),
        ]
        times = interleaved(calls, plan.warmup, plan.repeats)
    before, after = (statistics.median(t) for t in times)
    return {
        "baseline_ms": round(1000 * before, 2),
        "achieved_latency_ms": round(1000 * after, 2),
        "achieved_speedup": round(before / after, 2),
    }


def _on_cpu(model):
    """A model to time where the plan timed: on the CPU (a copy, if it trained elsewhere)."""
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    return model.eval()


def _machine() -> dict:
    from ...plan.make import machine

    return {**machine(), "threads": torch.get_num_threads()}


def describe(target: dict) -> list[str]:
    """The target's account in plain lines: what was asked, chosen, achieved and kept."""
    asked = (f"{target['target_speedup']:g}x over {target['baseline']}"
             if target.get("target_speedup") else
             f"{target['target_latency_ms']:g} ms per batch" if target.get("target_latency_ms")
             else "a shape chosen by hand")  # fmt: skip
    lines = [
        f"target: {asked} at batch {target['batch_size']} x {target['length']} tokens on "
        f"{target['runtime']} ({target['machine']['cpu']}, {target['machine']['threads']} "
        "threads)",
        f"chosen: depth {target['depth']}, width {target['width']:g}, route {target['route']}"
        + (f"; planned {target['planned_speedup']:.2f}x" if target.get("planned_speedup") else ""),
    ]
    if "achieved_speedup" in target:
        verdict = {True: "met", False: "NOT met", None: "no target"}[target["met"]]
        lines.append(
            f"achieved: {target['achieved_speedup']:.2f}x over the predecessor on "
            f"{target['baseline']} ({target['achieved_latency_ms']:.1f} ms against "
            f"{target['baseline_ms']:.1f} ms per batch, timed side by side): {verdict}; "
            f"retention {target.get('retention_percent')}%"
            + (
                f" ({target['runtime_retention_percent']}% as {target['runtime']})"
                if target.get("runtime_retention_percent")
                else ""
            )
        )
    return lines
