"""`theseus benchmark` of sentence-transformers folders: what is timed is the sentence
embedding, as sentence-transformers computes it, in sentences per second.

The PyTorch variants run the `SentenceEncoder` (the transformer, then the model's own
pooling, dense and normalisation modules); the ONNX and OpenVINO variants run the
exported transformer graph (onnx/model.onnx and the other files of `theseus export`'s
sentence-transformers layout) and the same modules in PyTorch on its token states, which
is what sentence-transformers' `backend="onnx"` and `"openvino"` do. The graph is read
from the folder when it is an export of ours that holds the file, and exported (and
verified against PyTorch) on the fly otherwise.

>>> benchmark(["runs/mpnet", "runs/mpnet-6"], BenchmarkConfig())  # sentences/s, side by side
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from ..deploy.runtime import EXPORT_VARIANTS, DeployError
from .config import is_sentence_transformers

UNIT = "sentences/s"
TIMED = (
    "sentences/s: sentence embeddings (the transformer, then the model's pooling, dense and "
    "normalisation modules; ONNX/OpenVINO: the exported transformer, then those modules)"
)
# Every variant but the fused ones: a sentence-transformers export writes no fused graph.
SUPPORTED = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "openvino-fp32",
             "openvino-bf16", "openvino-int8")  # fmt: skip
NOT_WEIGHTS = ("onnx", "openvino")  # an export's graphs beside the model's own weights


def check(models: list[str], variants: list[str]) -> bool:
    """Whether the models are sentence-transformers folders (timed in sentences/s); refuses
    a mix of those and classifiers, and variants that do not apply to them."""
    kinds = {model: is_sentence_transformers(model) for model in models}
    if not any(kinds.values()):
        return False
    if not all(kinds.values()):
        embedder = next(m for m, kind in kinds.items() if kind)
        other = next(m for m, kind in kinds.items() if not kind)
        raise DeployError(
            f"{embedder} is a sentence-transformers model and {other} is not: their rows "
            "would time different things (sentence embeddings against a classifier's "
            "logits); benchmark them in separate calls"
        )
    unsupported = [v for v in variants if v not in SUPPORTED]
    if unsupported:
        raise DeployError(
            f"--variants {' '.join(unsupported)}: a sentence-transformers model is exported "
            f"without fused graphs; pick among {' '.join(SUPPORTED)}"
        )
    return True


def missing(model: str, variants: list[str]) -> list[str]:
    """The export variants that must be exported to be timed (the folder has no file of
    ours for them)."""
    from .export import SAME_FILE

    present = _exported(Path(model))
    return [v for v in variants if v in EXPORT_VARIANTS and SAME_FILE.get(v, v) not in present]


def entries(path: str, variants: list[str], scratch: Path, threads: int, trust: bool) -> list:
    """The benchmark's entries of one sentence-transformers folder, one per variant."""
    from ..deploy.entry import Entry
    from ..speed import count_parameters
    from .export import graph_bytes, load_runner

    encoder, names = torch_model(path, trust)
    parameters = count_parameters(encoder)
    limits = _limits(encoder)
    folder = Path(path)
    head = _weights(folder, root=False)
    result = []
    for variant in (v for v in ("torch-fp32", "torch-bf16") if v in variants):
        run = partial(_torch_embeddings, encoder, bf16=variant == "torch-bf16")
        weights = _weights(folder, root=True) + head
        result.append(Entry(path, variant, run, parameters, weights, *limits, set(names)))
    exported = [v for v in variants if v in EXPORT_VARIANTS]
    folders = dict.fromkeys(exported, folder)
    absent = missing(path, exported)
    if absent:
        folders.update(dict.fromkeys(absent, _export(path, absent, scratch, trust)))
    for variant in exported:
        runner = load_runner(folders[variant], variant, threads)
        run = partial(_graph_embeddings, runner, encoder)
        # memory: the probe would load the PyTorch transformer beside the graph (the
        # pooling modules come with it), which a deployment of the graph does not.
        result.append(Entry(path, variant, run, parameters, graph_bytes(runner.path) + head,
                             *limits, set(runner.input_names), onnx_folder=folders[variant],
                             memory=False))  # fmt: skip
    return result


def torch_model(path: str, trust: bool = False):
    """The `SentenceEncoder` of the folder and the inputs its transformer takes."""
    from ..deploy.runtime import model_inputs
    from .model import check_installed, load_encoder

    check_installed()
    encoder = load_encoder(path, trust).eval()
    return encoder, model_inputs(encoder.backbone, encoder.tokenizer)


def _torch_embeddings(encoder, batch, bf16: bool = False):
    from ..deploy.runtime import torch_logits

    return torch_logits(encoder, batch, bf16)  # its "logits" are the sentence embeddings


def _graph_embeddings(runner, encoder, batch):
    from .export import embed_graph

    return embed_graph(runner, encoder, batch)


def _exported(folder: Path) -> set[str]:
    """The variants whose files an export of ours (export.json says embedding) holds."""
    from .export import FILES

    record = folder / "export.json"
    if not record.is_file():
        return set()
    report = json.loads(record.read_text())
    files = report.get("files", {}) if report.get("embedding") else {}
    return {name for name, spec in FILES.items()
            if spec.path in files and (folder / spec.path).is_file()}  # fmt: skip


def _export(path: str, variants: list[str], scratch: Path, trust: bool) -> Path:
    """An export of the folder with the files of `variants`, checked against PyTorch."""
    from ..deploy.config import ExportConfig
    from .export import export_embedding

    output = scratch / f"export-{len(list(scratch.iterdir()))}"
    config = ExportConfig(
        int8=any(v.endswith("int8") for v in variants),
        backend="openvino" if any(v.startswith("openvino") for v in variants) else "onnxruntime",
    )
    export_embedding(path, str(output), config, trust_remote_code=trust)
    return output


def _limits(encoder) -> tuple[int, int]:
    """The longest timed length (sentence-transformers truncates at its max_seq_length)
    and the vocabulary."""
    from ..deploy.entry import limits

    positions, vocab = limits(encoder.config)
    longest = encoder.sentence_transformer.max_seq_length or positions
    return min(positions, longest), vocab


def _weights(folder: Path, root: bool) -> int:
    """Bytes of the model's weights: the transformer's (at the top of the folder) when
    `root`, else those of the modules after it (a Dense layer's, in its own folder)."""
    patterns = ("*.safetensors", "pytorch_model*.bin")
    files = [f for pattern in patterns for f in folder.rglob(pattern)]
    top = [f for f in files if f.parent == folder]
    if root:
        return sum(f.stat().st_size for f in top)
    rest = [f for f in files
            if f not in top and f.relative_to(folder).parts[0] not in NOT_WEIGHTS]  # fmt: skip
    return sum(f.stat().st_size for f in rest)
