"""Every bad input: exit code 2, one line naming the problem and the fix, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AlbertConfig, AlbertForSequenceClassification, BertTokenizerFast

from bert_theseus import TheseusConfig
from bert_theseus.cli import main
from bert_theseus.data import load_task_data
from bert_theseus.methods import MethodConfigError, get_method


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


def weights_only(folder: Path, model: Path) -> Path:
    """The model's config and weights without its tokenizer files (what copying only the
    model files leaves)."""
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model / name, folder / name)
    return folder


def other_tokenizer(folder: Path, model: Path) -> Path:
    """The model with the tokenizer of a larger vocabulary (another model's files)."""
    weights_only(folder, model)
    words = [f"x{i}" for i in range(300)] + ["good", "bad"]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: index for index, token in enumerate(specials + words)}
    BertTokenizerFast(vocab=vocab).save_pretrained(folder)
    return folder


def broken_tokenizer(folder: Path, model: Path) -> Path:
    shutil.copytree(model, folder)
    text = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(text[: len(text) // 2])
    return folder


def cut_weights(folder: Path, model: Path, keep: float = 0.5) -> Path:
    """The model with model.safetensors cut short, as an interrupted copy leaves it."""
    shutil.copytree(model, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    return folder


def garbled_header(folder: Path, model: Path) -> Path:
    shutil.copytree(model, folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    data[8 : 8 + length] = b"#" * length  # the header's length is right, its JSON is not
    weights.write_bytes(bytes(data))
    return folder


def export_without_tokenizer(folder: Path, model: Path) -> Path:
    from bert_theseus.deploy import ExportConfig, export_onnx

    export_onnx(str(model), str(folder), ExportConfig())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    return folder


def yaml_file(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "run.yaml").write_text(text)
    return folder / "run.yaml"


def own_files(folder: Path, train: str) -> list[str]:
    folder.mkdir()
    (folder / "train.jsonl").write_text(train)
    (folder / "dev.jsonl").write_text('{"text": "good", "label": "yes"}\n')
    return ["--train-file", str(folder / "train.jsonl"), "--dev-file", str(folder / "dev.jsonl"),
            "--task", "sst2", "--text-columns", "text", "--label-column", "label"]  # fmt: skip


def no_cuda(argv: list[str]) -> list[str]:
    if torch.cuda.is_available():
        pytest.skip("fp16 is allowed where CUDA is")
    return argv


def folder_with_a_file(folder: Path) -> Path:
    sst2_files(folder)
    return folder


def model_and_data(m, d) -> list[str]:
    return ["--model", str(m), "--data-dir", str(d)]


# Commands other than `compress` (the table's default), with their own full argv.
COMMANDS = ("compress", "finetune", "evaluate", "predict", "export", "benchmark", "extract")


def width_method(t: Path, m: Path, d: Path, method: str, *flags: str) -> list[str]:
    """`compress` with a method that takes no --successor-layers (the table's default)."""
    return ["compress", *model_and_data(m, d), "--task", "sst2", "--output", str(t / "out"),
            "--max-steps", "2", "--mixed-precision", "no", "--method", method, *flags]  # fmt: skip


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
    # A model folder without its tokenizer files used to train a model that read [UNK] only.
    "model without tokenizer files": (
        lambda t, m, d, k: model_and_data(weights_only(t / "bare", m), d),
        "has no tokenizer vocabulary: copy the tokenizer files",
    ),
    "finetune from a model without tokenizer files": (
        lambda t, m, d, k: [
            "finetune",
            *model_and_data(weights_only(t / "bare", m), d),
            "--task",
            "sst2",
            "--output",
            str(t / "out"),
        ],  # fmt: skip
        "has no tokenizer vocabulary: copy the tokenizer files",
    ),
    "predict with an export without tokenizer files": (
        lambda t, m, d, k: ["predict", str(export_without_tokenizer(t / "x", m)), "--text", "ok"],
        "has no tokenizer vocabulary: copy the tokenizer files",
    ),
    "tokenizer of another model": (
        lambda t, m, d, k: model_and_data(other_tokenizer(t / "other", m), d),
        "has 307 tokens but the model reads only 128: the tokenizer files belong to another",
    ),
    "tokenizer file cut short": (
        lambda t, m, d, k: model_and_data(broken_tokenizer(t / "broken", m), d),
        "cannot load the tokenizer of",
    ),
    # What an interrupted copy leaves: once a 29-line traceback in every command.
    "weights cut short (compress)": (
        lambda t, m, d, k: model_and_data(cut_weights(t / "cut", m), d),
        "model.safetensors is truncated (",
    ),
    "weights cut short (evaluate)": (
        lambda t, m, d, k: [
            "evaluate",
            *model_and_data(cut_weights(t / "cut", m), d),
            "--task",
            "sst2",
        ],  # fmt: skip
        "model.safetensors is truncated (",
    ),
    "weights cut short (predict)": (
        lambda t, m, d, k: ["predict", str(cut_weights(t / "cut", m)), "--text", "good"],
        "model.safetensors is truncated (",
    ),
    "weights cut short (export)": (
        lambda t, m, d, k: ["export", str(cut_weights(t / "cut", m)), "--output", str(t / "x")],
        "model.safetensors is truncated (",
    ),
    "weights cut short (benchmark)": (
        lambda t, m, d, k: [
            "benchmark",
            str(cut_weights(t / "cut", m)),
            "--output",
            str(t / "bench.json"),
        ],  # fmt: skip
        "model.safetensors is truncated (",
    ),
    "weights cut inside the header": (
        lambda t, m, d, k: model_and_data(cut_weights(t / "cut", m, keep=0.01), d),
        "is truncated (its header needs",
    ),
    "weights with a garbled header": (
        lambda t, m, d, k: model_and_data(garbled_header(t / "garbled", m), d),
        "model.safetensors is corrupt (its header is not valid JSON)",
    ),
    "grouping that is one list": (
        lambda t, m, d, k: [*model_and_data(m, d), "--grouping", "[0,1,2,3]"],
        "--grouping must be a JSON list of lists of layer indices, e.g. [[0,1],[2,3]], not",
    ),
    "grouping that is a number": (
        lambda t, m, d, k: [*model_and_data(m, d), "--grouping", "5"],
        "--grouping must be a JSON list of lists of layer indices",
    ),
    "layer map that is a number": (
        lambda t, m, d, k: [*model_and_data(m, d), "--method", "pkd", "--layer-map", "3"],
        "--layer-map must be a JSON list of [student, teacher] layer pairs, e.g. [[1,2],[2,4]]",
    ),
    "malformed JSON in a flag": (
        lambda t, m, d, k: [*model_and_data(m, d), "--method", "pkd", "--layer-map", "[[1,2"],
        "'[[1,2' is not valid JSON (Expecting ',' delimiter)",
    ),
    "a flag's value of the wrong type": (
        lambda t, m, d, k: [*model_and_data(m, d), "--max-steps", "abc"],
        "--max-steps: invalid int value: 'abc'",
    ),
    "an unknown method": (
        lambda t, m, d, k: [*model_and_data(m, d), "--method", "thesus"],
        "--method: invalid choice: 'thesus' (choose from 'theseus'",
    ),
    "YAML widths of one number": (  # read as the flag reads it: [0.5], without the full width
        lambda t, m, d, k: width_method(
            t, m, d, "dynabert", "--config", str(yaml_file(t / "yaml", "widths: 0.5\n"))
        ),
        "widths [0.5] and depths [1.0, 0.75, 0.5] must include 1.0",
    ),
    "YAML grouping that is a number": (
        lambda t, m, d, k: [
            *model_and_data(m, d),
            "--config",
            str(yaml_file(t / "yaml", "grouping: 5\n")),
        ],  # fmt: skip
        "grouping in " + "{t}/yaml/run.yaml must be a list of lists of layer indices",
    ),
    "YAML widths of lists": (
        lambda t, m, d, k: width_method(
            t, m, d, "dynabert", "--config", str(yaml_file(t / "yaml", "widths: [[1]]\n"))
        ),
        "widths in {t}/yaml/run.yaml must be a list of numbers, not [1]",
    ),
    "YAML number that is a word": (
        lambda t, m, d, k: [
            *model_and_data(m, d),
            "--config",
            str(yaml_file(t / "yaml", "epochs: many\n")),
        ],  # fmt: skip
        "epochs in {t}/yaml/run.yaml must be a number, not 'many'",
    ),
    "YAML count that is a fraction": (
        lambda t, m, d, k: [
            *model_and_data(m, d),
            "--config",
            str(yaml_file(t / "yaml", "eval_steps: 2.5\n")),
        ],  # fmt: skip
        "eval_steps in {t}/yaml/run.yaml must be an integer, not 2.5",
    ),
    "YAML switch that is a word": (
        lambda t, m, d, k: [
            *model_and_data(m, d),
            "--config",
            str(yaml_file(t / "yaml", "drop_empty: maybe\n")),
        ],  # fmt: skip
        "drop_empty in {t}/yaml/run.yaml must be true or false, not 'maybe'",
    ),
    # Empty or NaN labels used to become classes of their own.
    "empty and NaN labels": (
        lambda t, m, d, k: model_and_data(
            m, sst2_files(t / "bad", "sentence\tlabel\ngood\t1\nbad\t\nfine\tNaN\nok\t0\n")
        ),
        "train.tsv: 2 rows with an empty or NaN label (lines 3, 4): fill them in, or pass "
        "--drop-empty to drop them",
    ),
    "null label in a JSON Lines file": (
        lambda t, m, d, k: [
            "--model",
            str(m),
            *own_files(
                t / "own", '{"text": "good", "label": "1"}\n{"text": "bad", "label": null}\n'
            ),
        ],  # fmt: skip
        "train.jsonl: 1 row with an empty or NaN label (line 2)",
    ),
    "successor deeper than the predecessor": (
        lambda t, m, d, k: [*model_and_data(m, d), "--successor-layers", "8"],
        "successor depth 8 is more than the predecessor's 4 layers: the successor must have "
        "fewer; pass --successor-layers 1 or 2",
    ),
    "successor as deep as the predecessor": (
        lambda t, m, d, k: [*model_and_data(m, d), "--successor-layers", "4"],
        "the successor would keep all 4 layers of the predecessor: nothing compressed",
    ),
    "KD student as deep as the teacher": (
        lambda t, m, d, k: [*model_and_data(m, d), "--method", "kd", "--successor-layers", "4"],
        "nothing compressed; pass --successor-layers 1 or 2",
    ),
    "grouping of one layer per module": (
        lambda t, m, d, k: [*model_and_data(m, d), "--grouping", "[[0],[1],[2],[3]]"],
        "the successor would keep all 4 layers of the predecessor: nothing compressed",
    ),
    "DynaBERT of the full width and depth only": (
        lambda t, m, d, k: width_method(t, m, d, "dynabert", "--widths", "1", "--depths", "1"),
        "keep every head and layer of the 4-layer, 4-head model: nothing compressed",
    ),
    "LadaBERT keeping everything": (
        lambda t, m, d, k: width_method(
            t, m, d, "ladabert", "--p-embd", "1", "--p-svd", "1", "--p-weight", "1"
        ),
        "p_embd, p_svd and p_weight are all 1: nothing compressed",
    ),
    "fp16 on the CPU": (
        lambda t, m, d, k: no_cuda([*model_and_data(m, d), "--mixed-precision", "fp16"]),
        "--mixed-precision fp16 needs a CUDA device, and this run is on the CPU",
    ),
    "a folder as --train-file": (
        lambda t, m, d, k: [
            "--model",
            str(m),
            "--train-file",
            str(folder_with_a_file(t / "f")),
            "--dev-file",
            str(d / "dev.tsv"),
        ],  # fmt: skip
        "{t}/f is a folder, not a data file: pass the file itself, e.g. {t}/f/dev.tsv",
    ),
    "a file as --data-dir": (
        lambda t, m, d, k: ["--model", str(m), "--data-dir", str(d / "train.tsv")],
        "train.tsv is a file, not a folder: pass the folder that holds train.tsv and dev.tsv",
    ),
}


def digest(*folders: Path) -> dict[str, str]:
    """Every file and folder under `folders`, with each file's SHA-256."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            found[str(path)] = (
                hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
            )
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path, tiny_bert_dir, sst2_dir, tokenizer_dir, capsys, monkeypatch):
    build, message = CASES[case]
    argv = build(tmp_path, tiny_bert_dir, sst2_dir, tokenizer_dir)
    monkeypatch.chdir(tmp_path)  # so a file written to the working folder shows too
    inputs = digest(tmp_path, tiny_bert_dir, sst2_dir, tokenizer_dir)
    full = argv if argv[0] in COMMANDS else [
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
    ]  # fmt: skip
    # A case that names --task or --successor-layers again overrides the default: the last wins.
    code = main(full)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("theseus: error: ") and "\n" not in err, err
    assert message.format(t=tmp_path) in err
    after = digest(tmp_path, tiny_bert_dir, sst2_dir, tokenizer_dir)
    assert after == inputs, "a failed command must write nothing and leave its inputs as they were"


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


def test_rows_with_an_empty_or_nan_label_are_dropped_on_request(tmp_path, tiny_bert_dir, capsys):
    rows = "text\tlabel\ngood movie\tpos\nbad\t\nfine\tNaN\nawful\tneg\ngood\tpos\n"
    data = tmp_path / "own"
    data.mkdir()
    (data / "train.tsv").write_text(rows)
    (data / "dev.tsv").write_text("text\tlabel\ngood\tpos\nbad\tneg\nmeh\tnan\n")
    files = ["--train-file", str(data / "train.tsv"), "--dev-file", str(data / "dev.tsv")]
    args = ["finetune", "--model", str(tiny_bert_dir), *files, "--max-steps", "1"]
    args += ["--mixed-precision", "no", "--drop-empty", "--output", str(tmp_path / "out")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "note: dropped rows with an empty or NaN label (2 in train, 1 in dev)" in err
    # The labels are the file's two, not '' and 'NaN' as classes of their own.
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    kept = load_task_data(train_file=str(data / "train.tsv"), dev_file=str(data / "dev.tsv"),
                          drop_empty=True)  # fmt: skip
    assert kept.train == [(("good movie",), 1), (("awful",), 0), (("good",), 1)]
    assert kept.dev["dev"] == [(("good",), 1), (("bad",), 0)]
    assert kept.empty_labels == {"train": 2, "dev": 1}


def test_a_max_length_below_a_useful_minimum_warns_and_the_run_goes_on(
    tmp_path, tiny_bert_dir, sst2_dir, capsys
):
    out = tmp_path / "out"
    args = ["finetune", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir",
            str(sst2_dir), "--output", str(out), "--max-steps", "1"]  # fmt: skip
    args += ["--mixed-precision", "no"]
    assert main([*args, "--max-length", "3"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "--max-length" in line]
    assert warnings == [
        "warning: --max-length 3 keeps fewer than 8 tokens of each example, special tokens "
        "included: the model reads little of any text (default 128)"
    ]
    assert json.loads((out / "run_config.json").read_text())["training"]["max_length"] == 3
    assert main([*args, "--max-length", "8", "--output", str(tmp_path / "eight")]) == 0
    assert "--max-length" not in capsys.readouterr().err


def test_method_settings_of_the_wrong_shape_are_refused_from_python_too():
    theseus = get_method("theseus")
    with pytest.raises(MethodConfigError, match=r"grouping 5 must be a list of lists of layer"):
        theseus.make_config({"grouping": 5})
    with pytest.raises(MethodConfigError, match=r"grouping \[0, 1\] must be a list of lists"):
        TheseusConfig(grouping=[0, 1]).modules(2)  # modules() checks too
    with pytest.raises(MethodConfigError, match="successor_layers '2' must be an integer"):
        theseus.make_config({"successor_layers": "2"})
    with pytest.raises(MethodConfigError, match=r"layer_map 3 must be a list of \[student, "):
        get_method("pkd").make_config({"successor_layers": 2, "layer_map": 3})
    with pytest.raises(MethodConfigError, match="widths 0.5 must be a list of numbers"):
        get_method("dynabert").make_config({"widths": 0.5})
    # A path may be a Path, and a whole number where a number is asked.
    kd = get_method("kd").make_config({"successor_layers": 2, "student_from": Path("m")})
    assert kd.student_from == Path("m")
    assert get_method("kd").make_config({"successor_layers": 2, "alpha": 1}).alpha == 1


def test_main_gives_back_the_sigterm_handler_it_found(tiny_bert_dir, capsys):
    def mine(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["evaluate", "--model", str(tiny_bert_dir)]) == 2
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, before)


# A child that exports, and stops once the ONNX graph is written (a marker says so) until a
# signal comes: the signal lands inside the export, with its partial folder on disk.
STALLED_EXPORT = """
import sys, time
from pathlib import Path
from bert_theseus.deploy import export

traced = export._trace

def trace_then_wait(*args, **kwargs):
    traced(*args, **kwargs)
    Path(sys.argv[1]).write_text("traced")
    time.sleep(120)

export._trace = trace_then_wait
from bert_theseus.cli import main
sys.exit(main(["export", sys.argv[2], "--onnx", "--output", sys.argv[3]]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_export_leaves_no_partial_folder(signum, tmp_path, tiny_bert_dir):
    marker, out = tmp_path / "traced", tmp_path / "exports" / "model"
    out.parent.mkdir()
    command = [sys.executable, "-c", STALLED_EXPORT, str(marker), str(tiny_bert_dir), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert marker.exists(), process.communicate()[1].decode()[-2000:]
    assert (out.parent / ".model.partial" / "model.onnx").is_file()  # the signal lands mid-export
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()[-2000:]
    assert err.decode().strip().splitlines()[-1] == (
        "theseus: interrupted; no output folder was completed"
    )
    assert list(out.parent.iterdir()) == [], "the partial folder must be removed"
