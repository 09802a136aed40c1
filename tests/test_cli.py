"""The `theseus` commands end to end on tiny models, and their errors."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bert_theseus.cli import _method_configs, main, parse

FAST = ["--batch-size", "8", "--learning-rate", "2e-3", "--mixed-precision", "no"]
RUN_FILES = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "run_config.json",
    "metrics.json",
    "train_log.jsonl",
    "training.png",
}


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_bert_dir, sst2_dir):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    code = main(
        [
            "finetune",
            "--model",
            str(tiny_bert_dir),
            "--task",
            "sst2",
            "--data-dir",
            str(sst2_dir),
            "--output",
            str(out),
            "--max-steps",
            "48",
            "--eval-steps",
            "24",
            *FAST,
        ]
    )
    assert code == 0
    return out


def test_finetune_writes_a_complete_run(finetuned):
    assert RUN_FILES <= {p.name for p in finetuned.iterdir()}
    assert not list(finetuned.glob("*.bin")) and not list(finetuned.glob("*.pt"))  # safetensors
    assert not list(finetuned.parent.glob(".*partial"))
    metrics = json.loads((finetuned / "metrics.json").read_text())
    assert metrics["method"] == "finetune" and metrics["layers"] == 4
    assert metrics["dev"]["dev"]["score"] > 0.6  # the label word is easy to find
    log = [json.loads(line) for line in (finetuned / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "dev" in r] == [24, 48]
    assert (finetuned / "training.png").read_bytes()[:4] == b"\x89PNG"
    config = json.loads((finetuned / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_compress_then_evaluate(finetuned, sst2_dir, tmp_path, capsys):
    out = tmp_path / "successor"
    code = main(
        [
            "compress",
            "--model",
            str(finetuned),
            "--task",
            "sst2",
            "--data-dir",
            str(sst2_dir),
            "--output",
            str(out),
            "--successor-layers",
            "2",
            "--scheduler",
            "linear",
            "--max-steps",
            "12",
            "--eval-steps",
            "6",
            "--test-file",
            str(sst2_dir / "dev.tsv"),  # the dev rows again, so test must score as dev does
            *FAST,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "predecessor: 4 layers" in printed and "successor:   2 layers" in printed
    assert "speed-up" in printed
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["layers"] == 2 and metrics["predecessor_layers"] == 4
    assert metrics["parameters"] < metrics["predecessor_parameters"]
    assert metrics["speedup"] > 0 and "retention_percent" in metrics
    assert metrics["test"] == pytest.approx(metrics["dev"]["dev"])
    assert metrics["predecessor_dev"]["test"] == metrics["predecessor_dev"]["dev"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    rates = [r["replacing_rate"] for r in log if "replacing_rate" in r]
    assert rates == sorted(rates) and rates[-1] == 1.0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 2 and len(model.bert.encoder.layer) == 2

    # evaluate scores the saved successor exactly as the run's best checkpoint.
    report = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(out),
                "--task",
                "sst2",
                "--data-dir",
                str(sst2_dir),
                "--output",
                str(report),
                "--mixed-precision",
                "no",
            ]
        )
        == 0
    )
    assert json.loads(report.read_text())["dev"] == pytest.approx(metrics["dev"]["dev"])

    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        assert model(**tokenizer(["w1 good w2"], return_tensors="pt")).logits.shape == (1, 2)


def test_yaml_config_supplies_defaults_and_flags_win(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("successor-layers: 3\nlearning_rate: 0.001\nscheduler: constant\n")
    args = parse(
        [
            "compress",
            "--model",
            "m",
            "--output",
            "o",
            "--config",
            str(config),
            "--learning-rate",
            "5e-5",
        ]
    )
    assert args.successor_layers == 3 and args.scheduler == "constant"
    assert args.learning_rate == 5e-5
    # A list option written as a YAML string is split as the shell would split the flag.
    config.write_text("methods: truncated kd\ntrain_parts: head\nseeds: [1, 2]\n")
    args = parse(["compare", "--model", "m", "--output", "o", "--config", str(config)])
    assert args.methods == ["truncated", "kd"] and args.train_parts == ["head"]
    assert args.seeds == [1, 2]


def error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def test_missing_model_and_existing_output(tiny_bert_dir, sst2_dir, tmp_path, capsys):
    code, err = error_of(
        capsys,
        ["evaluate", "--model", str(tmp_path), "--task", "sst2", "--data-dir", str(sst2_dir)],
    )
    assert code == 2 and "is not a model folder (no config.json)" in err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("user's file")
    code, err = error_of(
        capsys,
        [
            "finetune",
            "--model",
            str(tiny_bert_dir),
            "--task",
            "sst2",
            "--data-dir",
            str(sst2_dir),
            "--output",
            str(taken),
        ],
    )
    assert code == 2 and "already exists and is not empty: pass --overwrite" in err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def pair_task(folder, header: str, label) -> str:
    """A tiny sentence-pair task in GLUE's layout (RTE's has an index column first);
    `label(i)` gives row i's label."""
    folder.mkdir()
    index = header.startswith("index")
    for split, rows in (("train", 16), ("dev", 8)):
        lines = [header] + [
            f"{f'{i}' + chr(9) if index else ''}w{i} w{i + 1}\tw{i + 2} good\t{label(i)}"
            for i in range(rows)
        ]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return str(folder)


def test_a_successor_fine_tunes_on_another_task_with_a_fresh_head(finetuned, sst2_dir, tmp_path):
    """Intermediate-task transfer (Xu et al. 2020, section 4.6): the encoder comes from the
    successor, the head is drawn anew, even where its size would fit."""
    successor = tmp_path / "successor"
    assert main(["compress", "--model", str(finetuned), "--task", "sst2", "--data-dir",
                 str(sst2_dir), "--output", str(successor),
                 "--successor-layers", "2", "--max-steps", "2", *FAST]) == 0  # fmt: skip
    stsb = pair_task(tmp_path / "STS-B", "sentence1\tsentence2\tscore", lambda i: i % 5)
    rte = pair_task(tmp_path / "RTE", "index\tsentence1\tsentence2\tlabel",
                    lambda i: ["entailment", "not_entailment"][i % 2])  # fmt: skip
    source = AutoModelForSequenceClassification.from_pretrained(successor)
    tiny = ["--max-steps", "1", "--learning-rate", "1e-12", "--mixed-precision", "no"]
    for task, data, labels in (("stsb", stsb, 1), ("rte", rte, 2)):
        out = tmp_path / task
        assert main(["finetune", "--model", str(successor), "--task", task, "--data-dir", data,
                     "--output", str(out), *tiny]) == 0  # fmt: skip
        model = AutoModelForSequenceClassification.from_pretrained(out)
        assert model.config.num_hidden_layers == 2 and model.config.num_labels == labels
        encoder = {k: v for k, v in source.base_model.state_dict().items()}
        for key, value in model.base_model.state_dict().items():
            torch.testing.assert_close(value, encoder[key], atol=1e-6, rtol=0, msg=key)
        # RTE's head has SST-2's size, but not its meaning: drawn anew all the same.
        assert not torch.allclose(model.classifier.weight[:1], source.classifier.weight[:1])


def test_the_default_max_length_shrinks_to_the_models_positions(finetuned):
    from tiny import tiny_model

    from bert_theseus.models import token_positions

    # The tiny models have 64 positions; RoBERTa's first pad_token_id + 1 hold no token.
    assert token_positions(tiny_model("bert").config) == 64
    assert token_positions(tiny_model("roberta").config) == 62
    assert token_positions(tiny_model("deberta-v2").config) is None  # relative positions only
    recorded = json.loads((finetuned / "run_config.json").read_text())["training"]
    assert recorded["max_length"] == 64  # the default 128 did not fit


def _help_lines(argv: list[str], capsys) -> list[str]:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out.splitlines()


def test_compress_help_shows_the_shared_flags_and_one_methods(capsys, monkeypatch):
    from bert_theseus.methods import methods

    monkeypatch.setenv("COLUMNS", "80")  # the width a terminal starts with
    plain = "\n".join(_help_lines(["compress"], capsys))
    assert "--learning-rate X" in plain and "--successor-layers N" not in plain
    assert "'theseus compress --method NAME --help'" in plain and "'theseus methods'" in plain
    for name, spec in methods().items():
        lines = _help_lines(["compress", "--method", name], capsys)
        assert len(lines) < 120, (name, len(lines))
        text = "\n".join(lines)
        assert f"{name}: {spec.summary[:30]}" in text and "--learning-rate" in text
        for other in methods().values():  # no other method's group
            assert other is spec or f"\n{other.name}: " not in text
    kd = "\n".join(_help_lines(["compress", "--method", "kd"], capsys))
    assert "--temperature" in kd and "--scheduler" not in kd and "--dropped-layer" not in kd


def test_compare_set_gives_one_method_a_setting(tmp_path):
    base = ["compare", "--model", "m", "--output", "o", "--methods", "kd", "pkd"]
    base += ["--successor-layers", "2"]
    args = parse([*base, "--alpha", "0.2", "--set", "kd.alpha=0.7", "--set", "pkd.beta=3"])
    configs = _method_configs(args.methods, args)
    assert configs["kd"].alpha == 0.7 and configs["pkd"].alpha == 0.2
    assert configs["pkd"].beta == 3.0 and isinstance(configs["pkd"].beta, float)
    assert configs["kd"].temperature == configs["pkd"].temperature == 5.0

    config = tmp_path / "compare.yaml"
    config.write_text(
        "methods: kd pkd\nsuccessor_layers: 2\nset:\n  kd: {alpha: 0.9, teacher-cache: true}\n"
    )
    args = parse(["compare", "--model", "m", "--output", "o", "--config", str(config)])
    configs = _method_configs(args.methods, args)
    assert configs["kd"].alpha == 0.9 and configs["kd"].teacher_cache is True
    assert configs["pkd"].alpha == 0.5  # its default
    args = parse([*base[:5], "--config", str(config), "--set", "kd.alpha=0.1"])
    assert _method_configs(args.methods, args)["kd"].alpha == 0.1  # the flag wins


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "alpha=0.7"], "--set: takes METHOD.SETTING=VALUE, e.g. kd.alpha=0.7"),
        (["--set", "theseus.k=1"], "'theseus' is not one of the compared methods (kd, pkd)"),
        (["--set", "kd.beta=2"], "method 'kd' has no setting beta"),
        (["--set", "kd.alpha=high"], "alpha in --set kd.alpha=high must be a number"),
        (["--scheduler", "linear"], "--scheduler is not a setting of kd, pkd (it belongs to "),
    ],
)
def test_compare_set_refusals_are_one_line(argv, message, tmp_path, capsys):
    base = ["compare", "--model", str(tmp_path), "--output", str(tmp_path / "out")]
    assert main([*base, "--methods", "kd", "pkd", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
