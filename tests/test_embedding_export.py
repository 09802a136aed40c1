"""`theseus export` of sentence-transformers folders (tiny ones built in code): the files at
the paths sentence-transformers' onnx and openvino backends load, their embeddings checked
here with the runtimes' own APIs and sentence-transformers' own modules, not the export's."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from test_embedding import VARIANTS, build_st, compress, snapshot, write_pairs

from bert_theseus.cli import main
from bert_theseus.deploy.export import SAMPLE_TEXTS
from bert_theseus.embedding.data import read_pairs
from bert_theseus.embedding.model import load_encoder
from bert_theseus.embedding.report import pair_scores

# Where sentence-transformers looks (onnx/model.onnx, openvino/openvino_model.xml are its
# defaults); each loads with SentenceTransformer(folder, backend=..., model_kwargs=...).
FILES = {
    "onnx-fp32": ("onnx", "onnx/model.onnx"),
    "onnx-int8": ("onnx", "onnx/model_qint8_quantized.onnx"),
    "openvino-fp32": ("openvino", "openvino/openvino_model.xml"),
    "openvino-int8": ("openvino", "openvino/openvino_model_qint8_quantized.xml"),
}
FP32 = ("onnx-fp32", "openvino-fp32")
# Other texts, batch size and lengths than the export traced and checked on.
TEXTS = ["good w1 w2", "bad", "w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13", "w14 good w15 bad", "w16"]


@pytest.fixture(scope="module")
def st_folder(tmp_path_factory, tokenizer_dir) -> Callable[[str], Path]:
    """The tiny sentence-transformers folder of a variant of test_embedding's VARIANTS."""
    root = tmp_path_factory.mktemp("st-export")
    built: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in built:
            built[variant] = build_st(root / variant, tokenizer_dir, **VARIANTS[variant])
        return built[variant]

    return get


def export(model: Path, output: Path, *extra: str) -> int:
    return main(["export", str(model), "--output", str(output), *extra])


def token_states(path: Path, batch: dict) -> np.ndarray:
    """last_hidden_state of an exported file, run by ONNX Runtime's or OpenVINO's own API."""
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {node.name: batch[node.name].numpy() for node in session.get_inputs()}
        return session.run(["last_hidden_state"], feeds)[0]
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    feeds = {node.get_any_name(): batch[node.get_any_name()].numpy() for node in compiled.inputs}
    return compiled(feeds)[compiled.output("last_hidden_state")]


def st_embeddings(folder: Path, path: Path, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(the file's sentence embeddings through the folder's own sentence-transformers
    modules after the transformer, SentenceTransformer(folder)'s PyTorch encode)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    batch = model.tokenize(texts)
    features = {**batch, "token_embeddings": torch.from_numpy(token_states(path, batch))}
    with torch.no_grad():
        for module in list(model)[1:]:
            features = module(features)
    return features["sentence_embedding"], model.encode(texts, convert_to_tensor=True)


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_export_writes_the_backends_files_whose_fp32_embeddings_match_pytorch(
    variant, st_folder, tmp_path
):
    model, out = st_folder(variant), tmp_path / "export"
    before = snapshot(model)
    assert export(model, out, "--int8", "--backend", "openvino") == 0
    assert snapshot(model) == before  # the input is read only

    # A copy of the sentence-transformers folder, plus the backends' files.
    for path, content in before.items():
        assert (out / path.relative_to(model)).read_bytes() == content
    added = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    added -= {p.relative_to(model).as_posix() for p in before}
    bins = {str(Path(f).with_suffix(".bin")) for _, f in FILES.values() if f.endswith(".xml")}
    assert added == {f for _, f in FILES.values()} | bins | {"export.json"}

    report = json.loads((out / "export.json").read_text())
    assert set(report["variants"]) == set(FILES)
    for name, (backend, file) in FILES.items():
        check = report["variants"][name]
        assert check["file"] == file and check["sentences_compared"] == len(SAMPLE_TEXTS)
        assert check["load"] == {"backend": backend, "model_kwargs": {"file_name": Path(file).name}}
        assert -1 <= check["min_cosine"] <= check["mean_cosine"] <= 1 + 1e-12  # int8: reported
    for name in FP32:
        assert report["variants"][name]["min_cosine"] >= 0.9999
        assert report["variants"][name]["max_abs_diff"] <= 1e-3

    # Checked apart from the export: each fp32 file in its runtime's own API, pooled by
    # sentence-transformers' modules of the exported folder, on other texts and lengths.
    for name in FP32:
        exported, reference = st_embeddings(out, out / FILES[name][1], TEXTS)
        assert exported.shape == reference.shape == (len(TEXTS), 16 if "dense" in variant else 32)
        assert cosines(exported, reference).min() >= 0.9999
        torch.testing.assert_close(exported, reference, rtol=0, atol=1e-5)
    norms = reference.norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms)) == VARIANTS[variant]["normalize"]


def test_int8_cosine_is_reported_as_its_file_gives_it(st_folder, tmp_path):
    model, out = st_folder("cls-normalize"), tmp_path / "export"
    assert export(model, out, "--int8") == 0
    report = json.loads((out / "export.json").read_text())
    assert set(report["variants"]) == {"onnx-fp32", "onnx-int8"} and report["int8"]["file"]
    # The export compares the sample texts as one batch (dynamic int8 scales per batch).
    exported, reference = st_embeddings(out, out / FILES["onnx-int8"][1], SAMPLE_TEXTS)
    similarity = cosines(exported, reference)
    assert report["int8"]["min_cosine"] == pytest.approx(float(similarity.min()), abs=1e-6)
    assert report["int8"]["mean_cosine"] == pytest.approx(float(similarity.mean()), abs=1e-6)
    assert report["int8"]["min_cosine"] < 1 - 1e-9  # quantised: not the fp32 graph


def test_dev_pairs_are_scored_with_every_file(st_folder, tmp_path):
    model, out = st_folder("mean-normalize"), tmp_path / "export"
    dev = write_pairs(tmp_path / "dev.tsv", 12, seed=5)
    assert export(model, out, "--int8", "--dev-file", str(dev)) == 0
    report = json.loads((out / "export.json").read_text())
    pairs = read_pairs(dev, ("sentence1", "sentence2"), "score")
    # PyTorch's score is sentence-transformers' own evaluator's.
    expected = pair_scores(load_encoder(str(model)), "dev", pairs)["spearman_cosine"]
    assert report["pytorch_fp32"]["dev"]["spearman_cosine"] == pytest.approx(expected, abs=1e-6)
    assert report["fp32"]["dev"]["spearman_cosine"] == pytest.approx(expected, abs=1e-6)
    assert -1 <= report["int8"]["dev"]["spearman_cosine"] <= 1
    unique = {s for a, b, _ in pairs for s in (a, b)}
    assert report["fp32"]["sentences_compared"] == len(unique)


def test_a_compress_embedding_run_exports(st_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("BERT_THESEUS_CACHE", str(tmp_path / "cache"))
    train = tmp_path / "train.txt"
    train.write_text("\n".join(TEXTS * 2 + ["w20 w21", "good w22 w23 w24"]) + "\n")
    run = tmp_path / "student"
    args = compress(st_folder("mean-normalize"), train, run, "truncated", "--max-steps", "1")
    assert main([*args, "--held-out", "2"]) == 0
    assert export(run, tmp_path / "export") == 0
    out = tmp_path / "export"
    assert json.loads((out / "run_config.json").read_text())["embedding"]
    exported, reference = st_embeddings(out, out / FILES["onnx-fp32"][1], TEXTS)
    torch.testing.assert_close(exported, reference, rtol=0, atol=1e-5)
    assert not (out / "openvino").exists()  # --backend onnxruntime, the default


def test_the_models_own_backend_files_are_replaced_not_mixed(st_folder, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(st_folder("mean"), model)
    (model / "onnx").mkdir()
    (model / "onnx" / "model.onnx").write_bytes(b"not this model")
    (model / "onnx" / "model_O4.onnx").write_bytes(b"an old optimised file")
    before = snapshot(model)
    assert export(model, tmp_path / "export") == 0
    out = tmp_path / "export"
    assert sorted(p.name for p in (out / "onnx").iterdir()) == ["model.onnx"]
    assert (out / "onnx" / "model.onnx").read_bytes() != b"not this model"
    assert any("own onnx" in n for n in json.loads((out / "export.json").read_text())["notices"])
    assert snapshot(model) == before


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_exported_files_load_through_sentence_transformers_backends(backend, st_folder, tmp_path):
    pytest.importorskip(
        "optimum.onnxruntime" if backend == "onnx" else "optimum.intel",
        reason=f"sentence-transformers' {backend} backend needs optimum "
        "(sentence-transformers[onnx] / [openvino]), which does not install beside "
        "transformers 5.25 and torch 2.13",
    )
    from sentence_transformers import SentenceTransformer

    model, out = st_folder("mean-normalize"), tmp_path / "export"
    assert export(model, out, "--int8", "--backend", "openvino") == 0
    reference = SentenceTransformer(str(model), device="cpu").encode(TEXTS, convert_to_tensor=True)
    report = json.loads((out / "export.json").read_text())
    for name, check in report["variants"].items():
        if not name.startswith(backend):
            continue
        loaded = SentenceTransformer(str(out), device="cpu", **check["load"])
        embeddings = loaded.encode(TEXTS, convert_to_tensor=True)
        similarity = cosines(embeddings, reference)
        if name.endswith("fp32"):
            assert similarity.min() >= 0.9999
            torch.testing.assert_close(embeddings, reference, rtol=0, atol=1e-5)
        else:
            assert similarity.min() > 0.9  # int8: close, not exact


@pytest.mark.parametrize(
    "case, says",
    [
        (["--tolerance", "0"], "onnx-fp32 embeddings differ from PyTorch's"),
        (["--backend", "auto"], "--backend auto does not apply to a sentence-transformers model"),
        (["--fused"], "--fused does not apply to a sentence-transformers model"),
        (["--task", "sst2"], "--task does not apply to a sentence-transformers model"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case, says, st_folder, tmp_path, capsys
):
    model = st_folder("cls")
    before = snapshot(model)
    output = tmp_path / "out" / "export"
    output.parent.mkdir()
    capsys.readouterr()
    code = export(model, output, *case)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("theseus: error:") and err.count("\n") == 1, err
    assert says in err, err
    assert list(output.parent.iterdir()) == []  # no output, no partial folder
    assert snapshot(model) == before
