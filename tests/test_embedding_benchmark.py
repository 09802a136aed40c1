"""`theseus benchmark` of sentence-transformers folders (tiny ones built in code): what each
row times is the sentence embedding (checked here against sentence-transformers' own
computation on the same batch), counted in sentences per second. Nothing is timed for real:
the timings are tiny and never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_embedding import VARIANTS, build_st, compress, snapshot
from test_embedding_export import FILES, token_states

from bert_theseus.cli import main
from bert_theseus.deploy import BenchmarkConfig, benchmark
from bert_theseus.embedding import benchmark as embedding
from bert_theseus.embedding.export import MIN_COSINE
from bert_theseus.speed import random_batch

TINY = ["--lengths", "8", "--latency-repeats", "1", "--throughput-repeats", "1", "--warmup", "0",
        "--throughput-batch-size", "4", "--sweep-batch-sizes", "2"]  # fmt: skip
TEXTS = ["good w1 w2", "bad", "w3 w4 w5 w6 w7 w8 w9 w10 w11", "w12 good w13 bad"]
TOLERANCE = 1e-3  # export's default --tolerance, which its fp32 files are held to


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tokenizer_dir) -> tuple[Path, Path]:
    """A tiny sentence-transformers predecessor (mean pooling, Dense, Normalize) and the
    2-layer student that `compress --embedding` makes of it."""
    root = tmp_path_factory.mktemp("emb-bench")
    predecessor = build_st(root / "predecessor", tokenizer_dir, **VARIANTS["mean-dense-normalize"])
    (root / "train.txt").write_text("\n".join(TEXTS * 4) + "\n")
    student = root / "student"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERT_THESEUS_CACHE", str(root / "cache"))
        args = compress(predecessor, root / "train.txt", student, "truncated", "--epochs", "1")
        assert main([*args, "--held-out", "2"]) == 0
    return predecessor, student


def reference(folder: Path, batch: dict) -> torch.Tensor:
    """sentence-transformers' own embedding of the batch (all its modules, in PyTorch)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu").eval()
    with torch.no_grad():
        return model(dict(batch))["sentence_embedding"]


def file_embeddings(folder: Path, file: str, batch: dict) -> torch.Tensor:
    """An exported file's token states (its runtime's own API) through the folder's
    sentence-transformers modules after the transformer."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu").eval()
    features = {**batch, "token_embeddings": torch.from_numpy(token_states(folder / file, batch))}
    with torch.no_grad():
        for module in list(model)[1:]:
            features = module(features)
    return features["sentence_embedding"]


def cosines(a, b) -> torch.Tensor:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def test_benchmark_of_a_run_and_its_predecessor_in_sentences_per_second(runs, tmp_path, capsys):
    predecessor, student = runs
    before = snapshot(predecessor, student)
    output = tmp_path / "bench.json"
    variants = ["torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8", "openvino-fp32"]
    args = ["benchmark", str(predecessor), str(student), "--variants", *variants, *TINY]
    assert main([*args, "--output", str(output)]) == 0
    printed = capsys.readouterr().out

    assert snapshot(predecessor, student) == before  # the inputs are read only
    result = json.loads(output.read_text())
    rows = result["results"]
    assert [(r["model"], r["variant"]) for r in rows] == [
        (str(m), v) for m in (predecessor, student) for v in variants
    ]
    assert result["settings"]["throughput_unit"] == "sentences/s"
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows)
    assert "| sentences/s @8 (b4) |" in table[0] and table[0].endswith("| sentences/s @8, b2 |")
    assert "sentences/s: sentence embeddings" in printed and "seq/s" not in printed
    # The student is the predecessor with 2 of its 4 layers: fewer parameters (with the
    # Dense layer's, counted in both), the same in every variant of a model.
    params = {r["model"]: r["parameters"] for r in rows}
    assert len({(r["model"], r["parameters"]) for r in rows}) == 2
    assert params[str(student)] < params[str(predecessor)]
    # Peak memory: the PyTorch rows, each in a process of its own; the graphs' rows are not
    # probed (the probe would load the PyTorch transformer beside the graph).
    for row in rows:
        assert ("peak_mb" in row) == row["variant"].startswith("torch")
        assert row.get("peak_mb", 1) > 0 and row["disk_mb"] > 0
        assert row["throughput_per_s@8"] > 0


@pytest.mark.parametrize("which", ["predecessor", "student"])
def test_every_timed_runner_computes_the_sentence_embedding(which, runs, tmp_path):
    folder = runs[0] if which == "predecessor" else runs[1]
    before = snapshot(folder)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    entries = embedding.entries(str(folder), list(embedding.SUPPORTED), scratch, 1, False)
    assert [e.variant for e in entries] == list(embedding.SUPPORTED)
    export = scratch / "export-0"  # exported once, on the fly, for every graph variant
    assert {e.onnx_folder for e in entries[2:]} == {export}

    from sentence_transformers import SentenceTransformer

    tokenizer = SentenceTransformer(str(folder), device="cpu").tokenizer
    padded = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))  # unlike the timing's
    for batch in (random_batch(4, 8, 100, token_types=True), padded):
        want = reference(folder, batch)
        got = {e.variant: e.run({k: v for k, v in batch.items() if k in e.inputs})
               for e in entries}  # fmt: skip
        assert all(value.shape == want.shape == (len(want), 16) for value in got.values())
        torch.testing.assert_close(torch.from_numpy(got["torch-fp32"]), want, rtol=0, atol=1e-6)
        for variant in ("onnx-fp32", "openvino-fp32"):
            assert cosines(got[variant], want).min() >= MIN_COSINE
            assert np.abs(got[variant] - want.numpy()).max() <= TOLERANCE
        for variant in ("torch-bf16", "openvino-bf16"):  # reduced precision: near, not equal
            assert cosines(got[variant], want).min() >= 0.99
        # int8: exactly its file (its runtime's API, the model's own modules after it).
        for variant in ("onnx-int8", "openvino-int8"):
            expected = file_embeddings(export, FILES[variant][1], batch)
            torch.testing.assert_close(torch.from_numpy(got[variant]), expected, rtol=0,
                                       atol=1e-5)  # fmt: skip
    assert snapshot(folder) == before


def test_an_export_folder_is_timed_with_its_own_files(runs, tmp_path):
    _, student = runs
    exported = tmp_path / "export"
    assert main(["export", str(student), "--output", str(exported), "--int8"]) == 0
    before = snapshot(exported)
    assert embedding.missing(str(exported), ["onnx-fp32", "onnx-int8", "openvino-fp32"]) == [
        "openvino-fp32"
    ]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    variants = ["torch-fp32", "onnx-fp32", "onnx-int8", "openvino-fp32"]
    entries = embedding.entries(str(exported), variants, scratch, 1, False)
    # Its ONNX files are read; OpenVINO's, which it lacks, exported on the fly.
    assert [e.onnx_folder for e in entries] == [None, exported, exported, scratch / "export-0"]
    batch = random_batch(3, 8, 100, token_types=True)
    want = reference(exported, batch)
    int8 = entries[2].run({k: v for k, v in batch.items() if k in entries[2].inputs})
    expected = file_embeddings(exported, "onnx/model_qint8_quantized.onnx", batch)
    torch.testing.assert_close(torch.from_numpy(int8), expected, rtol=0, atol=1e-5)
    fp32 = entries[1].run({k: v for k, v in batch.items() if k in entries[1].inputs})
    assert cosines(fp32, want).min() >= MIN_COSINE
    assert snapshot(exported) == before


@pytest.mark.parametrize("case", ["classifier-and-embedding", "fused"])
def test_a_mix_or_a_fused_variant_exits_2_with_one_line(
    case, runs, tiny_bert_dir, tmp_path, capsys
):
    predecessor, student = runs
    before = snapshot(predecessor, student, tiny_bert_dir)
    output = tmp_path / "bench.json"
    if case == "classifier-and-embedding":
        args = ["benchmark", str(tiny_bert_dir), str(student)]
        message = f"{student} is a sentence-transformers model and {tiny_bert_dir} is not"
    else:
        args = ["benchmark", str(predecessor), "--variants", "torch-fp32", "onnx-fused"]
        message = "--variants onnx-fused: a sentence-transformers model is exported without"
    assert main([*args, *TINY, "--output", str(output)]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written
    assert snapshot(predecessor, student, tiny_bert_dir) == before


def test_classifiers_keep_sequences_per_second(tiny_bert_dir):
    config = BenchmarkConfig(variants=["torch-fp32"], lengths=[8], latency_repeats=1,
                             throughput_repeats=1, warmup=0, sweep_batch_sizes=[],
                             skip_memory=True)  # fmt: skip
    result = benchmark([str(tiny_bert_dir)], config)
    assert result["settings"]["throughput_unit"] == "sequences/s"
