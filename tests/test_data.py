"""GLUE formats, user files, Hub-style datasets, and the official metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_glue
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from bert_theseus.data import DataError, TaskError, get_task, load_task_data
from bert_theseus.metrics import compute_metrics


def write(folder, name, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")


def test_cola_has_no_header(tmp_path):
    rows = ["gj04\t1\t\tOur friends won't buy this.", "gj04\t0\t*\tThey drank the pub."]
    write(tmp_path, "train.tsv", rows)
    write(tmp_path, "dev.tsv", rows[:1])
    data = load_task_data("cola", data_dir=str(tmp_path))
    assert data.train == [(("Our friends won't buy this.",), 1), (("They drank the pub.",), 0)]
    assert data.task.metric == "matthews" and data.task.id2label[1] == "acceptable"


def test_mnli_reads_matched_and_mismatched_dev(tmp_path):
    header = "\t".join(
        [
            "index",
            "promptID",
            "pairID",
            "genre",
            "sentence1_binary_parse",
            "sentence2_binary_parse",
            "sentence1_parse",
            "sentence2_parse",
            "sentence1",
            "sentence2",
            "label1",
            "gold_label",
        ]
    )
    row = "0\t1\t1n\tgov\t(x)\t(y)\t(X)\t(Y)\tA man eats.\tSomeone eats.\tentailment\t{}"
    write(tmp_path, "train.tsv", [header, row.format("neutral"), row.format("contradiction")])
    write(tmp_path, "dev_matched.tsv", [header, row.format("entailment")])
    write(tmp_path, "dev_mismatched.tsv", [header, row.format("contradiction")])
    data = load_task_data("MNLI", data_dir=str(tmp_path))
    assert [label for _, label in data.train] == [1, 2]
    assert set(data.dev) == {"dev_matched", "dev_mismatched"}
    assert data.dev["dev_matched"][0] == (("A man eats.", "Someone eats."), 0)


def test_qqp_and_mrpc_columns(tmp_path):
    qqp = tmp_path / "QQP"
    lines = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "1\t1\t2\tHow?\tWhy?\t1"]
    write(qqp, "train.tsv", lines)
    write(qqp, "dev.tsv", lines)
    assert load_task_data("qqp", data_dir=str(qqp)).train == [(("How?", "Why?"), 1)]
    mrpc = tmp_path / "MRPC"
    lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", '0\t1\t2\tHe said "no".\tHe refused.']
    write(mrpc, "train.tsv", lines)
    write(mrpc, "dev.tsv", lines)
    # No quoting: the quotes are part of the text.
    assert load_task_data("mrpc", data_dir=str(mrpc)).train == [
        (('He said "no".', "He refused."), 0)
    ]


def test_stray_carriage_return_inside_a_row_is_not_a_line_break(tmp_path):
    write(tmp_path, "train.tsv", ["sentence\tlabel", "hide new secretions\r\t0", "fine\t1"])
    write(tmp_path, "dev.tsv", ["sentence\tlabel", "ok\t1"])
    data = load_task_data("sst2", data_dir=str(tmp_path))
    assert data.train == [(("hide new secretions",), 0), (("fine",), 1)]


@pytest.mark.parametrize(
    ("train_lines", "message"),
    [
        (["sentence\tlabel", "good\t1", "bad"], r"train.tsv:3: expected 2 fields .* found 1"),
        (["sentence\tlabel", "good\t1", "bad\t7"], r"train.tsv:3: label '7' is not in"),
        (["sentence\tlabel"], "has no examples: the split is empty"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, train_lines, message):
    write(tmp_path, "train.tsv", train_lines)
    write(tmp_path, "dev.tsv", ["sentence\tlabel", "ok\t1"])
    with pytest.raises(DataError, match=message):
        load_task_data("sst2", data_dir=str(tmp_path))


def test_missing_file_and_unknown_task(tmp_path):
    with pytest.raises(DataError, match="missing data file .*train.tsv"):
        load_task_data("rte", data_dir=str(tmp_path))
    with pytest.raises(TaskError, match="unknown task 'sst3'"):
        get_task("sst3")


def test_user_csv_and_jsonl_with_inferred_labels(tmp_path):
    (tmp_path / "train.csv").write_text('text,topic\n"Hello, world",sport\nRates rise,business\n')
    (tmp_path / "dev.jsonl").write_text(json.dumps({"text": "Goal!", "topic": "sport"}) + "\n\n")
    data = load_task_data(
        train_file=str(tmp_path / "train.csv"),
        dev_file=str(tmp_path / "dev.jsonl"),
        text_columns=["text"],
        label_column="topic",
    )
    assert data.task.labels == ("business", "sport")
    assert data.train == [(("Hello, world",), 1), (("Rates rise",), 0)]
    assert data.dev["dev"] == [(("Goal!",), 1)]
    # A saved model's label order wins over the order found in the file.
    again = load_task_data(
        train_file=str(tmp_path / "train.csv"),
        dev_file=str(tmp_path / "dev.jsonl"),
        text_columns=["text"],
        label_column="topic",
        model_labels=["sport", "business"],
    )
    assert again.train[0][1] == 0


def test_user_regression_and_missing_column(tmp_path):
    (tmp_path / "train.tsv").write_text("a\tb\tscore\nx\ty\t3.5\n")
    data = load_task_data(
        train_file=str(tmp_path / "train.tsv"),
        dev_file=str(tmp_path / "train.tsv"),
        text_columns=["a", "b"],
        label_column="score",
        regression=True,
    )
    assert data.task.is_regression and data.train == [(("x", "y"), 3.5)]
    with pytest.raises(DataError, match="no column 'text'"):
        load_task_data(
            train_file=str(tmp_path / "train.tsv"),
            dev_file=str(tmp_path / "train.tsv"),
            label_column="score",
            regression=True,
        )


def test_empty_nan_and_null_labels_are_counted_not_classes(tmp_path):
    # pandas writes NaN or nothing for a missing value; JSON Lines may hold null.
    rows = ["text,label", "a,x", "b,", "c,NaN", "d,y", "e,nan", "f, ", "g,x", "h,", "k,"]
    write(tmp_path, "train.csv", rows)
    (tmp_path / "dev.jsonl").write_text(
        '{"text": "i", "label": null}\n{"text": "j", "label": "y"}\n'
    )
    files = {"train_file": str(tmp_path / "train.csv"), "dev_file": str(tmp_path / "dev.jsonl")}
    with pytest.raises(DataError) as refused:
        load_task_data(**files)
    assert str(refused.value) == (
        f"{tmp_path / 'train.csv'}: 6 rows with an empty or NaN label (lines 3, 4, 6, 7, 9, "
        "...): fill them in, or pass --drop-empty to drop them"
    )
    data = load_task_data(**files, drop_empty=True)
    assert data.task.labels == ("x", "y")  # inferred without '' and 'NaN'
    assert data.train == [(("a",), 0), (("d",), 1), (("g",), 0)]
    assert data.dev == {"dev": [(("j",), 1)]}
    assert data.empty_labels == {"train": 6, "dev": 1}
    assert data.empty_note() == (
        "note: dropped rows with an empty or NaN label (6 in train, 1 in dev) as --drop-empty asks"
    )


def test_a_regression_label_that_is_missing_is_refused_naming_the_rows(tmp_path):
    write(tmp_path, "train.tsv", ["a\tscore", "x\t3.5", "y\tNaN"])
    args = {"train_file": str(tmp_path / "train.tsv"), "dev_file": str(tmp_path / "train.tsv")}
    with pytest.raises(DataError, match=r"train.tsv: 1 row with an empty or NaN label \(line 3\)"):
        load_task_data(**args, text_columns=["a"], label_column="score", regression=True)
    # Infinity is a number, not a missing one: still refused as not finite.
    write(tmp_path, "train.tsv", ["a\tscore", "x\t3.5", "y\tinf"])
    with pytest.raises(DataError, match="train.tsv:3: label 'inf' is not a finite number"):
        load_task_data(**args, text_columns=["a"], label_column="score", regression=True)


def test_every_label_missing_is_refused_even_when_dropping(tmp_path):
    write(tmp_path, "train.tsv", ["sentence\tlabel", "a\t", "b\tnan"])
    write(tmp_path, "dev.tsv", ["sentence\tlabel", "ok\t1"])
    with pytest.raises(DataError, match="train.tsv: every row has an empty or NaN label"):
        load_task_data("sst2", data_dir=str(tmp_path), drop_empty=True)


def test_a_folder_where_a_file_belongs_and_the_reverse(tmp_path):
    write(tmp_path / "SST-2", "train.tsv", ["sentence\tlabel", "good\t1"])
    write(tmp_path / "SST-2", "dev.tsv", ["sentence\tlabel", "good\t1"])
    folder = tmp_path / "SST-2"
    with pytest.raises(DataError) as refused:
        load_task_data("sst2", train_file=str(folder), dev_file=str(folder / "dev.tsv"))
    assert str(refused.value) == (
        f"{folder} is a folder, not a data file: pass the file itself, e.g. {folder / 'dev.tsv'}"
    )
    with pytest.raises(DataError, match="--data-dir .*train.tsv is a file, not a folder"):
        load_task_data("sst2", data_dir=str(folder / "train.tsv"))


def test_dataset_folder_goes_through_the_hub_loader(tmp_path):
    # datasets.load_dataset treats a local folder like a Hub repository id.
    (tmp_path / "train.csv").write_text("sentence,label\nnice,1\nawful,0\n")
    (tmp_path / "validation.csv").write_text("sentence,label\nfine,1\n")
    data = load_task_data("sst2", dataset=str(tmp_path))
    assert data.train == [(("nice",), 1), (("awful",), 0)]
    assert data.dev == {"validation": [(("fine",), 1)]}


@pytest.mark.real
@pytest.mark.parametrize(
    ("task", "folder", "train", "dev"),
    [("sst2", "SST-2", 67349, 872), ("rte", "RTE", 2490, 277), ("stsb", "STS-B", 5749, 1500)],
)
def test_real_glue_files_read_completely(task, folder, train, dev):
    data = load_task_data(task, data_dir=str(shared_glue(folder)))
    assert len(data.train) == train and len(data.dev["dev"]) == dev
    if task == "sst2":
        assert sum(label for _, label in data.train) == 37569  # positives, per the data README
    if task == "rte":
        assert sum(label == 0 for _, label in data.dev["dev"]) == 146  # entailment


def test_metrics_match_reference_implementations():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    predictions = np.where(rng.random(200) < 0.8, labels, 1 - labels)
    accuracy = float((labels == predictions).mean())
    mrpc = compute_metrics("f1_accuracy", predictions, labels)
    assert mrpc["f1"] == pytest.approx(f1_score(labels, predictions))
    assert mrpc["score"] == pytest.approx((mrpc["f1"] + accuracy) / 2)
    cola = compute_metrics("matthews", predictions, labels)
    assert cola["score"] == pytest.approx(matthews_corrcoef(labels, predictions))
    scores = rng.random(50) * 5
    noisy = scores + rng.normal(0, 1, 50)
    stsb = compute_metrics("pearson_spearman", noisy, scores)
    expected = (pearsonr(noisy, scores)[0] + spearmanr(noisy, scores)[0]) / 2
    assert stsb["score"] == pytest.approx(expected)
    assert compute_metrics("accuracy", [1, 0, 1, 1], [1, 1, 1, 1])["score"] == 0.75
    assert compute_metrics("pearson_spearman", [1.0, 1.0, 1.0], [0.0, 1.0, 2.0])["score"] == 0.0


def test_first_inputs_gives_exactly_the_first_examples_without_labels():
    import torch

    from bert_theseus.data.loading import first_inputs

    batches = [
        {"input_ids": torch.arange(i, i + 3).view(3, 1), "labels": torch.zeros(3)}
        for i in (0, 3, 6)
    ]
    given = list(first_inputs(iter(batches), 5, "cpu"))
    assert [sorted(b) for b in given] == [["input_ids"], ["input_ids"]]  # labels dropped
    assert torch.cat([b["input_ids"] for b in given]).flatten().tolist() == [0, 1, 2, 3, 4]
    # The third batch is never drawn; fewer examples than asked gives all there are.
    assert sum(len(b["input_ids"]) for b in first_inputs(iter(batches), 20, "cpu")) == 9
