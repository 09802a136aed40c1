"""`theseus export` of a sentence-transformers folder: a copy of the folder with the
transformer's graph where sentence-transformers' `backend="onnx"` and `backend="openvino"`
load it, each file verified against PyTorch.

sentence-transformers' backends run only the transformer from the file (inputs
input_ids, attention_mask and token_type_ids where the model takes them; output
last_hidden_state, the token states) and keep pooling, dense layers and normalisation as
its torch modules, so that graph is what is exported. Verification runs each file in the
project's runners (ONNX Runtime, OpenVINO), the model's own sentence-transformers modules
on the token states it returns, and compares the sentence embeddings with the PyTorch
model's: an fp32 file must reach a cosine of MIN_COSINE on every sentence and stay within
--tolerance on every value, or nothing is written; int8 files are reported.

>>> export_embedding("runs/mpnet-6", "exports/mpnet-6", ExportConfig(int8=True))
>>> SentenceTransformer("exports/mpnet-6", backend="onnx")
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.config import DataConfig
from ..data.readers import DataError
from ..deploy.config import ExportConfig
from ..deploy.export import SAMPLE_TEXTS, ExportMismatch
from ..deploy.runtime import (
    EXPORT_VARIANTS,
    DeployError,
    load_variant,
    model_inputs,
    require_openvino,
    torch_logits,
)
from ..deploy.trace import trace
from ..deploy.variants import openvino_fp32, openvino_int8, quantize_dynamic_int8
from ..metrics import compute_metrics, row_cosines
from ..pooling import say
from ..runs import OutputDir, input_paths, write_json
from .config import PAIR_COLUMNS, PAIR_LABEL
from .data import Pair, read_pairs, sentence_lines
from .model import SentenceEncoder, check_installed, load_encoder

MIN_COSINE = 0.9999  # an fp32 file's least cosine to PyTorch's embedding of a sentence
OUTPUT = "last_hidden_state"  # the output name sentence-transformers' backends read
BATCH = 32
CALIBRATION = 300  # sentences NNCF calibrates OpenVINO's int8 on, at most


@dataclass(frozen=True)
class BackendFile:
    """Where sentence-transformers looks for a variant of deploy's table (which gives its
    runtime, and whether it is held to fp32's bounds) and how it is loaded."""

    variant: str
    path: str  # in the folder
    backend: str  # SentenceTransformer(folder, backend=...)

    @property
    def load(self) -> dict:
        """The arguments of `SentenceTransformer(folder, **load)` that load this file."""
        return {"backend": self.backend, "model_kwargs": {"file_name": Path(self.path).name}}


# sentence-transformers' names: its own default (onnx/model.onnx, openvino/openvino_model.xml)
# and, for int8, those its export_*_quantized_* functions give a file of their own settings.
FILES = {
    f.variant: f
    for f in (
        BackendFile("onnx-fp32", "onnx/model.onnx", "onnx"),
        BackendFile("onnx-int8", "onnx/model_qint8_quantized.onnx", "onnx"),
        BackendFile("openvino-fp32", "openvino/openvino_model.xml", "openvino"),
        BackendFile("openvino-int8", "openvino/openvino_model_qint8_quantized.xml", "openvino"),
    )
}
NOT_COPIED = ("onnx", "openvino", "export.json")  # the model's own exports: this one replaces
SAME_FILE = {"openvino-bf16": "openvino-fp32"}  # the fp32 graph at OpenVINO's bf16 hint


def export_embedding(
    model: str,
    output: str,
    config: ExportConfig,
    data: DataConfig | None = None,
    max_length: int = 128,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> dict:
    """Copy the sentence-transformers folder `model` to `output` with onnx/model.onnx (and
    the other files the settings ask for), verify every file and write export.json."""
    check_settings(config, data)
    check_installed()
    if config.backend == "openvino":
        require_openvino()  # before any work
    encoder = load_encoder(model, trust_remote_code).eval()
    names = model_inputs(encoder.backbone, encoder.tokenizer)
    texts, pairs = _texts(data)
    batches = _batches(encoder, texts, max_length)
    out = OutputDir(output, overwrite, inputs=input_paths(model, data))
    folder = out.open()
    try:
        report = {"model": model, "embedding": True, "inputs": names, "output": OUTPUT,
                  **asdict(config), "required_cosine": MIN_COSINE, "notices": []}  # fmt: skip
        _copy(Path(model), folder, report)
        built = _build(encoder, names, batches, folder, config)
        reference = [torch_logits(encoder, batch) for batch in batches]
        report["variants"] = {
            name: _check(name, folder, encoder, batches, reference, config, texts, pairs)
            for name in built
        }
        report["fp32"] = report["variants"]["onnx-fp32"]
        if "onnx-int8" in built:
            report["int8"] = report["variants"]["onnx-int8"]
        if pairs:
            report["pytorch_fp32"] = {"dev": _pair_scores(reference, texts, pairs)}
        report["files"] = {FILES[name].path: graph_bytes(folder / FILES[name].path)
                           for name in built}  # fmt: skip
        write_json(folder / "export.json", report)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return report


def check_settings(config: ExportConfig, data: DataConfig | None) -> None:
    """Refuse, in one line, what does not apply to a sentence-transformers model."""
    config.validate()
    if config.backend == "auto":
        raise DeployError(
            "--backend auto does not apply to a sentence-transformers model (its user picks "
            "the file when loading, with backend= and file_name): pass --backend onnxruntime "
            "or --backend openvino"
        )
    if config.fused:
        raise DeployError(
            "--fused does not apply to a sentence-transformers model: it is exported as "
            "onnx/model.onnx (and int8 with --int8); leave out --fused"
        )
    given = [flag for flag in ("task", "data_dir", "train_file", "test_file", "dataset")
             if data is not None and getattr(data, flag, None)]  # fmt: skip
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise DataError(
            f"{flag} does not apply to a sentence-transformers model: it is checked on "
            "sentences; pass --dev-file (a .txt file, one per line, or a scored pair file)"
        )


def _texts(data: DataConfig | None) -> tuple[list[str], list[Pair]]:
    """The sentences to compare on (each once), and the scored pairs they come from when
    --dev-file is a pair file; the sample texts without --dev-file."""
    if data is None or not data.dev_file:
        return list(SAMPLE_TEXTS), []
    path = Path(data.dev_file)
    if path.suffix == ".txt":
        texts = sentence_lines(path)
        if not texts:
            raise DataError(f"no sentences in {path}: pass a file of one sentence per line")
        return texts, []
    columns = tuple(data.text_columns or PAIR_COLUMNS)
    if len(columns) != 2:
        raise DataError(
            f"--text-columns names the two sentence columns of the pair file, not "
            f"{len(columns)}: pass e.g. --text-columns sentence1 sentence2"
        )
    pairs = read_pairs(path, columns, data.label_column or PAIR_LABEL)
    return list(dict.fromkeys(s for a, b, _ in pairs for s in (a, b))), pairs


def _batches(encoder: SentenceEncoder, texts: list[str], max_length: int) -> list[dict]:
    """The sentences tokenised as sentence-transformers encodes them (up to its
    max_seq_length, and --max-length), in batches, with padding."""
    limit = min(max_length, encoder.sentence_transformer.max_seq_length or max_length)
    return [
        dict(
            encoder.tokenizer(
                texts[i : i + BATCH],
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="pt",
            )
        )  # fmt: skip
        for i in range(0, len(texts), BATCH)
    ]


def _copy(model: Path, folder: Path, report: dict) -> None:
    """The model's files into the export (they are what sentence-transformers loads beside
    the graph), but for exports the folder holds already: this export's files replace them."""
    skipped = sorted(name for name in NOT_COPIED if (model / name).exists())
    if skipped:
        note = (f"notice: the model's own {', '.join(skipped)} are not copied: this "
                "export's files replace them")  # fmt: skip
        report["notices"].append(note)
        say(note)

    def ignore(directory: str, names: list[str]) -> list[str]:
        return skipped if Path(directory) == model else []

    shutil.copytree(model, folder, ignore=ignore, dirs_exist_ok=True)


def _build(encoder, names, batches, folder: Path, config: ExportConfig) -> list[str]:
    """Write the files the settings ask for; their variants' names."""
    fp32 = folder / FILES["onnx-fp32"].path
    fp32.parent.mkdir(parents=True, exist_ok=True)
    trace(encoder.backbone, names, batches[0], fp32, config.opset, output=OUTPUT)
    built = ["onnx-fp32"]
    if config.int8:
        quantize_dynamic_int8(fp32, folder / FILES["onnx-int8"].path)
        built.append("onnx-int8")
    if config.backend == "openvino":
        openvino_fp32(fp32, folder, FILES["openvino-fp32"].path)
        built.append("openvino-fp32")
        if config.int8:
            plain = load_runner(folder, "onnx-fp32")  # its feeds: the graph's inputs, typed
            calibration = [plain.feeds(batch) for batch in batches[: CALIBRATION // BATCH + 1]]
            openvino_int8(folder, calibration, FILES["openvino-fp32"].path,
                          FILES["openvino-int8"].path)  # fmt: skip
            built.append("openvino-int8")
    return built


def load_runner(folder: Path, variant: str, threads: int | None = None):
    """The project's runner (ONNX Runtime or OpenVINO) of variant `variant`, on
    sentence-transformers' file of it in `folder`."""
    if EXPORT_VARIANTS[variant].runtime == "openvino":
        require_openvino()
    file = FILES[SAME_FILE.get(variant, variant)].path
    return load_variant(folder, variant, threads, file=file)


def _check(name, folder, encoder, batches, reference, config, texts, pairs) -> dict:
    """The file's sentence embeddings against PyTorch's: the least and mean cosine, and the
    largest difference, over the first --verify-samples sentences; Spearman on the pairs."""
    runner = load_runner(folder, name)
    embeddings = [embed_graph(runner, encoder, batch) for batch in batches]
    got = np.concatenate(embeddings)[: config.verify_samples].astype(np.float64)
    want = np.concatenate(reference)[: config.verify_samples].astype(np.float64)
    cosine = row_cosines(got, want)
    result = {"file": FILES[name].path, "load": FILES[name].load,
              "min_cosine": float(cosine.min()), "mean_cosine": float(cosine.mean()),
              "max_abs_diff": float(np.abs(got - want).max()),
              "sentences_compared": len(got)}  # fmt: skip
    exact = EXPORT_VARIANTS[name].exact
    if exact and (result["min_cosine"] < MIN_COSINE or result["max_abs_diff"] > config.tolerance):
        raise ExportMismatch(
            f"{name} embeddings differ from PyTorch's: cosine down to {result['min_cosine']:.6f} "
            f"(at least {MIN_COSINE} required), values by up to {result['max_abs_diff']:.3g} "
            f"(tolerance {config.tolerance:g}) on {len(got)} sentences: the export is wrong "
            "for this model; try another --opset, or report the architecture"
        )
    if pairs:
        result["dev"] = _pair_scores(embeddings, texts, pairs)
    return result


@torch.inference_mode()
def embed_graph(runner, encoder: SentenceEncoder, batch: dict) -> np.ndarray:
    """The sentence embeddings of `batch`: the graph's token states through the model's
    own sentence-transformers modules, as its backends compute them."""
    tokens = torch.from_numpy(runner.logits(batch))
    embedding = encoder.sentence_embedding(batch["input_ids"], batch["attention_mask"], tokens)
    return embedding.float().numpy()


def _pair_scores(embeddings: list[np.ndarray], texts: list[str], pairs: list[Pair]) -> dict:
    """Spearman and Pearson correlations of the pairs' cosines with their scores."""
    table = np.concatenate(embeddings).astype(np.float64)
    row = {text: i for i, text in enumerate(texts)}
    first = table[[row[a] for a, _, _ in pairs]]
    second = table[[row[b] for _, b, _ in pairs]]
    cosines = row_cosines(first, second)
    return compute_metrics("spearman_cosine", cosines, [score for _, _, score in pairs])


def graph_bytes(path: Path) -> int:
    """A graph file's bytes, with OpenVINO's weights (.bin) beside its .xml."""
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if path.suffix == ".xml" else 0)


def summary(result: dict) -> str:
    """The lines `theseus export` prints for a sentence-transformers model."""
    lines = [f"exported sentence-transformers model {result['model']} "
             f"({', '.join(result['inputs'])} -> {result['output']})"]  # fmt: skip
    for name, check in result["variants"].items():
        load = check["load"]
        lines.append(
            f"  {name}: cosine to PyTorch >= {check['min_cosine']:.6f} (mean "
            f"{check['mean_cosine']:.6f}), |difference| <= {check['max_abs_diff']:.1e} on "
            f"{check['sentences_compared']} sentences"
            + (f"; dev spearman {check['dev']['spearman_cosine']:.4f}" if "dev" in check else "")
        )
        lines.append(f"    SentenceTransformer(folder, backend={load['backend']!r}, "
                     f"model_kwargs={load['model_kwargs']!r})")  # fmt: skip
    if "pytorch_fp32" in result:
        spearman = result["pytorch_fp32"]["dev"]["spearman_cosine"]
        lines.append(f"  pytorch fp32: dev spearman {spearman:.4f}")
    lines.append(
        "  files: " + ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in result["files"].items())
    )
    return "\n".join(lines)
