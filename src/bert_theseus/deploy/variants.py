"""Building the deployed forms of an export from its `model.onnx`: ONNX Runtime's fused graph
and int8 of each graph, and OpenVINO's fp32 and NNCF int8 (the bf16 variant is a run-time hint
on the fp32 file). Each builder writes its file; `export` verifies and scores it."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .runtime import EXPORT_VARIANTS, require_openvino

BACKENDS = ("onnxruntime", "openvino", "auto")


@contextmanager
def _quiet():
    """ONNX Runtime's and NNCF's tools log advice to the root logger; the graphs are ours."""
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def quantize_dynamic_int8(source: Path, target: Path, fused: bool = False) -> None:
    """Dynamic int8: weights quantised ahead, activations per batch at run time.

    Only MatMul (the linear layers, where the time goes) and, in a fused graph, the fused
    Attention op too, with a scale per output channel. ONNX Runtime's default also quantises
    the embedding Gather and uses one scale per tensor, which lost far more dev accuracy on
    the MiniLM 3-layer SST-2 successor than this (docs/results.md section 4).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ["MatMul", "Attention"] if fused else ["MatMul"]
    # Fused graphs hold contrib ops that shape inference cannot type: their outputs are float.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT} if fused else {}
    with _quiet():
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                         per_channel=True, extra_options=extra)  # fmt: skip


def fuse(eager_onnx: Path, target: Path, config) -> dict[str, int]:
    """ONNX Runtime's transformer optimizer over a graph exported with eager attention (its
    pattern matcher finds attention only there); returns the fused operators' counts."""
    from onnxruntime.transformers import optimizer

    heads = getattr(config, "num_attention_heads", getattr(config, "n_heads", 0))
    hidden = getattr(config, "hidden_size", getattr(config, "dim", 0))
    with _quiet():
        model = optimizer.optimize_model(str(eager_onnx), model_type="bert", num_heads=heads,
                                         hidden_size=hidden)  # fmt: skip
        model.save_model_to_file(str(target))
    return {k: v for k, v in model.get_fused_operator_statistics().items() if v}


def attention_fused(counts: dict[str, int]) -> bool:
    return any(counts.get(op) for op in ("Attention", "MultiHeadAttention"))


def openvino_fp32(onnx_path: Path, folder: Path, file: str | None = None) -> Path:
    """The ONNX graph as OpenVINO IR at `folder/file` (default: the export's), weights kept
    in fp32."""
    openvino = require_openvino()
    target = folder / (file or EXPORT_VARIANTS["openvino-fp32"].file)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        model = openvino.convert_model(str(onnx_path))
        openvino.save_model(model, str(target), compress_to_fp16=False)
    return target


def openvino_int8(folder: Path, calibration: list[dict[str, np.ndarray]],
                  source: str | None = None, file: str | None = None) -> Path:  # fmt: skip
    """Static int8 by NNCF's post-training quantisation (transformer preset) of the fp32 IR
    `folder/source` to `folder/file` (default: the export's files), calibrated on
    `calibration` (the dev split's batches when given, else sample texts)."""
    openvino = require_openvino()
    try:
        import nncf
    except ImportError:
        from .runtime import DeployError

        raise DeployError("NNCF is not installed: pip install 'bert-theseus[openvino]'") from None
    source = folder / (source or EXPORT_VARIANTS["openvino-fp32"].file)
    target = folder / (file or EXPORT_VARIANTS["openvino-int8"].file)
    model = openvino.Core().read_model(str(source))
    with _quiet():
        nncf.set_log_level(logging.ERROR)
        # subset_size counts the dataset's items, here batches: all of them
        quantized = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration),
                                  model_type=nncf.ModelType.TRANSFORMER)  # fmt: skip
        openvino.save_model(quantized, str(target), compress_to_fp16=False)
    return target
