"""Collapse detection: a model that answers one class (or one value) for all of dev is
named at the evaluation where it happens, in the log, in metrics.json and in `compare`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import collapsed_bottom, tiny_model
from transformers import BertTokenizerFast

from bert_theseus.cli import main
from bert_theseus.data.tasks import get_task
from bert_theseus.training.loop import constant_output


def test_one_class_for_every_example_is_constant_and_two_classes_are_not():
    rte = get_task("rte")
    labels = np.array([0, 1, 1, 0])
    one = np.array([[0.1, 2.0], [0.3, 1.0], [-1.0, 0.0], [0.0, 0.5]])
    assert constant_output(rte, one, labels) == "answers 'not_entailment' for all 4 examples"
    two = one.copy()
    two[2] = [1.0, 0.0]
    assert constant_output(rte, two, labels) is None


def test_a_regression_output_is_constant_below_a_thousandth_of_the_labels_spread():
    stsb = get_task("stsb")
    labels = np.array([0.0, 1.0, 4.0, 5.0])  # std 2.06
    flat = np.array([[2.5], [2.5005], [2.4995], [2.5]])  # std 3.5e-4 < 2.06e-3
    assert constant_output(stsb, flat, labels).startswith("outputs 2.5 ± 0.00035 for all 4")
    assert constant_output(stsb, np.array([[2.5], [2.51], [2.49], [2.5]]), labels) is None


@pytest.fixture(scope="module")
def constant_bert(tmp_path_factory, tokenizer_dir):
    """A classifier forced to a constant: zero classifier weights, a bias for 'positive'."""
    folder = tmp_path_factory.mktemp("constant-bert")
    model = tiny_model("bert", layers=4)
    model.config.id2label = {0: "negative", 1: "positive"}
    model.config.label2id = {"negative": 0, "positive": 1}
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 50.0]))
    model.save_pretrained(folder)
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


ARGS = ["--max-steps", "4", "--eval-steps", "2", "--learning-rate", "1e-9"]
ARGS += ["--batch-size", "8", "--mixed-precision", "no", "--successor-layers", "2"]


def test_a_constant_model_is_warned_about_logged_and_flagged(
    constant_bert, sst2_dir, tmp_path, capsys
):
    out = tmp_path / "truncated"
    data = ["--task", "sst2", "--data-dir", str(sst2_dir), "--output", str(out)]
    args = ["compress", "--model", str(constant_bert), *data, "--method", "truncated", *ARGS]
    assert main(args) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: at step {step} the model answers 'positive' for all 24 examples on dev: it "
        "ignores its input (constant_output_steps in metrics.json)"
        for step in (2, 4)
    ]
    assert "it is a constant, not a classifier of its input" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["constant_output_steps"] == [2, 4] and metrics["constant_at_best"] is True
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    flagged = [r["constant_output"] for r in log if "dev" in r]
    assert flagged == [{"dev": "answers 'positive' for all 24 examples"}] * 2
    assert "**Warning:** this model gives the same answer" in (out / "README.md").read_text()


def test_compare_marks_runs_whose_saved_model_is_a_constant(constant_bert, sst2_dir, tmp_path):
    out = tmp_path / "compare"
    data = ["--task", "sst2", "--data-dir", str(sst2_dir), "--output", str(out)]
    args = ["compare", "--model", str(constant_bert), *data, "--methods", "truncated", *ARGS]
    assert main([*args, "--speed-batch-size", "2", "--speed-length", "8"]) == 0
    table = (out / "results.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| method |"))
    assert header.endswith("| constant |")
    truncated = next(line for line in table if line.startswith("| truncated |"))
    assert truncated.endswith("| **1 of 1** |")
    assert "True" in (out / "runs.csv").read_text().splitlines()[1]


def test_theseus_says_and_records_where_its_successors_start(
    tokenizer_dir, sst2_dir, tmp_path, capsys
):
    """The default recipe measures the predecessor before training: a predecessor whose
    bottom layers leave [CLS] the same for every input gets its top successor from the
    last layer, and the run says so on one line and in metrics.json."""
    predecessor = tmp_path / "predecessor"
    collapsed_bottom(layers=4, bottom=2).save_pretrained(predecessor)
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(predecessor)
    out = tmp_path / "successor"
    data = ["--task", "sst2", "--data-dir", str(sst2_dir), "--output", str(out)]
    assert main(["compress", "--model", str(predecessor), *data, *ARGS]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "successor init" in line]
    assert len(said) == 1 and said[0].startswith("successor init auto: bottom-last-top (")
    measured = json.loads((out / "metrics.json").read_text())["successor_init"]
    assert measured["successor_init"] == "bottom-last-top" and measured["share"] == 0.0
    assert measured["bottom_cls_spread"] == 0.0 < measured["top_cls_spread"]
