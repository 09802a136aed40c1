"""Run a saved classifier, PyTorch or exported ONNX, on tokenised batches alike."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads in the functions that run a model: the CLI's parser reads
    import torch  # this module's variant table, and must not wait for torch

    from ..extra_inputs import Fill

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"


class DeployError(ValueError):
    """A model folder or deployment setting cannot be used; the message names the fix."""


def is_onnx_folder(path: str | Path) -> bool:
    return (Path(path) / ONNX_FILE).is_file()


def onnx_file(folder: str | Path, int8: bool = False) -> Path:
    path = Path(folder) / (INT8_FILE if int8 else ONNX_FILE)
    if not path.is_file():
        fix = "export it with --int8" if int8 else "export it with 'theseus export --onnx'"
        raise DeployError(f"{path} does not exist: {fix}")
    return path


@dataclass(frozen=True)
class Variant:
    """One deployed form of an export: its file in the export folder and its runtime.

    `exact` variants compute in fp32 and are held to export's --tolerance; the others (int8,
    bf16) are reported: their largest logit difference, label agreement and dev score.
    """

    name: str
    file: str
    runtime: str  # "onnxruntime" or "openvino"
    exact: bool
    precision: str = "f32"  # OpenVINO's inference precision hint


EXPORT_VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("onnx-fp32", ONNX_FILE, "onnxruntime", True),
        Variant("onnx-int8", INT8_FILE, "onnxruntime", False),
        Variant("onnx-fused", "model.fused.onnx", "onnxruntime", True),
        Variant("onnx-fused-int8", "model.fused.int8.onnx", "onnxruntime", False),
        Variant("openvino-fp32", "openvino/model.xml", "openvino", True),
        Variant("openvino-bf16", "openvino/model.xml", "openvino", False, "bf16"),
        Variant("openvino-int8", "openvino/model.int8.xml", "openvino", False),
    )
}


def exported_variants(folder: str | Path) -> list[str]:
    """The variants whose files an export folder holds, in the table's order."""
    return [name for name, v in EXPORT_VARIANTS.items() if (Path(folder) / v.file).is_file()]


def require_openvino():
    """The openvino module, or a DeployError saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise DeployError(
            "OpenVINO is not installed: pip install 'bert-theseus[openvino]' (or pick an "
            "ONNX Runtime variant)"
        ) from None
    return openvino


class ExportedClassifier:
    """An exported classifier: `logits(batch)` like the PyTorch model's, from any variant.

    >>> model = load_variant("exports/successor", "openvino-int8")
    >>> model.logits(tokenizer(["a fine film"], return_tensors="np"))
    """

    input_names: list[str]
    input_types: dict[str, type]
    extra: Fill | None  # computes the graph's inputs past the tokens (see extra_inputs.py)
    extra_names: tuple[str, ...]

    def _extra_inputs(self, folder: Path) -> None:
        """How this graph's inputs past the tokens are computed, as the model that was
        exported computed them (the method that made it registered how)."""
        from ..extra_inputs import for_export
        from ..methods.registry import methods

        methods()  # a plug-in method registers its extra inputs as it loads
        provider = for_export(self.input_names)
        self.extra = provider.load(folder) if provider is not None else None
        self.extra_names = provider.inputs if provider is not None else ()

    def feeds(self, batch) -> dict[str, np.ndarray]:
        """The inputs the graph takes, as arrays of its types (extra keys such as labels
        dropped). Inputs past the tokens are computed here unless given."""
        if self.extra is not None and not all(name in batch for name in self.extra_names):
            batch = {**batch, **self.extra(batch)}
        return {name: _numpy(batch[name]).astype(self.input_types[name])
                for name in self.input_names}  # fmt: skip

    def logits(self, batch) -> np.ndarray:
        raise NotImplementedError


class OnnxClassifier(ExportedClassifier):
    """A variant in ONNX Runtime (`int8` picks model.int8.onnx, `file` any other file)."""

    def __init__(self, folder: str | Path, int8: bool = False, threads: int | None = None,
                 file: str | None = None):  # fmt: skip
        import onnxruntime

        self.path = Path(folder) / file if file else onnx_file(folder, int8)
        if not self.path.is_file():
            raise DeployError(f"{self.path} does not exist: export it ('theseus export --help')")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # ONNX Runtime's threads spin after each run by default, taking the cores from
        # whatever runs next in the process: a PyTorch forward timed right after one took
        # 15 ms instead of 6.7 (MiniLM, 3 layers, batch 1). Without spinning ONNX Runtime
        # itself was no slower (2.17 ms against 2.27).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [node.name for node in self.session.get_inputs()]
        # Token inputs are int64; float ones (a model's extra inputs) float32.
        self.input_types = {node.name: np.float32 if "float" in node.type else np.int64
                            for node in self.session.get_inputs()}  # fmt: skip
        # The graph's one output: a classifier's logits, an embedding export's token states.
        self.output = self.session.get_outputs()[0].name
        self._extra_inputs(Path(folder))

    def logits(self, batch) -> np.ndarray:
        return self.session.run([self.output], self.feeds(batch))[0]


class OpenVINOClassifier(ExportedClassifier):
    """A variant in OpenVINO on the CPU, at an inference precision hint (f32 or bf16)."""

    def __init__(self, folder: str | Path, file: str, precision: str = "f32",
                 threads: int | None = None):  # fmt: skip
        openvino = require_openvino()
        self.path = Path(folder) / file
        if not self.path.is_file():
            raise DeployError(f"{self.path} does not exist: export it with --backend openvino")
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = openvino.Core().compile_model(str(self.path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        inputs = self.compiled.inputs
        self.input_names = [node.get_any_name() for node in inputs]
        self.input_types = {node.get_any_name(): np.float32
                            if node.get_element_type().is_real() else np.int64
                            for node in inputs}  # fmt: skip
        self.output = self.compiled.outputs[0]
        self._extra_inputs(Path(folder))

    def logits(self, batch) -> np.ndarray:
        return self.request.infer(self.feeds(batch))[self.output].copy()


def chosen_variant(folder: str | Path) -> str:
    """The variant `export --backend auto` chose for this folder, else onnx-fp32."""
    import json

    record = Path(folder) / "export.json"
    chosen = json.loads(record.read_text()).get("chosen") if record.is_file() else None
    return chosen["variant"] if chosen else "onnx-fp32"


def load_variant(
    folder: str | Path, name: str, threads: int | None = None, file: str | None = None
):
    """The runner of variant `name` of an export folder; `file` names its graph where the
    folder's layout is not this toolkit's (a sentence-transformers copy's onnx/model.onnx)."""
    if name not in EXPORT_VARIANTS:
        raise DeployError(f"unknown variant '{name}': use one of {', '.join(EXPORT_VARIANTS)}")
    variant = EXPORT_VARIANTS[name]
    file = file or variant.file
    if variant.runtime == "openvino":
        return OpenVINOClassifier(folder, file, variant.precision, threads)
    return OnnxClassifier(folder, threads=threads, file=file)


def torch_logits(model: torch.nn.Module, batch, bf16: bool = False) -> np.ndarray:
    """PyTorch logits as float32 numpy, in eval mode, optionally under bf16 autocast."""
    import torch

    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        return model(**inputs).logits.float().numpy()


def accepted_inputs(model: torch.nn.Module) -> set[str]:
    """The batch keys the model's forward takes (DistilBERT takes no token_type_ids)."""
    import inspect

    return set(inspect.signature(model.forward).parameters)


def model_inputs(model: torch.nn.Module, tokenizer) -> list[str]:
    """The tokenizer outputs the model's forward takes (token_type_ids only where used)."""
    accepted = accepted_inputs(model)
    names = [n for n in tokenizer.model_input_names if n in accepted]
    if "input_ids" not in names:
        raise DeployError(
            f"{type(model).__name__} does not take input_ids: only text classifiers are exported"
        )
    return names


def _numpy(value) -> np.ndarray:
    import torch

    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
