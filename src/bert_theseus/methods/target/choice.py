"""From a target to a shape: run (or read) the plan and take the shape with the most
capacity that meets the target on the runtime."""

from __future__ import annotations

from ...pooling import say
from ..registry import MethodConfigError


def choose_shape(config, predecessor) -> None:
    """Set `config.depth`, `config.width` and `config.runtime` to the plan's choice, and
    `config.planned` to the chosen row (its measured speed-up, kept for the report)."""
    from ...arch import model_type_of
    from ...compact import UnsupportedArchitectureError, layout_for
    from ...plan import PlanError

    try:
        layout_for(model_type_of(predecessor.config))
    except UnsupportedArchitectureError as error:
        raise MethodConfigError(
            f"a target needs a width cut, which this model lacks: {error}"
        ) from None
    layers = predecessor.config.num_hidden_layers
    if config.depth is not None and config.depth > layers:
        raise MethodConfigError(
            f"depth {config.depth} is more than the predecessor's {layers} layers"
        )
    if config.depth == layers and config.width == 1.0:
        raise MethodConfigError(
            f"depth {layers} at width 1.0 is the predecessor itself: nothing compressed"
        )
    try:
        plan = _given(config, predecessor) if config.plan else _measure(config, predecessor)
        if config.depth is not None and config.width is not None:
            row = _fastest(plan, config)
        else:
            runtime = None if config.runtime == "auto" else config.runtime
            row = plan.choose(config.target_speedup, config.target_latency, runtime)
    except PlanError as error:
        raise MethodConfigError(_as_compress_flags(str(error))) from None
    config.depth, config.width, config.runtime = row["depth"], row["width"], row["runtime"]
    config.planned = row
    say(f"target: depth {row['depth']}, width {row['width']:g} on {row['runtime']}, "
        f"{row['speedup']:.2f}x over {config.baseline} as planned at batch "
        f"{config.plan_batch_size} x {config.plan_length} ({row['capacity']:,} parameters in "
        f"its layers); trained by route {config.route}")  # fmt: skip


def _given(config, predecessor):
    """The plan in `--plan FOLDER`, if it was timed for this predecessor's layers at this
    run's batch, length and baseline (else its speed-ups answer another question)."""
    from ...plan import Plan, PlanError
    from ...plan.shapes import layer_sizes

    try:
        plan = Plan.load(config.plan)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise PlanError(f"--plan {config.plan} holds no plan theseus wrote ({error}): run "
                        "'theseus plan' into it, or leave --plan out") from None  # fmt: skip
    ours = list(layer_sizes(predecessor.config))
    theirs = [plan.baseline["layer_heads"], plan.baseline["layer_intermediate_sizes"]]
    asked = {"batch_size": config.plan_batch_size, "length": config.plan_length,
             "baseline": config.baseline}  # fmt: skip
    timed = {key: plan.settings.get(key) for key in asked}
    if ours != theirs:
        raise PlanError(f"--plan {config.plan} was measured for another model (layers of "
                        f"{theirs[0]} heads): plan this one, or leave --plan out")  # fmt: skip
    if timed != asked:
        raise PlanError(
            f"--plan {config.plan} was timed at batch {timed['batch_size']} x "
            f"{timed['length']} against {timed['baseline']}: pass --plan-batch-size "
            f"{timed['batch_size']} --plan-length {timed['length']} --baseline "
            f"{timed['baseline']}, or leave --plan out"
        )
    return plan


def _measure(config, predecessor):
    from ...plan import PlanConfig, make_plan

    runtimes = ["auto"] if config.runtime == "auto" else [config.runtime]
    shape_given = config.depth is not None and config.width is not None
    plan_config = PlanConfig(
        runtime=runtimes,
        baseline=config.baseline,
        batch_size=config.plan_batch_size,
        length=config.plan_length,
        widths=[config.width] if shape_given else list(config.widths),
        depths=[config.depth] if shape_given else None,
    )
    return make_plan(predecessor, plan_config)


def _fastest(plan, config) -> dict:
    """The hand-chosen shape's row: on the runtime given, or the fastest runtime."""
    from ...plan import PlanError

    rows = [r for r in plan.rows if r["depth"] == config.depth and r["width"] == config.width]
    if config.runtime != "auto":
        rows = [r for r in rows if r["runtime"] == config.runtime]
    if not rows:
        raise PlanError(
            f"the plan has no row for depth {config.depth}, width {config.width:g}"
            f"{'' if config.runtime == 'auto' else ' on ' + config.runtime}: plan it again "
            "without --plan"
        )
    return max(rows, key=lambda r: r["speedup"])


def _as_compress_flags(message: str) -> str:
    """A plan's message, naming the flags as `compress` spells them."""
    for plan_flag, own in (("--length", "--plan-length"), ("--batch-size", "--plan-batch-size")):
        message = message.replace(plan_flag + " ", own + " ")
    return message
