"""`theseus plan`: which successor shape meets a speed budget on the runtime you deploy on.

Every depth x width the compression methods can train is built from the predecessor's
own weights, exported to each runtime and timed side by side against the predecessor as it
runs today. The settings import light; the rest loads on first use.

>>> plan = make_plan("runs/teacher", PlanConfig(runtime=["onnx-int8"]))
>>> row = plan.choose(target_speedup=8, runtime="onnx-int8")
>>> row["depth"], row["width"], row["speedup"]
"""

from ..lazy import lazy_exports
from .config import RUNTIMES, PlanConfig, PlanError

__all__ = [
    "RUNTIMES",
    "Plan",
    "PlanConfig",
    "PlanError",
    "Shape",
    "make_plan",
    "run_plan",
    "summary",
    "untrained",
    "with_weights_of",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "Plan": ".result",
        "Shape": ".shapes",
        "untrained": ".shapes",
        "with_weights_of": ".shapes",
        "make_plan": ".make",
        "run_plan": ".make",
        "summary": ".make",
    },
)
