"""`theseus export`: ONNX with dynamic batch and sequence axes, checked against PyTorch.

The legacy TorchScript exporter is used (`dynamo=False`): the dynamo exporter needs
`onnxscript`, and ONNX Runtime's dynamic quantisation failed shape inference on its
output (probed with torch 2.13).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..commands import DataConfig, _check_labels, _model_labels, load_model, read_data
from ..data.loading import encode, make_loader
from ..metrics import compute_metrics
from ..runs import OutputDir, write_json
from ..training import TrainingConfig
from .runtime import INT8_FILE, ONNX_FILE, DeployError, OnnxClassifier, model_inputs, torch_logits

# Checked when no dev data is given: lengths differ, so padding is exercised.
SAMPLE_TEXTS = [
    "A gripping, beautifully acted film.",
    "Dull.",
    "The plot wanders for an hour before anything happens, and then it ends abruptly.",
    "Shares rose sharply after the company reported record quarterly profits.",
]


@dataclass
class ExportConfig:
    """What to export and how closely it must match PyTorch."""

    int8: bool = field(
        default=False,
        metadata={"help": "also write model.int8.onnx (ONNX Runtime dynamic int8 quantisation)"},
    )
    opset: int = field(default=17, metadata={"help": "ONNX opset version"})
    tolerance: float = field(
        default=1e-3,
        metadata={"help": "largest |logit difference| allowed between ONNX fp32 and PyTorch"},
    )
    verify_samples: int = field(
        default=256, metadata={"help": "dev examples compared with PyTorch (all are scored)"}
    )


class _Logits(nn.Module):
    """The classifier with positional inputs and one output, as the tracer wants it."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).logits


def export_onnx(
    model: str,
    output: str,
    config: ExportConfig,
    data: DataConfig | None = None,
    max_length: int = 128,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> dict:
    """Export `model` to `output/model.onnx` (and `model.int8.onnx`) with its tokenizer and
    config, verify it against PyTorch, and score every variant on dev when data is given.

    >>> export_onnx("runs/successor", "exports/successor", ExportConfig(int8=True),
    ...             DataConfig(task="sst2", data_dir="glue/SST-2"))
    """
    out = OutputDir(output, overwrite)
    classifier, tokenizer = load_model(model, trust_remote_code)
    classifier.eval()
    names = model_inputs(classifier, tokenizer)
    batches, task = _verification_batches(classifier, tokenizer, data, max_length, config)
    # Inputs a model takes besides the tokens (RefBERT's reference states, which the graph
    # takes as inputs: retrieval stays outside it), added to every batch.
    extra = getattr(classifier, "export_inputs", None)
    if extra is not None:
        for batch in batches:
            batch.update(extra(batch))
        extra_names = [name for name in extra(batches[0]) if name not in names]
        names = names + extra_names
    folder = out.open()
    try:
        _trace(classifier, names, batches[0], folder / ONNX_FILE, config.opset,
               extra_names if extra is not None else ())  # fmt: skip
        classifier.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if hasattr(classifier, "export_files"):  # what the graph's extra inputs come from
            classifier.export_files(folder)
        report = {"model": model, "inputs": names, **asdict(config)}
        # PyTorch runs once; both ONNX files and the PyTorch dev score compare against it.
        reference = [torch_logits(classifier, b) for b in batches]
        fp32 = OnnxClassifier(folder)
        report["fp32"] = _check(fp32, reference, batches, config, task, True)
        if config.int8:
            _quantize(folder / ONNX_FILE, folder / INT8_FILE)
            int8 = OnnxClassifier(folder, int8=True)
            report["int8"] = _check(int8, reference, batches, config, task, False)
        if task is not None:
            report["pytorch_fp32"] = _metrics(task, reference, batches)
        report["files"] = {p.name: p.stat().st_size for p in sorted(folder.glob("*.onnx"))}
        write_json(folder / "export.json", report)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return report


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8: weights quantised ahead, activations per batch at run time.

    Only MatMul (the linear layers, where the time goes), with a scale per output channel.
    ONNX Runtime's default also quantises the embedding Gather and uses one scale per
    tensor: on the MiniLM 3-layer SST-2 successor that lost 2.6 points of dev accuracy
    (88.19 -> 85.55); this loses 0.2 (87.96).
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It logs a suggestion to pre-process on the root logger; the graph is already shaped.
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
        )
    finally:
        root.setLevel(level)


def _verification_batches(classifier, tokenizer, data, max_length, config):
    """Tokenised batches to compare on: the dev split when given, else sample texts."""
    if data is None or not (data.task or data.dev_file or data.dataset):
        encoded = tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")
        return [dict(encoded)], None
    task_data = read_data(data, TrainingConfig(), _model_labels(classifier), need_train=False)
    _check_labels(classifier, task_data)
    examples = next(iter(task_data.dev.values()))
    features = encode(examples, tokenizer, max_length, task_data.task.is_regression)
    batches = list(make_loader(features, tokenizer, 32, False))
    return batches, task_data.task


def _trace(classifier, names, batch, path: Path, opset: int, extra=()) -> None:
    # Trace on a batch with padding: a batch without any lets transformers skip building
    # the attention mask, and the trace would bake that branch in.
    example = tuple(batch[name][:4] for name in names)
    mask = dict(zip(names, example, strict=True)).get("attention_mask")
    if mask is not None and bool(mask.all()):
        example = tuple(_pad_one_row(t, name) for t, name in zip(example, names, strict=True))
    # Inputs past the tokens (RefBERT's references) have their own length.
    axes = {name: {0: "batch", 1: "reference" if name in extra else "sequence"}
            for name in names}  # fmt: skip
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        torch.onnx.export(
            _Logits(classifier, names),
            example,
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )


def _pad_one_row(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Append a column so the last row of the example batch ends in padding."""
    column = torch.zeros_like(tensor[:, :1])
    if name == "attention_mask":
        column[:-1] = 1
    elif name == "input_ids":
        column[:] = tensor[:, -1:]
    return torch.cat([tensor, column], dim=1)


def _check(onnx: OnnxClassifier, reference, batches, config, task, strict: bool) -> dict:
    """Largest |logit difference| to PyTorch's `reference` logits over the compared
    examples, and dev metrics."""
    compared, largest, all_logits = 0, 0.0, []
    for batch, expected in zip(batches, reference, strict=True):
        logits = onnx.logits(batch)
        all_logits.append(logits)
        if compared < config.verify_samples:
            largest = max(largest, float(np.abs(logits - expected).max()))
            compared += len(logits)
    if strict and largest > config.tolerance:
        raise ExportMismatch(
            f"ONNX logits differ from PyTorch by up to {largest:.3g} (tolerance "
            f"{config.tolerance:g}) on {compared} examples: the export is wrong for this "
            "model; try another --opset, or report the architecture"
        )
    result = {"max_abs_logit_diff": largest, "examples_compared": compared}
    if task is not None:
        result["dev"] = _metrics(task, all_logits, batches)
    return result


def _metrics(task, logits: list[np.ndarray], batches) -> dict:
    logits = np.concatenate(logits)
    labels = np.concatenate([b["labels"].numpy() for b in batches])
    predictions = logits[:, 0] if task.is_regression else logits.argmax(-1)
    return compute_metrics(task.metric, predictions, labels)


class ExportMismatch(DeployError):
    """The exported graph does not reproduce PyTorch within the tolerance."""
