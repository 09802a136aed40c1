"""Interrupted runs: resume ends bit for bit where an uninterrupted run ends; saves are atomic."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import PreTrainedModel

from bert_theseus.cli import main

STEPS = 240


def compress_args(model: Path, data: Path, output: Path) -> list[str]:
    return [
        "compress",
        "--model",
        str(model),
        "--task",
        "sst2",
        "--data-dir",
        str(data),
        "--output",
        str(output),
        "--successor-layers",
        "2",
        "--max-steps",
        str(STEPS),
        "--eval-steps",
        "40",
        "--save-steps",
        "3",
        "--batch-size",
        "8",
        "--learning-rate",
        "1e-3",
        "--mixed-precision",
        "no",
        "--seed",
        "7",
    ]


def records(output: Path) -> list[dict]:
    lines = (output / "train_log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, dropout_bert_dir, sst2_dir) -> Path:
    output = tmp_path_factory.mktemp("straight") / "successor"
    assert main(compress_args(dropout_bert_dir, sst2_dir, output)) == 0
    return output


def interrupt(args: list[str], partial: Path, after_step: int, signum: int) -> bytes:
    """Run `theseus ARGS` in a child process; send it `signum` once checkpoint `after_step`
    (or a later one) exists, so the signal lands somewhere in the steps that follow."""
    checkpoints = partial / "checkpoints"
    command = [sys.executable, "-m", "bert_theseus.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        steps = [int(p.name.split("-")[1]) for p in checkpoints.glob("step-???????")]
        if steps and max(steps) >= after_step:
            break
        time.sleep(0.005)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == (-9 if signum == signal.SIGKILL else 130), err.decode()[-500:]
    return err


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_identical_weights(
    signum, uninterrupted, dropout_bert_dir, sst2_dir, tmp_path
):
    output = tmp_path / "successor"
    args = compress_args(dropout_bert_dir, sst2_dir, output)
    kill_after = random.randint(3, STEPS // 2)  # a checkpoint step; the kill lands after it
    err = interrupt(args, tmp_path / ".successor.partial", kill_after, signum)
    assert not output.exists(), "an interrupted run must not look finished"
    if signum == signal.SIGTERM:
        assert b"--resume auto" in err

    assert main([*args, "--resume", "auto"]) == 0
    expected = load_file(uninterrupted / "model.safetensors")
    resumed = load_file(output / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert (tensor == resumed[name]).all(), f"{name} differs (killed after step {kill_after})"
    assert records(output) == records(uninterrupted)
    assert not (output / "checkpoints").exists()


def test_resume_with_other_settings_is_refused(dropout_bert_dir, sst2_dir, tmp_path, capsys):
    output = tmp_path / "successor"
    args = compress_args(dropout_bert_dir, sst2_dir, output)
    interrupt(args, tmp_path / ".successor.partial", 3, signal.SIGTERM)
    before = sorted(p.name for p in (tmp_path / ".successor.partial").rglob("*"))
    assert main([*args, "--resume", "auto", "--batch-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "belongs to a different run (batch_size 8 -> 4)" in err and "\n" not in err.strip()
    assert sorted(p.name for p in (tmp_path / ".successor.partial").rglob("*")) == before


def test_new_run_refuses_to_wipe_resumable_checkpoints(dropout_bert_dir, sst2_dir, tmp_path):
    partial = tmp_path / ".successor.partial" / "checkpoints" / "step-0000003"
    partial.mkdir(parents=True)
    (partial / "state.json").write_text("{}")
    code = main(compress_args(dropout_bert_dir, sst2_dir, tmp_path / "successor"))
    assert code == 2 and partial.exists()


def test_failed_save_keeps_the_previous_output(
    dropout_bert_dir, sst2_dir, tmp_path, monkeypatch, capsys
):
    output = tmp_path / "teacher"
    args = [
        "finetune",
        "--model",
        str(dropout_bert_dir),
        "--task",
        "sst2",
        "--data-dir",
        str(sst2_dir),
        "--output",
        str(output),
        "--max-steps",
        "4",
        "--batch-size",
        "8",
        "--mixed-precision",
        "no",
    ]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in output.iterdir()}

    def disk_full(self, folder, *a, **k):
        Path(folder, "model.safetensors").write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    assert main([*args, "--overwrite"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".teacher")]
    assert all(not (p / "metrics.json").exists() for p in leftovers)
    assert all(p.name == ".teacher.partial" for p in leftovers)
