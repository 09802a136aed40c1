"""Run a saved classifier, PyTorch or exported ONNX, on tokenised batches alike."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

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


class OnnxClassifier:
    """An exported classifier in ONNX Runtime: `logits(batch)` like the PyTorch model's.

    >>> model = OnnxClassifier("exports/successor", int8=True)
    >>> model.logits(tokenizer(["a fine film"], return_tensors="np"))
    """

    def __init__(self, folder: str | Path, int8: bool = False, threads: int | None = None):
        import onnxruntime

        self.path = onnx_file(folder, int8)
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
        # Token inputs are int64; float ones (RefBERT's reference states) float32.
        self.input_types = {node.name: np.float32 if "float" in node.type else np.int64
                            for node in self.session.get_inputs()}  # fmt: skip

        self.references = None
        if "reference_states" in self.input_names:  # a RefBERT export: retrieve as it did
            import json

            from ..methods.refbert.model import load_references

            self.references = load_references(str(folder), {})
            config = json.loads((Path(folder) / "config.json").read_text())
            self.reference_mode = config.get("reference_mode", "nearest")

    def feeds(self, batch) -> dict[str, np.ndarray]:
        """The inputs the graph takes, as arrays of its types (extra keys such as labels
        dropped). A RefBERT export's references are retrieved here unless given."""
        if self.references is not None and "reference_states" not in batch:
            from ..methods.refbert.model import retrieve

            states, mask = retrieve(self.references, self.reference_mode, batch["input_ids"],
                                    batch.get("attention_mask"))  # fmt: skip
            batch = {**batch, "reference_states": states, "reference_mask": mask}
        return {name: _numpy(batch[name]).astype(self.input_types[name])
                for name in self.input_names}  # fmt: skip

    def logits(self, batch) -> np.ndarray:
        return self.session.run(["logits"], self.feeds(batch))[0]


def torch_logits(model: torch.nn.Module, batch, bf16: bool = False) -> np.ndarray:
    """PyTorch logits as float32 numpy, in eval mode, optionally under bf16 autocast."""
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
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
