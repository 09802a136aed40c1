"""Unlabelled texts (--unlabeled-file): they reach the teacher term and never the task loss,
the teacher cache covers them, runs report them, bad input is one line, resumes are exact."""

from __future__ import annotations

import json
import math
import random
import signal
from pathlib import Path

import pytest
import torch
from conftest import WORDS, sentence
from safetensors.torch import load_file
from test_resume import interrupt, records
from tiny import tiny_batch, tiny_model

from bert_theseus.cli import main
from bert_theseus.data.unlabelled import UNLABELLED_CLASS
from bert_theseus.losses import soft_target_loss, task_loss
from bert_theseus.methods.kd import KDConfig
from bert_theseus.teacher import Distiller

FAST = ["--batch-size", "8", "--learning-rate", "2e-3", "--mixed-precision", "no"]
UNLABELLED = 40  # texts in the unlabelled file


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """A .txt file of in-domain texts, with two empty lines that are dropped and counted."""
    rng = random.Random(5)
    lines = [sentence(rng, i % 2) for i in range(UNLABELLED)]
    lines[3:3] = ["", "   "]
    path = tmp_path_factory.mktemp("unlabelled") / "texts.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _compress(model, sst2_dir, out, *more):
    return ["compress", "--model", str(model), "--task", "sst2", "--data-dir", str(sst2_dir),
            "--output", str(out), "--successor-layers", "2", *FAST, *more]  # fmt: skip


def _batch(labels):
    batch = tiny_batch(batch=len(labels), seed=3)
    batch["labels"] = torch.tensor(labels)
    return batch


# --- the loss -------------------------------------------------------------------------------


def test_a_fully_labelled_batch_takes_the_models_own_loss_bit_for_bit():
    model, teacher = tiny_model("bert", layers=2, seed=1), tiny_model("bert", seed=2)
    batch = _batch([0, 1, 1])
    output = model(**batch)
    assert task_loss(output, batch["labels"], regression=False) is output.loss
    config = KDConfig(successor_layers=2, alpha=0.3, temperature=4.0)
    distiller = Distiller(teacher, config, regression=False)
    loss = distiller.loss(model, batch)
    with torch.no_grad():
        teacher_logits = teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits
    before = 0.7 * output.loss + 0.3 * soft_target_loss(output.logits, teacher_logits, 4.0)
    assert torch.equal(loss, before)  # what the distiller computed before unlabelled rows


@pytest.mark.parametrize("regression", [False, True])
def test_unlabelled_rows_reach_the_teacher_term_alone(regression):
    labels = 1 if regression else 2
    model = tiny_model("bert", layers=2, seed=1, num_labels=labels)
    teacher = tiny_model("bert", seed=2, num_labels=labels)
    sentinel = math.nan if regression else UNLABELLED_CLASS
    batch = _batch([sentinel] * 3)
    config = KDConfig(successor_layers=2, alpha=0.3, temperature=4.0)
    loss = Distiller(teacher, config, regression).loss(model, batch)
    with torch.no_grad():
        teacher_logits = teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits
    soft = soft_target_loss(model(**batch).logits, teacher_logits, 4.0, regression)
    assert torch.isfinite(loss) and torch.equal(loss, 0.3 * soft)  # the task term is 0
    loss.backward()  # a gradient, from the teacher term
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("regression", [False, True])
def test_unlabelled_rows_leave_the_task_terms_gradient_as_it_was(regression):
    model = tiny_model("bert", layers=2, seed=1, num_labels=1 if regression else 2)
    labelled = [0.5, 2.0, 3.5] if regression else [0, 1, 1]
    sentinel = math.nan if regression else UNLABELLED_CLASS
    mixed = _batch([labelled[0], sentinel, labelled[1], sentinel, labelled[2]])
    alone = {k: v[[0, 2, 4]] for k, v in mixed.items()}

    def gradient(batch):
        model.zero_grad()
        task_loss(model(**batch), batch["labels"], regression).backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    for ours, theirs in zip(gradient(mixed), gradient(alone), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_a_method_without_a_teacher_stage_gives_unlabelled_rows_no_loss():
    from bert_theseus.methods.dynabert.method import DynaBERTMethod

    model = tiny_model("bert", layers=2, seed=1)
    method = DynaBERTMethod(model, cells=[(1.0, 1.0), (0.5, 1.0)])  # --final-finetune's stage
    losses = list(method.losses(model, _batch([UNLABELLED_CLASS] * 3)))
    assert [loss.detach().item() for loss in losses] == [0.0, 0.0]
    sum(losses).backward()  # zero, with a graph: the step runs
    mixed = list(method.losses(model, _batch([1, UNLABELLED_CLASS, 0])))
    assert all(torch.isfinite(loss) and loss > 0 for loss in mixed)


def test_ladabert_and_refbert_leave_unlabelled_rows_out_of_their_label_terms():
    from bert_theseus.methods.ladabert.config import LadaBERTConfig
    from bert_theseus.methods.ladabert.method import LadaBERTMethod
    from bert_theseus.methods.refbert.method import RefBERTMethod

    student, teacher = tiny_model("bert", seed=1), tiny_model("bert", seed=2)
    batch = _batch([UNLABELLED_CLASS] * 3)
    terms = {}
    for weight in (0.0, 0.5):
        config = LadaBERTConfig(label_weight=weight)
        method = LadaBERTMethod(student, teacher, config, None, False, "prune-1")
        terms[weight] = method.loss(student, batch)
    assert torch.equal(terms[0.5], terms[0.0])  # the label term adds 0, not NaN
    logits = torch.tensor([[0.5], [9.0], [1.5]], requires_grad=True)
    scores = torch.tensor([1.0, math.nan, 2.0])
    loss = RefBERTMethod._scores(logits, scores)  # the prediction stage of a scored task
    assert torch.isclose(loss, torch.tensor((0.25 + 0.25) / 2))
    loss.backward()
    assert logits.grad[1].item() == 0.0


# --- runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_bert_dir, sst2_dir):
    out = tmp_path_factory.mktemp("unlabelled-teacher") / "teacher"
    args = ["finetune", "--model", str(tiny_bert_dir), "--task", "sst2"]
    args += ["--data-dir", str(sst2_dir), "--output", str(out), "--max-steps", "30", *FAST]
    assert main(args) == 0
    return out


def test_kd_trains_on_unlabelled_texts_and_reports_them(teacher, sst2_dir, texts, tmp_path, capsys):
    out = tmp_path / "kd"
    args = _compress(teacher, sst2_dir, out, "--method", "kd", "--unlabeled-file", str(texts))
    assert main([*args, "--epochs", "2", "--teacher-cache"]) == 0
    printed = capsys.readouterr()
    assert (
        f"data: 64 labelled training examples and {UNLABELLED} unlabelled texts from {texts}, "
        "2 empty dropped (teacher term only)"
    ) in printed.err + printed.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training_examples"] == {"labelled": 64, "unlabelled": UNLABELLED,
                                            "augmented": 0}  # fmt: skip
    # The cache holds every training row, unlabelled ones included: the teacher ran in the
    # first epoch only (13 batches of 8 for 104 rows), the second read it all.
    rows = 64 + UNLABELLED
    assert metrics["teacher_cache"]["examples"] == rows
    assert metrics["teacher_cache"]["teacher_batches"] == math.ceil(rows / 8)
    assert metrics["steps"] == 2 * math.ceil(rows / 8)
    assert "kd: rows without a label train the teacher's soft targets" in printed.err
    card = (out / "README.md").read_text()
    assert f"- Training data: 64 labelled examples, {UNLABELLED} unlabelled and 0 augmented" in card
    assert "(these train the teacher term alone: the teacher's soft targets" in card
    config = json.loads((out / "run_config.json").read_text())
    assert config["unlabelled"] == {"unlabeled_file": str(texts), "unlabeled_dataset": None,
                                    "augment": None, "augment_model": None}  # fmt: skip


def test_a_run_without_unlabelled_texts_counts_its_labelled_examples(teacher, sst2_dir, tmp_path):
    out = tmp_path / "kd"
    assert main([*_compress(teacher, sst2_dir, out, "--method", "kd"), "--max-steps", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training_examples"] == {"labelled": 64, "unlabelled": 0, "augmented": 0}
    assert "unlabelled" not in json.loads((out / "run_config.json").read_text())
    assert "- Training data: 64 labelled examples." in (out / "README.md").read_text()


@pytest.mark.parametrize(
    ("method", "settings"),
    [
        ("pkd", []),
        ("theseus-kd", ["--module-loss", "0.5"]),
        ("dynabert", ["--widths", "1.0", "0.5", "--depths", "1.0", "0.5", "--final-finetune"]),
        ("ladabert", ["--label-weight", "0.5"]),
        ("refbert", []),
    ],
)
def test_every_teacher_method_trains_on_unlabelled_texts(
    method, settings, teacher, sst2_dir, texts, tmp_path
):
    out = tmp_path / method
    args = _compress(teacher, sst2_dir, out, "--method", method, "--unlabeled-file", str(texts))
    if method in ("dynabert", "ladabert"):
        args.remove("--successor-layers"), args.remove("2")
    assert main([*args, *settings, "--max-steps", "14", "--logging-steps", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training_examples"]["unlabelled"] == UNLABELLED
    for record in (json.loads(line) for line in (out / "train_log.jsonl").open()):
        assert all(math.isfinite(v) for k, v in record.items() if "loss" in k), record


def test_a_pair_regression_task_reads_its_columns_and_ignores_a_label(teacher, tmp_path):
    """A scored pair task from a table: both text columns read, a label column (here not
    even a number) left unread, rows with one side empty dropped."""
    rng = random.Random(1)

    def rows(count, labelled=True):
        for i in range(count):
            label = float(i % 5) if labelled else "n/a"
            yield {"a": sentence(rng, i % 2), "b": sentence(rng, 1), "score": label}

    for name, count in (("train", 32), ("dev", 12)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(count)))
    unlabelled = list(rows(10, labelled=False)) + [{"a": "", "b": "w1", "score": 1}]
    (tmp_path / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in unlabelled))
    scorer = tmp_path / "scorer"
    data = ["--train-file", str(tmp_path / "train.jsonl"), "--dev-file",
            str(tmp_path / "dev.jsonl"), "--text-columns", "a", "b", "--label-column", "score",
            "--regression"]  # fmt: skip
    model = tiny_model("bert", layers=4, num_labels=1)
    (tmp_path / "base").mkdir()
    model.save_pretrained(tmp_path / "base")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(teacher).save_pretrained(tmp_path / "base")
    args = ["finetune", "--model", str(tmp_path / "base"), *data, "--output", str(scorer)]
    assert main([*args, "--max-steps", "4", *FAST]) == 0
    out = tmp_path / "kd"
    args = ["compress", "--model", str(scorer), *data, "--output", str(out), "--method", "kd",
            "--successor-layers", "2", "--unlabeled-file",
            str(tmp_path / "more.jsonl")]  # fmt: skip
    assert main([*args, "--max-steps", "6", "--logging-steps", "1", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training_examples"] == {"labelled": 32, "unlabelled": 10, "augmented": 0}
    logged = [json.loads(line) for line in (out / "train_log.jsonl").open()]
    losses = [record["loss"] for record in logged if "loss" in record]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)


def test_compare_reports_what_every_run_trained_on(teacher, sst2_dir, texts, tmp_path):
    out = tmp_path / "compare"
    args = ["compare", "--model", str(teacher), "--task", "sst2", "--data-dir", str(sst2_dir)]
    args += ["--output", str(out), "--methods", "kd", "pkd", "--successor-layers", "2"]
    args += ["--unlabeled-file", str(texts), "--max-steps", "2", "--speed-batch-size", "2"]
    args += ["--speed-length", "8", *FAST]
    assert main(args) == 0
    report = (out / "results.md").read_text()
    assert f"- Trained on: 64 labelled examples, {UNLABELLED} unlabelled and 0 augmented" in report
    results = json.loads((out / "results.json").read_text())
    assert results["training_examples"] == {"labelled": 64, "unlabelled": UNLABELLED,
                                            "augmented": 0}  # fmt: skip
    for run in out.glob("runs/*/metrics.json"):
        assert json.loads(run.read_text())["training_examples"]["unlabelled"] == UNLABELLED
    # Other unlabelled texts are other settings: the finished runs are not reused for them.
    other = tmp_path / "other.txt"
    other.write_text("good w1 w2\n")
    changed = [a if a != str(texts) else str(other) for a in args]
    assert main(changed) == 2


# --- refusals -------------------------------------------------------------------------------


def _refused(args, capsys, *inputs) -> str:
    """Run `args`: exit 2, one line on stderr, `inputs` byte-identical; returns the line."""
    before = {path: path.read_bytes() for path in inputs}
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("theseus: error: "), err
    assert {path: path.read_bytes() for path in inputs} == before
    return err[0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("other.csv", "review,label\ngood w1,1\n", "no text column 'sentence'"),
        ("empty.txt", "", "holds no text"),
        ("blank.txt", "\n  \n\n", "holds no text"),
        ("header.tsv", "sentence\n", "holds no text"),
        ("missing.txt", None, "missing data file"),
    ],
)
def test_a_bad_unlabelled_file_is_one_line_and_nothing_written(
    name, content, message, teacher, sst2_dir, tmp_path, capsys
):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    args = _compress(teacher, sst2_dir, out, "--method", "kd", "--unlabeled-file", str(path))
    inputs = [path] if content is not None else []
    line = _refused(args, capsys, *inputs)
    assert message in line and str(path) in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_txt_file_for_a_pair_task_is_refused(teacher, tmp_path, capsys):
    glue = tmp_path / "RTE"
    glue.mkdir()
    for split in ("train", "dev"):
        (glue / f"{split}.tsv").write_text(
            "index\tsentence1\tsentence2\tlabel\n0\tw1 w2\tw3\tentailment\n"
        )
    texts = tmp_path / "texts.txt"
    texts.write_text("w1 w2\n")
    out = tmp_path / "out"
    args = ["compress", "--model", str(teacher), "--task", "rte", "--data-dir", str(glue)]
    args += ["--output", str(out), "--method", "kd", "--successor-layers", "2"]
    args += ["--unlabeled-file", str(texts)]
    line = _refused(args, capsys, texts)
    assert "takes a pair of texts (sentence1, sentence2)" in line and ".jsonl" in line
    assert not out.exists()


@pytest.mark.parametrize("method", ["theseus", "truncated"])
def test_a_method_without_a_teacher_term_is_refused(method, teacher, sst2_dir, texts, tmp_path,
                                                    capsys):  # fmt: skip
    out = tmp_path / "out"
    args = _compress(teacher, sst2_dir, out, "--method", method, "--unlabeled-file", str(texts))
    line = _refused(args, capsys, texts)
    assert f"method '{method}' has no teacher term" in line and "kd, pkd" in line
    assert not out.exists()


def test_compare_with_a_method_without_a_teacher_term_is_refused(
    teacher, sst2_dir, texts, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["compare", "--model", str(teacher), "--task", "sst2", "--data-dir", str(sst2_dir)]
    args += ["--output", str(out), "--methods", "kd", "theseus", "--successor-layers", "2"]
    line = _refused([*args, "--unlabeled-file", str(texts)], capsys, texts)
    assert "method 'theseus' has no teacher term" in line
    assert not out.exists()


def test_the_python_api_refuses_before_reading_anything(teacher, sst2_dir, tmp_path):
    from bert_theseus.commands import DataConfig, compress
    from bert_theseus.data.unlabelled import UnlabelledConfig
    from bert_theseus.methods import MethodError
    from bert_theseus.methods.theseus import TheseusConfig
    from bert_theseus.training import TrainingConfig

    missing = UnlabelledConfig(unlabeled_file=str(tmp_path / "absent.txt"))
    with pytest.raises(MethodError, match="'theseus' has no teacher term"):
        compress(str(teacher), DataConfig(task="sst2", data_dir=str(tmp_path / "no-data")),
                 TrainingConfig(), TheseusConfig(successor_layers=2), str(tmp_path / "out"),
                 unlabelled=missing)  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_sentence_embedding_run_is_refused(tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("w1 w2\n")
    out = tmp_path / "out"
    args = ["compress", "--model", str(tmp_path / "no-model"), "--embedding", "--train-file",
            str(texts), "--method", "kd", "--successor-layers", "2", "--output", str(out),
            "--unlabeled-file", str(texts)]  # fmt: skip
    line = _refused(args, capsys, texts)
    assert "(--embedding) learns from unlabelled --train-file sentences" in line
    assert not out.exists()


def test_both_sources_at_once_are_refused(teacher, sst2_dir, texts, tmp_path, capsys):
    args = _compress(teacher, sst2_dir, tmp_path / "out", "--method", "kd")
    args += ["--unlabeled-file", str(texts), "--unlabeled-dataset", "someone/texts"]
    assert "not both" in _refused(args, capsys, texts)


# --- a Hub dataset --------------------------------------------------------------------------


def test_an_unlabelled_dataset_is_read_from_its_train_split(
    teacher, sst2_dir, tmp_path, monkeypatch
):
    """A dataset folder `datasets.load_dataset` reads as it reads a Hub id (no network)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "reviews"
    folder.mkdir()
    rows = [{"sentence": f"{word} good", "stars": 5} for word in WORDS[:12]]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "kd"
    args = _compress(teacher, sst2_dir, out, "--method", "kd", "--unlabeled-dataset", str(folder))
    assert main([*args, "--max-steps", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training_examples"]["unlabelled"] == 12


def test_an_unreachable_dataset_is_one_line(teacher, sst2_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    args = _compress(teacher, sst2_dir, out, "--method", "kd")
    line = _refused([*args, "--unlabeled-dataset", "nobody/no-such-texts"], capsys)
    assert "cannot load split 'train' of dataset 'nobody/no-such-texts'" in line
    assert not out.exists()


# --- resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unlabelled", "augmented"])
def test_a_killed_run_with_unlabelled_or_augmented_rows_resumes_bit_identically(
    kind, dropout_bert_dir, sst2_dir, texts, tmp_path, monkeypatch
):
    monkeypatch.setenv("BERT_THESEUS_CACHE", str(tmp_path / "cache"))  # the child's too
    more = ["--unlabeled-file", str(texts)] if kind == "unlabelled" else ["--augment", "1"]

    def args(output):
        return _compress(dropout_bert_dir, sst2_dir, output, "--method", "kd", *more,
                         "--teacher-cache", "--epochs", "3", "--save-steps", "3",
                         "--eval-steps", "13", "--seed", "7")  # fmt: skip

    straight = tmp_path / "straight"
    assert main(args(straight)) == 0
    output = tmp_path / "resumed"
    kill_after = random.randint(3, 24)  # the second epoch reads the cache: kill around it
    interrupt(args(output), tmp_path / ".resumed.partial", kill_after, signal.SIGKILL)
    assert not output.exists()
    assert main([*args(output), "--resume", "auto"]) == 0
    expected = load_file(straight / "model.safetensors")
    resumed = load_file(output / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, resumed[name]), f"{name} differs (killed after {kill_after})"
    assert records(output) == records(straight)
    counts = json.loads((output / "metrics.json").read_text())["training_examples"]
    extra = {"unlabelled": UNLABELLED, "augmented": 0} if kind == "unlabelled" else {
        "unlabelled": 0, "augmented": 64}  # fmt: skip
    assert counts == {"labelled": 64, **extra}


def test_a_resume_on_an_edited_unlabelled_file_of_the_same_length_is_refused(
    teacher, sst2_dir, texts, tmp_path, capsys
):
    """Same name, same number of rows, one word changed: the checkpoint's rows are not
    these, so the resume stops before training instead of mixing two data sets."""
    mine = tmp_path / "texts.txt"
    mine.write_text(texts.read_text())
    output = tmp_path / "successor"
    args = _compress(teacher, sst2_dir, output, "--method", "kd", "--unlabeled-file", str(mine),
                     "--epochs", "3", "--save-steps", "3", "--seed", "7")  # fmt: skip
    partial = tmp_path / ".successor.partial"
    interrupt(args, partial, 3, signal.SIGTERM)
    assert list(partial.glob("checkpoints/step-*")), "the interrupted run left no checkpoint"
    lines = mine.read_text().splitlines()
    lines[0] = " ".join(reversed(lines[0].split()))
    mine.write_text("\n".join(lines) + "\n")
    before = {p: p.stat().st_mtime_ns for p in partial.rglob("*")}
    capsys.readouterr()
    assert main([*args, "--resume", "auto"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the data lines
    assert error.startswith("theseus: error: checkpoint step-"), error
    assert "belongs to a different run (train_data " in error
    assert {p: p.stat().st_mtime_ns for p in partial.rglob("*")} == before
    assert not output.exists()
    mine.write_text(texts.read_text())  # the rows it was made with: it resumes
    assert main([*args, "--resume", "auto"]) == 0


def test_checkpoints_and_stages_made_before_the_data_digest_still_resume(tmp_path):
    from types import SimpleNamespace

    from bert_theseus.training.loop import TRAIN_DATA, TrainingError, _check_same_run
    from bert_theseus.training.stages import _load_result

    def checkpoint(settings):
        return SimpleNamespace(state={"settings": settings}, path=Path("step-0000004"))

    now = {"seed": 1, TRAIN_DATA: "00ff"}
    _check_same_run(checkpoint({"seed": 1}), now)  # made before it: nothing to compare
    _check_same_run(checkpoint(dict(now)), now)
    with pytest.raises(TrainingError, match="train_data '00ee' -> '00ff'"):
        _check_same_run(checkpoint({"seed": 1, TRAIN_DATA: "00ee"}), now)

    result = {"best_step": 3, "best_dev": {}, "steps": 4, "train_seconds": 1.0,
              "constant_steps": [], "constant_views": [], "summary": {}}  # fmt: skip
    for saved, resumes in (({"seed": 1}, True), (now, True), ({**now, TRAIN_DATA: "00ee"}, False)):
        (tmp_path / "result.json").write_text(json.dumps({"settings": saved, **result}))
        if resumes:
            assert _load_result(tmp_path, now).steps == 4
        else:
            with pytest.raises(TrainingError, match="train_data differ"):
                _load_result(tmp_path, now)
