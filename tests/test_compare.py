"""`theseus compress --method ...` and `theseus compare` end to end on a tiny model."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
from transformers import AutoModelForSequenceClassification

from bert_theseus.cli import main
from bert_theseus.compare import _resolve_paths, _summarise

FAST = ["--batch-size", "8", "--learning-rate", "2e-3", "--mixed-precision", "no"]
METHOD_COLUMNS = [
    "method",
    "layers",
    "runs",
    "score_mean",
    "score_std",
    "retention_percent",
    "parameters",
    "nonzero_parameters",
    "latency_ms",
    "speedup",
    "train_seconds_mean",
    "constant_runs",
]
RUN_COLUMNS = [
    "method",
    "seed",
    "layers",
    "score",
    "best_step",
    "parameters",
    "nonzero_parameters",
    "latency_ms",
    "speedup",
    "train_seconds",
    "constant",
    "folder",
]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_bert_dir, sst2_dir):
    out = tmp_path_factory.mktemp("compare") / "teacher"
    data = ["--task", "sst2", "--data-dir", str(sst2_dir)]
    code = main(
        ["finetune", "--model", str(tiny_bert_dir), *data, "--output", str(out)]
        + ["--max-steps", "40", *FAST]
    )
    assert code == 0
    return out


def _data(sst2_dir):
    return ["--task", "sst2", "--data-dir", str(sst2_dir)]


def _read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("method", ["truncated", "kd", "pkd", "theseus-kd"])
def test_compress_with_each_method_saves_a_two_layer_student(method, teacher, sst2_dir, tmp_path):
    out = tmp_path / method
    args = ["compress", "--model", str(teacher), *_data(sst2_dir), "--output", str(out)]
    args += ["--method", method, "--successor-layers", "2", "--max-steps", "6", *FAST]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "run_config.json").read_text())
    assert metrics["method"] == config["method"] == method
    assert metrics["layers"] == 2 and metrics["predecessor_layers"] == 4
    assert ("temperature" in config["config"]) == (method != "truncated")
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2


def test_compare_writes_every_table_and_the_plot(teacher, sst2_dir, tmp_path, capsys):
    out = tmp_path / "compare"
    args = ["compare", "--model", str(teacher), *_data(sst2_dir), "--output", str(out)]
    args += ["--successor-layers", "2", "--seeds", "1", "2", "--max-steps", "6"]
    args += ["--eval-steps", "3", "--speed-batch-size", "4", "--speed-length", "16", *FAST]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| theseus-kd | 2 | 2 |" in printed and str(out) in printed

    methods = _read_csv(out / "results.csv")
    runs = _read_csv(out / "runs.csv")
    assert list(methods[0]) == METHOD_COLUMNS and list(runs[0]) == RUN_COLUMNS
    names = ["predecessor", "theseus", "theseus-kd", "truncated", "kd", "pkd"]
    assert [row["method"] for row in methods] == names
    assert len(runs) == 10 and {row["seed"] for row in runs} == {"1", "2"}
    assert all(value != "" for row in runs for value in row.values())
    reference = float(methods[0]["score_mean"])
    for row in methods[1:]:
        assert all(row[column] != "" for column in METHOD_COLUMNS), row
        scores = [float(r["score"]) for r in runs if r["method"] == row["method"]]
        assert float(row["score_mean"]) == pytest.approx(statistics.mean(scores), abs=1e-4)
        assert float(row["score_std"]) == pytest.approx(statistics.stdev(scores), abs=1e-4)
        retention = 100 * float(row["score_mean"]) / reference
        assert float(row["retention_percent"]) == pytest.approx(retention, abs=0.02)  # rounding
        assert int(row["layers"]) == 2 and int(row["parameters"]) < int(methods[0]["parameters"])
        assert float(row["speedup"]) > 0 and float(row["latency_ms"]) > 0
    for run in runs:  # every run is a saved plain model of the student size
        saved = AutoModelForSequenceClassification.from_pretrained(run["folder"])
        assert saved.config.num_hidden_layers == 2
    report = (out / "results.md").read_text()
    assert "selected and reported on dev" in report and "mean ± sample std" in report
    table, paired_section = report.split("## Paired over seeds")
    assert table.count("\n| ") == 7  # header and six rows
    # dev is 12 sentences of each class: one answer for all of them scores 0.5.
    assert "A constant scores at most 0.5000 here." in table
    assert paired_section.count("\n| ") == 11  # header and the ten pairs of five methods
    results = json.loads((out / "results.json").read_text())
    assert results["constant_score"] == 0.5 and len(results["paired"]) == 10
    by_run = {(r["method"], int(r["seed"])): float(r["score"]) for r in runs}
    for pair in results["paired"]:
        assert pair["seeds"] == [1, 2]
        differences = [by_run[pair["first"], s] - by_run[pair["second"], s] for s in (1, 2)]
        assert pair["mean"] == pytest.approx(statistics.mean(differences), abs=1.1e-4)
        assert pair["higher"] + pair["level"] + pair["lower"] == 2
        assert pair["interval"][0] <= pair["mean"] <= pair["interval"][1]
        line = f"| {pair['first']} − {pair['second']} | 2 | {pair['mean']:+.4f} ± "
        assert line in paired_section
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.rglob(".*partial"))

    # The same command again reuses every finished run instead of training anew.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")} == stamps
    rerun = _read_csv(out / "runs.csv")
    assert [r["score"] for r in rerun] == [r["score"] for r in runs]

    # The same model and data reached through symlinks are the same settings.
    (tmp_path / "model-link").symlink_to(teacher)
    (tmp_path / "data-link").symlink_to(sst2_dir)
    linked = [*args]
    linked[linked.index(str(teacher))] = str(tmp_path / "model-link")
    linked[linked.index(str(sst2_dir))] = str(tmp_path / "data-link")
    assert main(linked) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")} == stamps

    # A run recorded before a setting existed (with its default) is still the same run.
    for record in out.glob("runs/*/run_config.json"):
        saved = json.loads(record.read_text())
        del saved["data"]["drop_empty"], saved["training"]["logging_steps"]
        saved["config"].pop("alpha", None)
        record.write_text(json.dumps(saved))
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")} == stamps

    # Other settings on the same folder are refused, naming what differs.
    capsys.readouterr()
    assert main([*args, "--alpha", "0.9", "--methods", "kd"]) == 2
    error = capsys.readouterr().err
    assert "other settings (config.alpha differ)" in error and "--overwrite" in error


def test_compare_reports_on_the_test_file_when_given(teacher, sst2_dir, tmp_path):
    out = tmp_path / "compare"
    args = ["compare", "--model", str(teacher), *_data(sst2_dir), "--output", str(out)]
    args += ["--test-file", str(sst2_dir / "dev.tsv"), "--methods", "truncated", "theseus"]
    args += ["--successor-layers", "2", "--max-steps", "6", "--speed-batch-size", "4"]
    args += ["--speed-length", "16", *FAST]
    assert main(args) == 0
    report = (out / "results.md").read_text()
    assert f"selected on dev, reported on the test file {sst2_dir / 'dev.tsv'}" in report
    # The test file here holds the dev rows, so each reported score is the run's dev score.
    for run in _read_csv(out / "runs.csv"):
        metrics = json.loads(
            (out / "runs" / f"{run['method']}-seed42" / "metrics.json").read_text()
        )
        assert float(run["score"]) == pytest.approx(metrics["dev"]["dev"]["score"], abs=1e-4)
        assert float(run["score"]) == pytest.approx(metrics["test"]["score"], abs=1e-4)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "theseus", "distilbert"], "unknown method"),
        (["--seeds", "1", "1"], "distinct"),
        (["--alpha", "2"], "alpha"),
    ],
)
def test_compare_bad_settings_exit_2_before_training(
    extra, message, teacher, sst2_dir, tmp_path, capsys
):
    out = tmp_path / "compare"
    args = ["compare", "--model", str(teacher), *_data(sst2_dir), "--output", str(out)]
    assert main([*args, "--successor-layers", "2", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_an_interrupted_compare_resumes_and_matches_an_uninterrupted_one(
    teacher, sst2_dir, tmp_path, monkeypatch, capsys
):
    import os
    import signal

    from bert_theseus import KDMethod

    def args(out):
        common = ["compare", "--model", str(teacher), *_data(sst2_dir), "--output", str(out)]
        common += ["--methods", "truncated", "kd", "--successor-layers", "2", "--max-steps", "8"]
        return common + [
            "--save-steps",
            "2",
            "--speed-batch-size",
            "4",
            "--speed-length",
            "8",
            *FAST,
        ]

    assert main(args(tmp_path / "straight")) == 0

    def stop_at_step_5(self, model, step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler's preemption would
        return {}

    monkeypatch.setattr(KDMethod, "before_step", stop_at_step_5)
    assert main(args(tmp_path / "stopped")) == 130
    assert "--resume auto" in capsys.readouterr().err
    assert (tmp_path / "stopped/runs/truncated-seed42/metrics.json").is_file()
    assert list((tmp_path / "stopped/runs/.kd-seed42.partial/checkpoints").iterdir())
    monkeypatch.undo()

    trained = []
    original = KDMethod.before_step

    def record(self, model, step):
        trained.append(step)
        return original(self, model, step)

    monkeypatch.setattr(KDMethod, "before_step", record)
    assert main(args(tmp_path / "stopped")) == 0  # the same command goes on
    assert trained == [6, 7]  # from the checkpoint saved on SIGTERM, not from scratch
    for run in ("truncated-seed42", "kd-seed42"):
        straight = tmp_path / "straight/runs" / run
        resumed = tmp_path / "stopped/runs" / run
        assert (straight / "model.safetensors").read_bytes() == (
            resumed / "model.safetensors"
        ).read_bytes()
        assert _log(straight) == _log(resumed)


def _log(run):
    """The training log without wall-clock times."""
    records = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_compress_baseline_from_a_pretrained_model_and_its_refusals(
    teacher, sst2_dir, tmp_path, capsys
):
    from tiny import tiny_model

    pretrained = tmp_path / "pretrained"
    tiny_model("bert", seed=5, layers=4).bert.save_pretrained(pretrained)
    out = tmp_path / "truncated"
    args = ["compress", "--model", str(teacher), *_data(sst2_dir), "--successor-layers", "2"]
    args += ["--max-steps", "2", *FAST]
    baseline = ["--method", "truncated", "--student-from", str(pretrained), "--output", str(out)]
    assert main([*args, *baseline]) == 0
    config = json.loads((out / "run_config.json").read_text())
    assert config["config"]["student_from"] == str(pretrained)
    assert config["method"] == "truncated"

    refused = tmp_path / "refused"
    capsys.readouterr()
    assert main([*args, "--student-from", str(pretrained), "--output", str(refused)]) == 2
    error = capsys.readouterr().err
    assert "--student-from is not a setting of theseus (it belongs to truncated, kd, pkd, " in error
    compare = ["compare", *args[1:], "--output", str(refused), "--methods", "theseus", "kd"]
    assert main([*compare, "--student-from", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not refused.exists()


def test_summary_retention_uses_unrounded_scores(tiny_bert_dir):
    # The MPNet RTE case: 184 and 188 of 277 correct. Rounded first, 66.43 / 67.87 gives
    # 97.88%; the run's own metrics.json says 97.87%, and the summary must agree with it.
    # Scores are fractions, as in metrics.json.
    predecessor = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    runs = [
        {"method": "kd", "seed": seed, "dev": {"dev": {"score": correct / 277}}, "best_step": 1}
        | {"parameters": 10, "layers": 2, "train_seconds": 1.0, "folder": f"kd-{seed}"}
        for seed, correct in [(1, 184), (2, 184)]
    ]
    timings = {"seconds": {"predecessor": 2.0, "kd-1": 1.0, "kd-2": 1.0}}
    before = {"dev": {"score": 188 / 277}}
    summary = _summarise(runs, before, "dev", timings, predecessor)
    kd = summary["methods"][1]
    assert kd["retention_percent"] == round(100 * 184 / 188, 2) == 97.87
    assert kd["score_mean"] == 0.6643 and kd["score_std"] == 0.0 and kd["layers"] == 2
    assert [row["score"] for row in summary["runs"]] == [0.6643, 0.6643]


def test_settings_resolve_local_paths_and_leave_other_strings_alone(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path)
    settings = {"model": str(tmp_path / "link"), "data": {"data_dir": f"{tmp_path}/./"}}
    settings |= {"hub": "org/not-a-local-model", "long": "x" * 5000, "steps": 3}
    assert _resolve_paths(settings) == {
        "model": str(tmp_path.resolve()),
        "data": {"data_dir": str(tmp_path.resolve())},
        "hub": "org/not-a-local-model",
        "long": "x" * 5000,  # too long to be a file name: the OS refuses, the value stays
        "steps": 3,
    }


def test_summary_pairs_methods_by_seed_but_not_two_views_of_one_run(tiny_bert_dir):
    predecessor = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    correct = {"dynabert w1-d1": (150, 152), "dynabert w0.5-d1": (140, 141), "kd": (145, 146)}
    runs = [
        {"method": method, "seed": seed, "dev": {"dev": {"score": right / 277}}, "best_step": 1}
        | {"parameters": 10, "layers": 2, "train_seconds": 1.0, "folder": f"{method}-{seed}"}
        # A variant's row names the method that trained it (as _expand_variants writes it).
        | ({"trained_by": "dynabert"} if method.startswith("dynabert") else {})
        for method, counts in correct.items()
        for seed, right in zip((1, 2), counts, strict=True)
    ]
    timings = {"seconds": {"predecessor": 2.0} | {run["folder"]: 1.0 for run in runs}}
    summary = _summarise(runs, {"dev": {"score": 0.6}}, "dev", timings, predecessor)
    pairs = {(row["first"], row["second"]): row for row in summary["paired"]}
    assert list(pairs) == [("dynabert w1-d1", "kd"), ("dynabert w0.5-d1", "kd")]
    # 5 and 6 more pairs right out of 277, as fractions, from the unrounded scores.
    assert pairs["dynabert w1-d1", "kd"]["mean"] == round(5.5 / 277, 4) == 0.0199
    assert pairs["dynabert w0.5-d1", "kd"]["lower"] == 2
