"""What `theseus plan` measures: the runtimes, the batch and the candidate shapes (light to
import, so the CLI builds its parser without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

# The runtimes a plan can time; the ONNX and OpenVINO ones are export variants of the same
# names (deploy/runtime.py).
RUNTIMES = (
    "torch-fp32",
    "torch-bf16",
    "onnx-fp32",
    "onnx-int8",
    "openvino-fp32",
    "openvino-int8",
)
AUTO = ("torch-fp32", "onnx-int8", "openvino-int8")  # what "auto" stands for


class PlanError(ValueError):
    """A plan cannot be made or answered as asked; the message names the fix."""


@dataclass
class PlanConfig:
    """Which shapes to build and on which runtimes to time them against the predecessor.

    >>> PlanConfig(runtime=["onnx-int8"], widths=[1.0, 0.5], length=32).validate()
    """

    runtime: list[str] = field(
        default_factory=lambda: ["auto"],
        metadata={
            "help": f"runtimes you deploy on, any of {', '.join(RUNTIMES)}, auto; auto: "
            f"{', '.join(AUTO)} (openvino-* only where openvino and nncf are installed)"
        },
    )
    baseline: str = field(
        default="torch-fp32",
        metadata={
            "help": "the runtime the predecessor runs on today: every speed-up is over it "
            f"(one of {', '.join(RUNTIMES)})"
        },
    )
    batch_size: int = field(default=32, metadata={"help": "sequences per timed batch"})
    length: int = field(default=128, metadata={"help": "tokens per sequence of the timed batch"})
    widths: list[float] = field(
        default_factory=lambda: [1.0, 0.75, 0.5, 0.25],
        metadata={
            "help": "shares of each layer's attention heads and FFN neurons kept (heads: "
            "round(width x heads), at least 1; neurons: the same share as the heads)"
        },
    )
    depths: list[int] | None = field(
        default=None,
        metadata={"help": "successor layer counts to plan (default: 1 to the predecessor's)"},
    )
    repeats: int = field(default=5, metadata={"help": "timed rounds (the median is kept)"})
    warmup: int = field(default=2, metadata={"help": "untimed rounds before the timed ones"})
    threads: int | None = field(
        default=None,
        metadata={"help": "threads for PyTorch, ONNX Runtime and OpenVINO (default: all)"},
    )

    def validate(self) -> None:
        """Raise PlanError naming the first setting no plan can be made with."""
        unknown = [r for r in self.runtime if r not in (*RUNTIMES, "auto")]
        if unknown or not self.runtime:
            raise PlanError(
                f"unknown runtime(s) {' '.join(unknown) or '(none)'}: use any of "
                f"{', '.join(RUNTIMES)}, auto"
            )
        if self.baseline not in RUNTIMES:
            raise PlanError(f"unknown baseline '{self.baseline}': use one of {', '.join(RUNTIMES)}")
        if self.batch_size < 1 or self.length < 2:
            raise PlanError(
                f"batch size {self.batch_size} x length {self.length}: use a batch of at "
                "least 1 and a length of at least 2 tokens"
            )
        outside = [w for w in self.widths if not 0 < w <= 1]
        if outside or not self.widths:
            raise PlanError(
                f"width(s) {' '.join(map(str, outside)) or '(none)'} outside (0, 1]: a width is "
                "the share of heads and neurons kept, e.g. --widths 1 0.5 0.25"
            )
        if self.depths is not None and (not self.depths or min(self.depths) < 1):
            raise PlanError(f"depths {self.depths} must be layer counts of at least 1")
        if self.repeats < 1 or self.warmup < 0:
            raise PlanError("--repeats must be at least 1 and --warmup at least 0")
        if self.threads is not None and self.threads < 1:
            raise PlanError(f"--threads {self.threads} must be at least 1")
