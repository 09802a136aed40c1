"""ONNX export, benchmark and predict on tiny models of every architecture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import ARCHITECTURES, tiny_model
from transformers import AutoTokenizer, BertTokenizerFast

from bert_theseus import truncate
from bert_theseus.cli import main
from bert_theseus.commands import DataConfig
from bert_theseus.deploy import (
    DeployError,
    ExportConfig,
    OnnxClassifier,
    export_onnx,
    predict_texts,
    read_texts,
)
from bert_theseus.deploy.runtime import torch_logits

TEXTS = ["w1 good w2 w3 w4 w5 w6", "bad", "w7 w8 good", "w9 bad w10 w11"]


def _save(model, folder, tokenizer_dir):
    model.save_pretrained(folder)
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_export_reloads_in_onnx_runtime_and_matches_pytorch(model_type, tmp_path, tokenizer_dir):
    source = _save(tiny_model(model_type, layers=2), tmp_path / "model", tokenizer_dir)
    report = export_onnx(str(source), str(tmp_path / "onnx"), ExportConfig(int8=True))
    out = tmp_path / "onnx"
    assert {"model.onnx", "model.int8.onnx", "config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()
    }
    assert report["fp32"]["max_abs_logit_diff"] < 1e-4
    assert json.loads((out / "export.json").read_text())["inputs"] == report["inputs"]

    # Other batch size and lengths than at export: the axes are dynamic.
    model = tiny_model(model_type, layers=2)
    tokenizer = AutoTokenizer.from_pretrained(out)
    for texts in (TEXTS, TEXTS[:1], TEXTS * 3):
        batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
        accepted = {k: v for k, v in batch.items() if k in report["inputs"]}
        reference = torch_logits(model, accepted)
        fp32 = OnnxClassifier(out).logits(batch)
        int8 = OnnxClassifier(out, int8=True).logits(batch)
        assert fp32.shape == int8.shape == reference.shape
        np.testing.assert_allclose(fp32, reference, atol=1e-5)
        assert np.isfinite(int8).all() and np.abs(int8 - reference).max() < 0.05


def test_export_scores_dev_with_every_variant(tmp_path, tiny_bert_dir, sst2_dir):
    data = DataConfig(task="sst2", data_dir=str(sst2_dir))
    report = export_onnx(str(tiny_bert_dir), str(tmp_path / "onnx"), ExportConfig(int8=True), data)
    assert report["fp32"]["examples_compared"] == 24  # the whole tiny dev split
    assert report["fp32"]["dev"] == report["pytorch_fp32"]  # same predictions
    assert set(report["int8"]["dev"]) == {"accuracy", "score"}


def test_export_past_the_tolerance_fails_with_one_line_and_no_folder(
    tmp_path, tiny_bert_dir, capsys
):
    out = tmp_path / "onnx"
    code = main(["export", str(tiny_bert_dir), "--onnx", "--output", str(out), "--tolerance", "0"])
    error = capsys.readouterr().err
    assert code == 2 and "differ from PyTorch" in error and len(error.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, tokenizer_dir):
    folder = tmp_path_factory.mktemp("bench")
    predecessor = tiny_model("bert", layers=4)
    big = _save(predecessor, folder / "predecessor", tokenizer_dir)
    small = _save(truncate(predecessor, 2), folder / "successor", tokenizer_dir)
    return big, small


def test_benchmark_prints_and_writes_every_column(two_models, tmp_path, capsys):
    big, small = two_models
    output = tmp_path / "bench.json"
    args = ["benchmark", str(big), str(small), "--lengths", "8", "16", "--output", str(output)]
    args += ["--latency-repeats", "3", "--throughput-repeats", "2", "--warmup", "1"]
    args += ["--throughput-batch-size", "4", "--sweep-batch-sizes", "1", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads(output.read_text())
    rows = result["results"]
    variants = ["torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8"]
    assert [(r["model"], r["variant"]) for r in rows] == [
        (str(m), v) for m in (big, small) for v in variants
    ]
    columns = {"model", "variant", "parameters", "disk_mb", "peak_mb", "above_imports_mb"}
    for length in (8, 16):
        columns |= {
            f"latency_p50_ms@{length}",
            f"latency_p95_ms@{length}",
            f"throughput_per_s@{length}",
            f"speedup@{length}",
            f"latency_speedup@{length}",
        }
    columns |= {"throughput_per_s@16_b1", "throughput_per_s@16_b3"}  # the sweep, longest length
    for row in rows:
        assert set(row) == columns
        assert row["peak_mb"] > 0 and row["disk_mb"] > 0
        assert 0 < row["latency_p50_ms@8"] <= row["latency_p95_ms@8"]
    assert rows[0]["speedup@8"] == rows[0]["speedup@16"] == 1.0
    assert rows[4]["parameters"] < rows[0]["parameters"]
    assert result["settings"]["threads"] >= 1 and result["settings"]["lengths"] == [8, 16]
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows)  # header and one line per row
    assert "p50/p95 ms @16 (b1)" in table[0] and "seq/s @8 (b4)" in table[0]
    assert table[0].endswith("| seq/s @16, b1 / b3 |")
    sweep = (
        f"| {rows[-1]['throughput_per_s@16_b1']:.1f} / {rows[-1]['throughput_per_s@16_b3']:.1f} |"
    )
    assert table[-1].endswith(sweep)
    chart = output.with_suffix(".png")  # the chart beside the JSON
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 5000


def test_benchmark_times_an_exported_folder_with_its_onnx_files(two_models, tmp_path):
    from bert_theseus.deploy import BenchmarkConfig, benchmark

    _, small = two_models
    export_onnx(str(small), str(tmp_path / "onnx"), ExportConfig(int8=True))
    config = BenchmarkConfig(
        variants=["onnx-fp32", "onnx-int8"],
        lengths=[8],
        latency_repeats=2,
        throughput_repeats=1,
        warmup=0,
        skip_memory=True,
    )
    rows = benchmark([str(tmp_path / "onnx")], config)["results"]
    assert [r["variant"] for r in rows] == ["onnx-fp32", "onnx-int8"]
    assert rows[0]["parameters"] > 0 and "peak_mb" not in rows[0]
    with pytest.raises(DeployError, match="ONNX export"):
        benchmark([str(tmp_path / "onnx")], BenchmarkConfig(variants=["torch-fp32"]))


def test_predict_answers_alike_from_pytorch_and_onnx(tmp_path, tiny_bert_dir, capsys):
    export_onnx(str(tiny_bert_dir), str(tmp_path / "onnx"), ExportConfig(int8=True))
    pytorch = predict_texts(str(tiny_bert_dir), TEXTS)
    onnx = predict_texts(str(tmp_path / "onnx"), TEXTS)
    int8 = predict_texts(str(tmp_path / "onnx"), TEXTS, int8=True)
    assert [a["label"] for a in pytorch] == [a["label"] for a in onnx]
    assert {a["label"] for a in pytorch} <= {"negative", "positive"}
    for a, b, c in zip(pytorch, onnx, int8, strict=True):
        assert a["text"] == b["text"] and abs(a["score"] - b["score"]) < 1e-3
        assert 0.5 <= c["score"] <= 1

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("w1 good\tw2 bad\nbad\tw3\n")
    for model in (str(tiny_bert_dir), str(tmp_path / "onnx")):
        assert main(["predict", model, "--file", str(pairs)]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 2 and lines[0].endswith("w1 good | w2 bad")
        assert lines[0].split("\t")[0] in {"negative", "positive"}


def test_predict_gives_regression_values(tmp_path, tokenizer_dir):
    model = tiny_model("bert", layers=2, num_labels=1)
    model.config.problem_type = "regression"
    folder = _save(model, tmp_path / "stsb", tokenizer_dir)
    answers = predict_texts(str(folder), ["w1 w2"], ["w3"])
    batch = dict(AutoTokenizer.from_pretrained(folder)(["w1 w2"], ["w3"], return_tensors="pt"))
    with torch.no_grad():
        expected = model(**batch).logits[0, 0].item()
    assert answers[0]["value"] == pytest.approx(expected, abs=1e-4)
    assert answers[0]["text_pair"] == "w3" and "label" not in answers[0]


@pytest.mark.parametrize(
    "texts, pairs, file, message",
    [
        (None, None, None, "nothing to predict"),
        (["a", "b"], ["c"], None, "one pair text per text"),
        (None, None, "missing.txt", "does not exist"),
    ],
)
def test_predict_bad_input_names_the_fix(texts, pairs, file, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DeployError, match=message):
        read_texts(texts, pairs, file)


def test_predict_int8_on_a_pytorch_folder_is_refused(tiny_bert_dir, capsys):
    assert main(["predict", str(tiny_bert_dir), "--int8", "--text", "good"]) == 2
    assert "--int8 and --variant need an export" in capsys.readouterr().err
