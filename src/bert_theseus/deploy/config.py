"""What `export` writes and `benchmark` times: the settings of both commands (light to
import, so the CLI builds its parser without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .runtime import EXPORT_VARIANTS, DeployError
from .variants import BACKENDS

VARIANTS = ("torch-fp32", "torch-bf16", *EXPORT_VARIANTS)
DEFAULT_VARIANTS = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")


@dataclass
class BenchmarkConfig:
    """What to time and how often."""

    variants: list[str] = field(
        default_factory=lambda: list(DEFAULT_VARIANTS),
        metadata={
            "help": f"runtimes to time, of: {', '.join(VARIANTS)} (default: "
            f"{' '.join(DEFAULT_VARIANTS)}; openvino-* need bert-theseus[openvino])"
        },
    )
    lengths: list[int] = field(
        default_factory=lambda: [32, 128], metadata={"help": "sequence lengths (tokens)"}
    )
    latency_batch_size: int = field(default=1, metadata={"help": "batch size of latency"})
    throughput_batch_size: int = field(default=32, metadata={"help": "batch size of throughput"})
    latency_repeats: int = field(default=30, metadata={"help": "timed rounds for latency"})
    throughput_repeats: int = field(default=5, metadata={"help": "timed rounds for throughput"})
    sweep_batch_sizes: list[int] = field(
        default_factory=lambda: [1, 8, 32],
        metadata={"help": "batch sizes of the throughput sweep, at the longest length"},
    )
    warmup: int = field(default=2, metadata={"help": "untimed rounds before each setting"})
    threads: int | None = field(
        default=None, metadata={"help": "threads for PyTorch and ONNX Runtime (default: all)"}
    )
    skip_memory: bool = field(
        default=False,
        metadata={"help": "skip peak memory (measured in one child process per variant)"},
    )

    def validate(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise DeployError(f"unknown variant(s) {unknown}: use any of {', '.join(VARIANTS)}")
        if not self.lengths or min(self.lengths) < 2:
            raise DeployError(f"lengths {self.lengths} must be at least 2 tokens each")
        if self.sweep_batch_sizes and min(self.sweep_batch_sizes) < 1:
            raise DeployError(f"sweep batch sizes {self.sweep_batch_sizes} must be at least 1")
        if min(self.latency_repeats, self.throughput_repeats) < 1 or self.warmup < 0:
            raise DeployError("repeats must be at least 1 and warm-up at least 0")


@dataclass
class ExportConfig:
    """What to export and how closely it must match PyTorch."""

    int8: bool = field(
        default=False,
        metadata={
            "help": "also write each backend's int8 variant (ONNX Runtime: dynamic; OpenVINO: "
            "static by NNCF, calibrated on the dev split or the sample texts)"
        },
    )
    backend: str = field(
        default="onnxruntime",
        metadata={
            "help": "onnxruntime (model.onnx), openvino (also OpenVINO IR: fp32, a bf16 "
            "variant, int8 with --int8; needs bert-theseus[openvino]), or auto (every "
            "variant, timed; the fastest within --auto-tolerance is chosen)"
        },
    )
    fused: bool = field(
        default=False,
        metadata={
            "help": "also write model.fused.onnx: ONNX Runtime's transformer optimizer over an "
            "eager-attention export (and its int8, attention included, with --int8)"
        },
    )
    auto_tolerance: float = field(
        default=0.5,
        metadata={
            "help": "auto: the most dev score (points) a variant may lose against PyTorch "
            "fp32; without dev data a reduced-precision variant must keep every label"
        },
    )
    opset: int = field(default=17, metadata={"help": "ONNX opset version"})
    tolerance: float = field(
        default=1e-3,
        metadata={"help": "largest |logit difference| allowed between fp32 variants and PyTorch"},
    )
    verify_samples: int = field(
        default=256, metadata={"help": "dev examples compared with PyTorch (all are scored)"}
    )

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise DeployError(f"unknown backend '{self.backend}': use one of {', '.join(BACKENDS)}")
        if self.auto_tolerance < 0:
            raise DeployError(f"auto_tolerance {self.auto_tolerance} must not be negative")
