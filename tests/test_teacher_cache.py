"""The teacher cache of KD, BERT-PKD and Theseus + KD: the frozen teacher's outputs per
training example, filled from the training batches and reused in later epochs."""

from __future__ import annotations

import json
import random
import signal

import pytest
import torch
from safetensors.torch import load_file
from test_resume import interrupt
from tiny import tiny_batch, tiny_model

from bert_theseus.cli import main
from bert_theseus.methods.kd import KDConfig
from bert_theseus.methods.pkd import PKDConfig
from bert_theseus.methods.truncated import truncate
from bert_theseus.teacher import Distiller


def _counting(teacher):
    calls = []
    teacher.register_forward_hook(lambda module, args, output: calls.append(1))
    return calls


@pytest.mark.parametrize("pkd", [False, True])
def test_a_cached_batch_gives_the_recomputed_loss_without_running_the_teacher(pkd):
    teacher = tiny_model("bert", layers=4)
    student = truncate(teacher, 2).eval()
    config = PKDConfig(successor_layers=2) if pkd else KDConfig(successor_layers=2)
    layer_map = [(1, 2)] if pkd else None
    recomputing = Distiller(teacher, KDConfig(successor_layers=2, teacher_cache=False) if not pkd
                            else PKDConfig(successor_layers=2, teacher_cache=False), False,
                            layer_map)  # fmt: skip
    cached = Distiller(teacher, config, False, layer_map)
    cached.cache_examples(10)
    calls = _counting(teacher)
    batch = {**tiny_batch(3), "labels": torch.tensor([0, 1, 1])}
    examples = torch.tensor([4, 0, 7])
    first = cached.loss(student, batch, examples)  # fills the cache: the teacher runs
    assert len(calls) == 1 and cached.cache.filled.tolist() == [i in (0, 4, 7) for i in range(10)]
    expected = recomputing.loss(student, batch)
    assert len(calls) == 2 and torch.equal(first, expected)
    again = cached.loss(student, batch, examples)  # from the cache: no teacher forward
    assert len(calls) == 2
    assert torch.equal(again, expected)  # logits and [CLS] states kept in fp32: bit for bit
    # A batch with one example not yet cached runs the teacher on the whole batch.
    cached.loss(student, batch, torch.tensor([4, 0, 8]))
    assert len(calls) == 3 and cached.cache.filled[8]
    labels, width = 2, 32
    states = 10 * width * 4 if pkd else 0
    assert cached.cache.nbytes() == 10 + 10 * labels * 4 + states


FAST = ["--batch-size", "8", "--learning-rate", "1e-3", "--mixed-precision", "no", "--seed", "7"]


def kd_args(model, data, output, *extra):
    return ["compress", "--model", str(model), "--task", "sst2", "--data-dir", str(data),
            "--output", str(output), "--successor-layers", "2", "--epochs", "3",
            "--eval-steps", "8", *FAST, *extra]  # fmt: skip


def _losses(folder):
    records = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    return [record["loss"] for record in records if "loss" in record]


def test_kd_with_the_cache_runs_the_teacher_in_the_first_epoch_only(
    tiny_bert_dir, sst2_dir, tmp_path
):
    cached, recomputed = tmp_path / "cached", tmp_path / "recomputed"
    args = ["--method", "kd", "--logging-steps", "1"]
    assert main(kd_args(tiny_bert_dir, sst2_dir, cached, *args)) == 0
    assert main(kd_args(tiny_bert_dir, sst2_dir, recomputed, *args, "--no-teacher-cache")) == 0
    metrics = json.loads((cached / "metrics.json").read_text())
    # 64 examples in batches of 8: the teacher ran on the 8 batches of the first epoch of 24.
    assert metrics["steps"] == 24
    assert metrics["teacher_cache"] == {"bytes": 64 + 64 * 2 * 4, "examples": 64,
                                        "teacher_batches": 8}  # fmt: skip
    assert "teacher_cache" not in json.loads((recomputed / "metrics.json").read_text())
    a, b = _losses(cached), _losses(recomputed)
    assert a[:8] == b[:8]  # the first epoch: the teacher's own outputs, bit for bit
    # Later epochs read outputs computed in other batches: equal up to rounding.
    assert a[8:] == pytest.approx(b[8:], rel=1e-4)


def test_a_killed_pkd_run_resumes_with_its_cache_bit_identically(
    dropout_bert_dir, sst2_dir, tmp_path
):
    args = ["--method", "pkd", "--save-steps", "2"]
    straight = tmp_path / "straight"
    assert main(kd_args(dropout_bert_dir, sst2_dir, straight, *args)) == 0
    out = tmp_path / "killed"
    after = random.randint(10, 20)  # in the second or third epoch: the cache is in use
    interrupt(kd_args(dropout_bert_dir, sst2_dir, out, *args), tmp_path / ".killed.partial",
              after, signal.SIGKILL)  # fmt: skip
    assert main([*kd_args(dropout_bert_dir, sst2_dir, out, *args), "--resume", "auto"]) == 0
    a, b = load_file(straight / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"after {after}"


def test_the_cache_is_no_part_of_a_runs_identity(dropout_bert_dir, sst2_dir, tmp_path):
    """Toggling it (or a checkpoint from before it existed, which records nothing of it)
    neither blocks a resume nor makes compare redo a finished run."""
    args = ["--method", "kd", "--save-steps", "2"]
    out = tmp_path / "kd"
    interrupt(kd_args(dropout_bert_dir, sst2_dir, out, *args), tmp_path / ".kd.partial", 4,
              signal.SIGKILL)  # fmt: skip
    state = next((tmp_path / ".kd.partial" / "checkpoints").glob("step-*/state.json")).read_text()
    assert "teacher_cache" not in state
    resumed = [*kd_args(dropout_bert_dir, sst2_dir, out, *args), "--resume", "auto"]
    assert main([*resumed, "--no-teacher-cache"]) == 0
    assert "teacher_cache" not in (out / "run_config.json").read_text()
