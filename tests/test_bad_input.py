"""Every bad input: exit code 2, one line naming the problem and the fix, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AlbertConfig, AlbertForSequenceClassification, BertTokenizerFast

from bert_theseus.cli import main
from bert_theseus.data import load_task_data


def sst2_files(folder: Path, train: str = "sentence\tlabel\ngood movie\t1\nbad movie\t0\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_text(train)
    (folder / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    return folder


def latin1_files(folder: Path) -> Path:
    sst2_files(folder)
    (folder / "train.tsv").write_bytes(
        "sentence\tlabel\ngood\t1\ncaf\u00e9 bad\t0\n".encode("latin-1")
    )
    return folder


def stsb_files(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("sentence1\tsentence2\tscore\na\tb\t3.5\n")
    return folder


def remote_code_dir(folder: Path) -> Path:
    """A model folder whose config asks for its own code; running it would leave a marker."""
    folder.mkdir()
    (folder / "config.json").write_text(
        '{"model_type": "custom", "auto_map": {"AutoConfig": "code.Config", '
        '"AutoModelForSequenceClassification": "code.Model"}}'
    )
    (folder / "code.py").write_text(f"open({str(folder / 'RAN')!r}, 'w').write('x')\n")
    return folder


def albert_dir(folder: Path, tokenizer_dir: Path) -> Path:
    config = AlbertConfig(
        vocab_size=128,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=48,
        embedding_size=16,
        num_hidden_layers=4,
    )
    AlbertForSequenceClassification(config).save_pretrained(folder)
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


# name: (argv builder from (tmp, model, data, tokenizer_dir), expected message)
CASES = {
    "model missing": (
        lambda t, m, d, k: ["--model", str(t / "nope" / "model"), "--data-dir", str(d)],
        "no such folder",
    ),
    "not a model": (
        lambda t, m, d, k: ["--model", str(d), "--data-dir", str(d)],
        "is not a model folder (no config.json)",
    ),
    "albert": (
        lambda t, m, d, k: ["--model", str(albert_dir(t / "albert", k)), "--data-dir", str(d)],
        "ALBERT reuses one shared layer",
    ),
    "custom code without the flag": (
        lambda t, m, d, k: ["--model", str(remote_code_dir(t / "remote")), "--data-dir", str(d)],
        "ships its own code, which runs only if you pass --trust-remote-code",
    ),
    "depth does not divide": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--successor-layers", "3"],
        "successor depth 3 does not divide the predecessor depth 4",
    ),
    "unknown task": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--task", "sst3"],
        "unknown task 'sst3'",
    ),
    "missing data file": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(t / "empty-dir")],
        "missing data file",
    ),
    "malformed row": (
        lambda t, m, d, k: [
            "--model",
            str(m),
            "--data-dir",
            str(sst2_files(t / "bad", "sentence\tlabel\ngood\t1\nbad\n")),
        ],
        "train.tsv:3: expected 2 fields",
    ),
    "label outside the set": (
        lambda t, m, d, k: [
            "--model",
            str(m),
            "--data-dir",
            str(sst2_files(t / "bad", "sentence\tlabel\ngood\t1\nbad\t5\n")),
        ],
        "train.tsv:3: label '5' is not in the task's label set",
    ),
    "empty split": (
        lambda t, m, d, k: [
            "--model",
            str(m),
            "--data-dir",
            str(sst2_files(t / "bad", "sentence\tlabel\n")),
        ],
        "has no examples: the split is empty",
    ),
    "label count disagrees": (
        lambda t, m, d, k: [
            "--model",
            str(m),
            "--data-dir",
            str(stsb_files(t / "STS-B")),
            "--task",
            "stsb",
        ],
        "the model has 2 output label(s) but task 'stsb' has 1",
    ),
    "rate outside (0, 1]": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--replacing-rate", "0"],
        "replacing_rate 0.0 is outside (0, 1]",
    ),
    "non-positive k": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--k", "-0.01"],
        "k -0.01 must be positive",
    ),
    "negative learning rate": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--learning-rate", "-1"],
        "--learning-rate -1.0 must be > 0",
    ),
    "batch size 0": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--batch-size", "0"],
        "--batch-size 0 must be at least 1",
    ),
    "max length beyond the model's positions": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--max-length", "100"],
        "--max-length 100 is more than the 64 token positions of model",
    ),
    "no accumulation": (
        lambda t, m, d, k: [
            "--model",
            str(m),
            "--data-dir",
            str(d),
            "--gradient-accumulation-steps",
            "0",
        ],  # fmt: skip
        "--gradient-accumulation-steps 0 must be at least 1",
    ),
    "zero epochs": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--epochs", "0"],
        "--epochs 0.0 must be > 0",
    ),
    "zero steps": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--max-steps", "0"],
        "--max-steps 0 must be at least 1",
    ),
    "warm-up ratio of 1": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d), "--warmup-ratio", "1"],
        "--warmup-ratio 1.0 must be in [0, 1)",
    ),
    "latin-1 file": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(latin1_files(t / "latin1"))],
        "train.tsv:3: byte 0xe9 at column 4 is not UTF-8; convert the file, e.g. 'iconv",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path, tiny_bert_dir, sst2_dir, tokenizer_dir, capsys):
    build, message = CASES[case]
    argv = build(tmp_path, tiny_bert_dir, sst2_dir, tokenizer_dir)
    inputs = set(tmp_path.rglob("*"))
    full = [
        "compress",
        "--task",
        "sst2",
        "--successor-layers",
        "2",
        "--output",
        str(tmp_path / "out"),
        "--max-steps",
        "2",
        "--mixed-precision",
        "no",
        *argv,
    ]
    # A case that names --task or --successor-layers again overrides the default: the last wins.
    code = main(full)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("theseus: error: ") and "\n" not in err, err
    assert message in err
    assert set(tmp_path.rglob("*")) == inputs, "a failed command must write nothing"


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path, tiny_bert_dir):
    # GLUE's MRPC files and CSVs saved by Excel start with one.
    data = sst2_files(tmp_path / "bom")
    for split in ("train", "dev"):
        path = data / f"{split}.tsv"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    out = tmp_path / "out"
    args = ["finetune", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir", str(data)]
    assert main([*args, "--output", str(out), "--max-steps", "1", "--mixed-precision", "no"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 1


def test_export_without_int8_reports_the_fp32_check(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(tiny_bert_dir), "--onnx", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onnx-fp32: max |logit - PyTorch|" in printed and "int8" not in printed


def test_infinite_loss_stops_and_names_the_step(tmp_path, tiny_bert_dir, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rows = "text\tscore\ngood\t1e38\nbad\t-1e38\n"  # the squared error overflows float32
    (data / "train.tsv").write_text(rows)
    (data / "dev.tsv").write_text(rows)
    inputs = set(tmp_path.rglob("*"))
    code = main(
        [
            "finetune",
            "--model",
            str(tiny_bert_dir),
            "--train-file",
            str(data / "train.tsv"),
            "--dev-file",
            str(data / "dev.tsv"),
            "--regression",
            "--text-columns",
            "text",
            "--label-column",
            "score",
            "--output",
            str(tmp_path / "out"),
            "--max-steps",
            "3",
            "--mixed-precision",
            "no",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "loss became inf at step 1" in err and "no checkpoint" in err
    assert set(tmp_path.rglob("*")) == inputs


def test_rows_with_an_empty_text_are_counted_and_dropped_on_request(
    tmp_path, tiny_bert_dir, capsys
):
    data = sst2_files(tmp_path / "empty", "sentence\tlabel\ngood movie\t1\n \t0\nbad\t0\n")
    out = tmp_path / "out"
    args = ["finetune", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir", str(data)]
    args += ["--max-steps", "1", "--mixed-precision", "no", "--batch-size", "8"]
    assert main([*args, "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "rows with an empty text (1 in train) are kept; --drop-empty drops them" in err
    assert main([*args, "--output", str(tmp_path / "dropped"), "--drop-empty"]) == 0
    assert "dropped rows with an empty text (1 in train)" in capsys.readouterr().err
    kept = load_task_data("sst2", str(data), drop_empty=True)
    assert [texts for texts, _ in kept.train] == [("good movie",), ("bad",)]
    assert len(load_task_data("sst2", str(data)).train) == 3
