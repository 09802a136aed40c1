"""Deployment: ONNX export (fp32 and dynamic int8), side-by-side benchmarks, prediction.

The settings and the variant table import light; the rest loads on first use (torch)."""

from ..lazy import lazy_exports
from .config import VARIANTS, BenchmarkConfig, ExportConfig
from .runtime import DeployError, OnnxClassifier, is_onnx_folder

__all__ = [
    "VARIANTS",
    "BenchmarkConfig",
    "DeployError",
    "ExportConfig",
    "ExportMismatch",
    "OnnxClassifier",
    "benchmark",
    "export_onnx",
    "format_table",
    "is_onnx_folder",
    "predict_texts",
    "read_texts",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "benchmark": ".benchmark",
        "format_table": ".benchmark",
        "ExportMismatch": ".export",
        "export_onnx": ".export",
        "predict_texts": ".predict",
        "read_texts": ".predict",
    },
)
