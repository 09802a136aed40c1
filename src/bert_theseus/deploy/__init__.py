"""Deployment: ONNX export (fp32 and dynamic int8), side-by-side benchmarks, prediction."""

from .benchmark import VARIANTS, BenchmarkConfig, benchmark, format_table
from .export import ExportConfig, ExportMismatch, export_onnx
from .predict import predict_texts, read_texts
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
