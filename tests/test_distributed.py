"""Several processes mean the same run as one: two CPU processes (gloo, through torchrun) at
batch 4 each against one process at batch 8, and accumulation of 2 batches of 4 against one
of 8.

Same optimizer steps, the same learning rate at every logged step, the same evaluations and
selected step, and final weights equal within 1e-5. Not bit-identical: the two processes'
gradients are averaged by an all-reduce, which adds in another order than one backward over
the whole batch, so float32 rounding differs (about 1e-7 per step here). The tiny model has
dropout 0, since each process draws its own dropout masks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_model
from transformers import BertTokenizerFast

from bert_theseus.cli import main

COMMON = ["--task", "sst2", "--learning-rate", "1e-3", "--mixed-precision", "no",
          "--eval-steps", "3", "--epochs", "2", "--seed", "3", "--logging-steps", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def exact_bert_dir(tmp_path_factory, tokenizer_dir):
    """A tiny predecessor with dropout 0: every process computes the same function."""
    folder = tmp_path_factory.mktemp("exact-bert")
    tiny_model("bert", layers=4).save_pretrained(folder)
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


def two_processes(args: list[str], said: str = " best dev score ") -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "bert_theseus.cli", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count(said) == 1, "one report, from the main process"


def trajectory(folder):
    """Per log line: step, learning rate, and the dev scores of evaluations."""
    lines = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("learning_rate"), r.get("dev"), r.get("p")) for r in lines]


def losses(folder) -> list[float]:
    lines = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r]


def assert_same_run(one, other):
    assert trajectory(one) == trajectory(other)
    # The logged loss is the whole batch's, averaged over the processes' halves.
    assert losses(one) == pytest.approx(losses(other), abs=1e-5)
    a, b = (
        json.loads((one / "metrics.json").read_text()),
        json.loads((other / "metrics.json").read_text()),
    )
    assert (a["steps"], a["best_step"]) == (b["steps"], b["best_step"])
    x, y = load_file(one / "model.safetensors"), load_file(other / "model.safetensors")
    assert x.keys() == y.keys()
    for key in x:
        torch.testing.assert_close(x[key], y[key], atol=1e-5, rtol=0, msg=key)
    return a


@pytest.mark.parametrize(
    "command",
    [
        ["compress", "--method", "theseus", "--successor-layers", "2"],
        ["compress", "--method", "kd", "--successor-layers", "2"],
        # Both processes must draw the same sub-networks every step, or their gradients
        # would average different cells' and the weights drift apart. Every sentence is cut
        # to 6 tokens: the hidden-state MSE counts padded positions, so halves padded to
        # other lengths than the whole batch would give other losses.
        (
            "compress --method dynabert --widths 1.0 0.75 0.5 0.25 --depths 1.0 0.5 "
            "--subnetworks sandwich --sampled 1 --max-length 6"
        ).split(),
    ],
    ids=["theseus", "kd", "dynabert-sandwich"],
)
def test_two_processes_train_the_same_run_as_one(command, exact_bert_dir, sst2_dir, tmp_path):
    stages = 2 if "dynabert" in command else 1
    args = [*command, "--model", str(exact_bert_dir), "--data-dir", str(sst2_dir), *COMMON]
    assert main([*args, "--batch-size", "8", "--output", str(tmp_path / "one")]) == 0
    two_processes([*args, "--batch-size", "4", "--output", str(tmp_path / "two")])
    metrics = assert_same_run(tmp_path / "one", tmp_path / "two")
    assert metrics["steps"] == 16 * stages  # 64 examples, 8 a step, 2 epochs: not 32 a stage


def test_accumulating_two_half_batches_equals_one_full_batch(exact_bert_dir, sst2_dir, tmp_path):
    args = ["compress", "--method", "theseus", "--successor-layers", "2", "--model",
            str(exact_bert_dir), "--data-dir", str(sst2_dir), *COMMON]  # fmt: skip
    assert main([*args, "--batch-size", "8", "--output", str(tmp_path / "full")]) == 0
    half = [*args, "--batch-size", "4", "--gradient-accumulation-steps", "2"]
    assert main([*half, "--output", str(tmp_path / "half")]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "half")
    config = json.loads((tmp_path / "half" / "run_config.json").read_text())
    assert config["training"]["gradient_accumulation_steps"] == 2


def test_a_signal_to_one_process_stops_both_and_the_run_resumes_bit_identically(
    exact_bert_dir, sst2_dir, tmp_path
):
    args = ["compress", "--method", "theseus", "--successor-layers", "2", "--model",
            str(exact_bert_dir), "--data-dir", str(sst2_dir), *COMMON, "--epochs", "30",
            "--batch-size", "4", "--save-steps", "2"]  # fmt: skip
    two_processes([*args, "--output", str(tmp_path / "straight")])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "bert_theseus.cli", *args,
               "--output", str(tmp_path / "stopped")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoints = tmp_path / ".stopped.partial" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(checkpoints.glob("step-0000004")):
        time.sleep(0.05)
    workers = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True)
    worker = max(int(pid) for pid in workers.stdout.split())  # either worker will do
    os.kill(worker, signal.SIGTERM)
    _, err = launcher.communicate(timeout=120)
    # 240 steps: the signal (after step 4) comes long before the end.
    assert launcher.returncode != 0 and not (tmp_path / "stopped").exists(), err.decode()[-800:]
    said = [line for line in err.decode().splitlines() if line.startswith("theseus: stopped")]
    assert len(said) == 1, said  # both stopped after one step, the main process says where
    step = int(said[0].split("after step ")[1].split(" ")[0])
    assert (checkpoints / f"step-{step:07d}").is_dir()
    two_processes([*args, "--output", str(tmp_path / "stopped"), "--resume", "auto"])
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "stopped" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_compare_on_two_processes_trains_each_run_once_and_writes_one_table(
    exact_bert_dir, sst2_dir, tmp_path
):
    out = tmp_path / "compare"
    args = ["compare", "--model", str(exact_bert_dir), "--data-dir", str(sst2_dir), *COMMON,
            "--methods", "truncated", "--successor-layers", "2", "--batch-size", "4",
            "--speed-batch-size", "2", "--speed-length", "8", "--output", str(out)]  # fmt: skip
    two_processes(args, said="| truncated | 2 | 1 |")
    (run,) = (out / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 16 and (out / "results.md").is_file()


def test_a_resume_with_another_process_count_or_accumulation_is_refused_both_ways():
    from types import SimpleNamespace

    from bert_theseus.training.loop import TrainingError, _check_same_run

    def checkpoint(settings):
        return SimpleNamespace(state={"settings": settings}, path=Path("step-0000004"))

    _check_same_run(checkpoint({"seed": 1}), {"seed": 1})  # runs that recorded neither
    _check_same_run(checkpoint({"seed": 1, "processes": 2}), {"seed": 1, "processes": 2})
    for saved, now in (({"processes": 2}, {}), ({}, {"processes": 2}),
                       ({"gradient_accumulation_steps": 2}, {})):  # fmt: skip
        with pytest.raises(TrainingError, match="belongs to a different run"):
            _check_same_run(checkpoint({"seed": 1, **saved}), {"seed": 1, **now})
