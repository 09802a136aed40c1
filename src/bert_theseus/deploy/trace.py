"""Tracing a classifier to an ONNX graph with dynamic batch and sequence axes: the step
`export` verifies and `plan` times (light: it reads no data and knows no job)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class _Logits(nn.Module):
    """The model with positional inputs and one output (`output`, an attribute of the
    model's output: a classifier's logits, an encoder's last_hidden_state), as the tracer
    wants it."""

    def __init__(self, model: nn.Module, names: list[str], output: str = "logits"):
        super().__init__()
        self.model, self.names, self.output = model, names, output

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(**dict(zip(self.names, inputs, strict=True))), self.output)


def trace_onnx(classifier: nn.Module, names: list[str], batch: dict, path: Path,
               opset: int = 17) -> None:  # fmt: skip
    """Write `classifier` as an ONNX graph of the inputs `names` (dynamic batch and sequence
    axes) to `path`, traced on `batch`, as `export` does; nothing is verified here.

    >>> trace_onnx(model, ["input_ids", "attention_mask"], batch, Path("scratch/model.onnx"))
    """
    trace(classifier, names, batch, path, opset)


def trace(classifier, names, batch, path: Path, opset: int, extra=(), output="logits") -> None:
    # Trace on a batch with padding: a batch without any lets transformers skip building
    # the attention mask, and the trace would bake that branch in.
    example = tuple(batch[name][:4] for name in names)
    mask = dict(zip(names, example, strict=True)).get("attention_mask")
    if mask is not None and bool(mask.all()):
        example = tuple(_pad_one_row(t, name) for t, name in zip(example, names, strict=True))
    # Inputs past the tokens (a model's `export_inputs`) have their own length.
    axes = {name: {0: "batch", 1: "reference" if name in extra else "sequence"}
            for name in names}  # fmt: skip
    # Logits have one row per text; token states (last_hidden_state) one per token too.
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        torch.onnx.export(
            _Logits(classifier, names, output),
            example,
            str(path),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
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
