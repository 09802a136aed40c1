"""Configuration of compressing to a target: the budget, the runtime it is measured on, and
the route that trains the shape the plan chooses (light to import: the CLI reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ...plan.config import RUNTIMES
from ..registry import MethodConfigError

# Each route makes the chosen (depth, width) shape its own way; the loss is the same
# (logits and hidden states of the predecessor), so they differ only in the student.
ROUTES = {
    "theseus-width": "module replacing to the depth, then the successor sliced by importance "
    "to the width and distilled from the predecessor",
    "dynabert-cell": "DynaBERT trained on the chosen cell only (rewired predecessor, its "
    "depth rule), the full predecessor its teacher; the cell is extracted",
    "kd-sliced": "the predecessor's layers (--layers) sliced by importance to the width, "
    "distilled from the predecessor (logits and hidden states)",
}
# The predecessor layers kd-sliced may keep: module replacing's successor starts
# (bottom: the bottom --depth layers); auto is resolved by the predecessor (embedding.py).
LAYER_CHOICES = ("auto", "bottom", "first-of-group", "last-of-group", "bottom-last-top")
# The route compress takes when none is named (docs/results.md: measured against the others).
DEFAULT_ROUTE = "kd-sliced"


@dataclass
class TargetConfig:
    """A speed-up (or latency) on a runtime, met by the shape with the most capacity left.

    >>> TargetConfig(target_speedup=8, runtime="onnx-int8")
    >>> TargetConfig(depth=3, width=0.5, route="kd-sliced")   # a shape chosen by hand
    """

    target_speedup: float | None = field(
        default=None,
        metadata={
            "help": "speed-up over the predecessor on --baseline to reach, measured by "
            "'theseus plan' at --plan-batch-size x --plan-length on this machine"
        },
    )
    target_latency: float | None = field(
        default=None,
        metadata={
            "help": "milliseconds per batch of --plan-batch-size x --plan-length to reach "
            "instead (use --plan-batch-size 1 for the latency of one request)"
        },
    )
    runtime: str = field(
        default="auto",
        metadata={
            "help": f"the runtime the model is deployed on: {', '.join(RUNTIMES)}, or auto "
            "(the plan's runtimes; the shape with the most capacity that meets the target on "
            "any of them; with --embedding: torch-fp32)"
        },
    )
    baseline: str = field(
        default="torch-fp32",
        metadata={"help": "the predecessor as it runs today: every speed-up is over it"},
    )
    plan_batch_size: int = field(default=32, metadata={"help": "batch size the plan times"})
    plan_length: int = field(default=128, metadata={"help": "tokens per sequence the plan times"})
    widths: list[float] = field(
        default_factory=lambda: [1.0, 0.75, 0.5, 0.25],
        metadata={"help": "candidate widths: share of heads and FFN neurons kept per layer"},
    )
    plan: str | None = field(
        default=None,
        metadata={
            "identity": False,  # the shape it leads to is recorded (depth, width, runtime)
            "help": "a folder written by 'theseus plan' to choose from instead of measuring",
        },
    )
    route: str | None = field(
        default=None,
        metadata={
            "help": f"how the shape is trained (default: {DEFAULT_ROUTE} in compress, every "
            "route in compare): " + "; ".join(f"{n}: {text}" for n, text in ROUTES.items())
        },
    )
    depth: int | None = field(
        default=None,
        metadata={"help": "layers of the shape (default: the plan's choice)"},
    )
    width: float | None = field(
        default=None, metadata={"help": "width of the shape (default: the plan's choice)"}
    )
    layers: str = field(
        default="auto",
        metadata={
            "help": "the predecessor layers kd-sliced keeps: "
            + ", ".join(LAYER_CHOICES[1:])
            + " (as module replacing starts); auto: a sentence encoder's last-of-group, "
            "else bottom"
        },
    )
    hidden_weight: float = field(
        default=1.0, metadata={"help": "weight of the hidden-state MSE to the predecessor"}
    )
    logit_weight: float = field(
        default=1.0,
        metadata={"help": "weight of the KL to the predecessor's logits (regression: MSE)"},
    )

    def validate(self) -> None:
        if (self.depth is None) != (self.width is None):
            raise MethodConfigError(
                "a shape by hand needs both --depth and --width (or neither: the plan chooses)"
            )
        shape_given = self.depth is not None
        targets = [t for t in (self.target_speedup, self.target_latency) if t is not None]
        if len(targets) > 1:
            raise MethodConfigError("give --target-speedup or --target-latency, not both")
        if not targets and not shape_given:
            raise MethodConfigError(
                "no target: pass --target-speedup X (e.g. 4) or --target-latency MS, or a "
                "shape with --depth and --width"
            )
        if targets and targets[0] <= 0:
            raise MethodConfigError(f"target {targets[0]} must be positive, e.g. 4")
        if self.route is not None and self.route not in ROUTES:
            raise MethodConfigError(f"route '{self.route}' is not one of {', '.join(ROUTES)}")
        for name, value in (("runtime", self.runtime), ("baseline", self.baseline)):
            allowed = RUNTIMES + (("auto",) if name == "runtime" else ())
            if value not in allowed:
                raise MethodConfigError(f"{name} '{value}' is not one of {', '.join(allowed)}")
        if not self.widths or any(not 0.0 < w <= 1.0 for w in self.widths):
            raise MethodConfigError(f"widths {self.widths} must be shares in (0, 1], e.g. 0.5")
        if self.layers not in LAYER_CHOICES:
            raise MethodConfigError(
                f"layers '{self.layers}' is not one of {', '.join(LAYER_CHOICES)}"
            )
        if self.layers not in ("auto", "bottom") and self.route not in (None, "kd-sliced"):
            raise MethodConfigError(
                f"layers '{self.layers}' is route kd-sliced's choice; route '{self.route}' "
                "chooses its own layers (leave --layers out)"
            )
        if self.width is not None and not 0.0 < self.width <= 1.0:
            raise MethodConfigError(f"width {self.width} must be a share in (0, 1], e.g. 0.5")
        if self.depth is not None and self.depth < 1:
            raise MethodConfigError(f"depth {self.depth} must be at least 1 layer")
        if min(self.plan_batch_size, self.plan_length) < 1:
            raise MethodConfigError("plan_batch_size and plan_length must be at least 1")
        for name in ("hidden_weight", "logit_weight"):
            if getattr(self, name) < 0:
                raise MethodConfigError(f"{name} {getattr(self, name)} must be >= 0")

    def check(self, context) -> None:
        """Choose the shape (and, for auto, the runtime) from the plan, before any data is
        read; an unreachable target stops here. The choice is written into the settings, so
        run_config.json records it and a resume must land on the same one."""
        from .choice import choose_shape
        from .embedding import check_embedding, is_sentence_encoder
        from .routes import check_route

        self.route = self.route or DEFAULT_ROUTE
        if is_sentence_encoder(context.predecessor):
            check_embedding(self, context)
        choose_shape(self, context.predecessor)
        check_route(self, context.predecessor)

    def compared(self) -> dict[str, TargetConfig]:
        """The runs `compare` makes of this config: one per route unless one is named."""
        routes = [self.route] if self.route is not None else list(ROUTES)
        return {f"target-{route}": replace(self, route=route) for route in routes}
