"""Compress to a target: the shape that meets a speed-up (or latency) on the user's runtime
with the most capacity left, chosen from a measured plan (`theseus plan`) and trained by
one of three routes composed from the other methods (ZipLM's point: speed measured on the
deployment runtime, not FLOPs). After training the model is exported to that runtime,
checked as `export` checks, and timed against the predecessor side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import ReportInput, register_method
from .config import ROUTES, TargetConfig

if TYPE_CHECKING:
    from ...training.stages import Stage

__all__ = ["ROUTES", "TargetConfig"]


def build(context, config: TargetConfig) -> list[Stage]:
    from .routes import build_route

    return build_route(context, config)


def report(config: TargetConfig, run: ReportInput) -> dict:
    from .report import target_report

    return {"target": target_report(config, run)}


def summary_lines(metrics: dict) -> list[str]:
    from .report import describe

    target = metrics.get("target")
    return [f"  {line}" for line in describe(target)] if target else []


def card_lines(metrics: dict, split: str) -> list[str]:
    from .report import describe

    target = metrics.get("target")
    return [f"- {line}" for line in describe(target)] + [""] if target else []


register_method(
    "target",
    TargetConfig,
    build,
    summary="the shape that meets --target-speedup on your runtime with the most capacity, "
    "trained by a route of the other methods, exported and timed",
    paper="ZipLM (Kurtić et al., NeurIPS 2023) for runtime-measured targets; routes from "
    "Xu et al. 2020 and Hou et al. 2020",
    report=report,
    summary_lines=summary_lines,
    card_lines=card_lines,
    selected_by=("target_speedup", "target_latency"),
    compare_runs=TargetConfig.compared,
    embedding=True,  # route kd-sliced, on dev pairs (methods/target/embedding.py)
)
