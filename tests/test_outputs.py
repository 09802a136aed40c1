"""Outputs never destroy inputs (issue 38): an --output that is, contains or lies inside the
model, a data file or folder, or the working directory is refused; --overwrite replaces only
a folder theseus wrote; JSON --output files replace only their own kind; a run locks its
output, so a second run on it is refused at once, naming the first's process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bert_theseus import commands, compare, run_setup
from bert_theseus.cli import main
from bert_theseus.runs import (
    OutputDir,
    OutputLock,
    RunError,
    is_theseus_json,
    theseus_folder,
)

TRAIN = ["--successor-layers", "2", "--max-steps", "2", "--batch-size", "8",
         "--mixed-precision", "no"]  # fmt: skip


@pytest.fixture
def inputs(tmp_path, tiny_bert_dir, sst2_dir):
    """A model folder that theseus wrote (it holds run_config.json, so only the input check
    keeps --overwrite from replacing it) and an SST-2 data folder, in `tmp_path`."""
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    (model / "run_config.json").write_text('{"model": "a predecessor"}\n')
    data = tmp_path / "data"
    shutil.copytree(sst2_dir, data)
    return model, data


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (dotfiles too), files by the hash of their bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "folder"
        for path in sorted(root.rglob("*"))
    }


def compress(m: Path, d: Path, output, *more: str) -> list[str]:
    return ["compress", "--model", str(m), "--task", "sst2", "--data-dir", str(d), *TRAIN,
            "--output", str(output), *more]  # fmt: skip


def foreign(folder: Path) -> Path:
    folder.mkdir()
    (folder / "thesis.tex").write_text("a user's only copy\n")
    return folder


def symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


# name: (argv from (tmp, model, data), the message's distinctive part). Each builder may
# create the files its case needs; the tree is read after it, so they count as inputs.
CASES = {
    "compress over its model, with --overwrite (issue 38's first row)": (
        lambda t, m, d: compress(m, d, m, "--overwrite"),
        "is the model folder {m}: theseus never writes over what it reads",
    ),
    "compress over its data folder, with --overwrite": (
        lambda t, m, d: compress(m, d, d, "--overwrite"),
        "is the data folder {d} (--data-dir)",
    ),
    "compress into the model folder": (
        lambda t, m, d: compress(m, d, m / "student"),
        "lies inside the model folder {m}",
    ),
    "compress into the data folder": (
        lambda t, m, d: compress(m, d, d / "out"),
        "lies inside the data folder {d} (--data-dir)",
    ),
    "compress over a folder holding the inputs": (
        lambda t, m, d: compress(m, d, t, "--overwrite"),
        "contains the model folder {m}",
    ),
    "compress over a symlink to its model": (
        lambda t, m, d: compress(m, d, symlink(t / "link", m), "--overwrite"),
        "is the model folder {m}",
    ),
    "compress into a symlink to its data folder": (
        lambda t, m, d: compress(m, d, symlink(t / "link", d) / "out"),
        "lies inside the data folder {d} (--data-dir)",
    ),
    "finetune over its training file": (
        lambda t, m, d: [
            "finetune",
            "--model",
            str(m),
            "--task",
            "sst2",
            "--train-file",
            str(d / "train.tsv"),
            "--dev-file",
            str(d / "dev.tsv"),
            "--output",
            str(d / "train.tsv"),
            "--overwrite",
        ],  # fmt: skip
        "is the data file {d}/train.tsv (--train-file)",
    ),
    "compress over a foreign folder, with --overwrite": (
        lambda t, m, d: compress(m, d, foreign(t / "thesis"), "--overwrite"),
        "--overwrite replaces only a folder theseus wrote, and {t}/thesis holds none of "
        "run_config.json, export.json, extract.json, plan.json: choose a new --output",
    ),
    "compress into a foreign folder": (
        lambda t, m, d: compress(m, d, foreign(t / "thesis")),
        "already exists and is not empty: pass --overwrite to replace a folder theseus wrote",
    ),
    "export over its model": (
        lambda t, m, d: ["export", str(m), "--onnx", "--output", str(m), "--overwrite"],
        "is the model folder {m}",
    ),
    "extract into its model": (
        lambda t, m, d: [
            "extract",
            str(m),
            "--width",
            "1",
            "--depth",
            "1",
            "--output",
            str(m / "small"),
        ],  # fmt: skip
        "lies inside the model folder {m}",
    ),
    "compare over its data folder": (
        lambda t, m, d: [
            "compare",
            "--model",
            str(m),
            "--task",
            "sst2",
            "--data-dir",
            str(d),
            "--successor-layers",
            "2",
            "--output",
            str(d),
        ],  # fmt: skip
        "is the data folder {d} (--data-dir)",
    ),
    "compare into a foreign folder": (
        lambda t, m, d: [
            "compare",
            "--model",
            str(m),
            "--task",
            "sst2",
            "--data-dir",
            str(d),
            "--successor-layers",
            "2",
            "--output",
            str(foreign(t / "thesis")),
            "--overwrite",
        ],  # fmt: skip
        "holds files a comparison did not write",
    ),
    "predict over the model's config (issue 38's second row)": (
        lambda t, m, d: ["predict", str(m), "--text", "hi", "--output", str(m / "config.json")],
        "--output {m}/config.json lies inside the model folder {m}",
    ),
    "evaluate into the data folder": (
        lambda t, m, d: [
            "evaluate",
            "--model",
            str(m),
            "--task",
            "sst2",
            "--data-dir",
            str(d),
            "--output",
            str(d / "scores.json"),
        ],  # fmt: skip
        "lies inside the data folder {d} (--data-dir)",
    ),
    "predict over its text file": (
        lambda t, m, d: [
            "predict",
            str(m),
            "--file",
            str(text_file(t)),
            "--output",
            str(t / "texts.txt"),
        ],  # fmt: skip
        "is the text file {t}/texts.txt (--file)",
    ),
    "predict over a file theseus did not write": (
        lambda t, m, d: ["predict", str(m), "--text", "hi", "--output", str(notes(t))],
        'exists and theseus did not write it (no "written_by" entry first)',
    ),
    "evaluate into a folder": (
        lambda t, m, d: [
            "evaluate",
            "--model",
            str(m),
            "--task",
            "sst2",
            "--data-dir",
            str(d),
            "--output",
            str(empty(t / "scores")),
        ],  # fmt: skip
        "--output {t}/scores is a folder: name a JSON file",
    ),
    "predict into a missing folder": (
        lambda t, m, d: ["predict", str(m), "--text", "hi", "--output", str(t / "no/p.json")],
        "the folder {t}/no does not exist",
    ),
    "benchmark into a missing folder, bound to fail (issue 38: an empty bo/ was left)": (
        lambda t, m, d: [
            "benchmark",
            str(m),
            "--lengths",
            "1000",
            "--output",
            str(t / "bo" / "b.json"),
        ],  # fmt: skip
        "the folder {t}/bo does not exist",
    ),
    "benchmark into its model": (
        lambda t, m, d: ["benchmark", str(m), "--output", str(m / "b.json")],
        "lies inside the model folder {m}",
    ),
    "benchmark beside a chart theseus did not write": (
        lambda t, m, d: ["benchmark", str(m), "--output", str(chart(t) / "b.json")],
        "b.png, written beside --output {t}/charts/b.json, exists and theseus did not write it",
    ),
}


def text_file(t: Path) -> Path:
    (t / "texts.txt").write_text("a fine film\n")
    return t / "texts.txt"


def notes(t: Path) -> Path:
    (t / "notes.json").write_text('{"mine": true}\n')
    return t / "notes.json"


def empty(folder: Path) -> Path:
    folder.mkdir()
    return folder


def chart(t: Path) -> Path:
    (t / "charts").mkdir()
    (t / "charts" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n a user's chart")
    return t / "charts"


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_that_would_destroy_an_input_is_refused(case, tmp_path, inputs, capsys):
    model, data = inputs
    build, message = CASES[case]
    argv = build(tmp_path, model, data)
    before = tree(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("theseus: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    assert message.format(t=tmp_path, m=model, d=data) in err
    assert tree(tmp_path) == before, "nothing written, every input byte-identical"


def test_the_working_directory_is_never_an_output(tmp_path, inputs, monkeypatch, capsys):
    model, data = inputs
    inner = tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    before = tree(tmp_path)
    for output, relation in ((".", "is"), (tmp_path / "outer", "contains")):
        assert main(compress(model, data, output, "--overwrite")) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"theseus: error: --output {output} {relation} the working directory: choose a "
            "folder of its own, e.g. runs/NAME"
        )
    assert tree(tmp_path) == before


def test_json_outputs_carry_the_mark_and_replace_only_their_own(tmp_path, inputs, capsys):
    model, data = inputs
    answers = tmp_path / "answers.json"
    for text in ("good", "bad"):  # the second replaces the first: theseus wrote it
        assert main(["predict", str(model), "--text", text, "--output", str(answers)]) == 0
        written = json.loads(answers.read_text())
        assert list(written) == ["written_by", "predictions"]
        assert written["written_by"].startswith("bert-theseus ")
        assert [answer["text"] for answer in written["predictions"]] == [text]
        assert set(written["predictions"][0]) == {"text", "label", "score"}
    scores = tmp_path / "scores.json"
    args = ["evaluate", "--model", str(model), "--task", "sst2", "--data-dir", str(data)]
    assert main([*args, "--output", str(scores)]) == 0
    written = json.loads(scores.read_text())
    assert list(written) == ["written_by", "dev"] and 0 <= written["dev"]["accuracy"] <= 1
    assert is_theseus_json(scores) and not list(tmp_path.glob(".*.partial"))
    # A file that only looks like JSON output, without the mark first, is not theseus's.
    scores.write_text(json.dumps({"dev": {}, "written_by": written["written_by"]}))
    capsys.readouterr()
    assert main([*args, "--output", str(scores)]) == 2
    assert "exists and theseus did not write it" in capsys.readouterr().err


def test_overwrite_replaces_a_folder_theseus_wrote(tmp_path, inputs):
    model, data = inputs
    out = tmp_path / "runs" / "student"
    assert main(compress(model, data, out, "--seed", "1")) == 0
    assert main(compress(model, data, out, "--seed", "2", "--overwrite")) == 0
    assert json.loads((out / "run_config.json").read_text())["training"]["seed"] == 2
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "no lock left"


def test_what_marks_a_folder_theseus_wrote(tmp_path):
    for marker, what in (("run_config.json", "a run"), ("export.json", "an export"),
                         ("extract.json", "an extract")):  # fmt: skip
        folder = tmp_path / marker
        folder.mkdir()
        assert theseus_folder(folder) is None
        (folder / marker).write_text("{}")
        assert theseus_folder(folder) == what


def test_a_comparison_goes_on_only_in_a_folder_of_its_own(tmp_path):
    folder = tmp_path / "compare"
    (folder / "runs" / "kd-seed1").mkdir(parents=True)
    (folder / "runs" / "kd-seed1" / "run_config.json").write_text("{}")
    (folder / "runs" / ".pkd-seed1.partial").mkdir()
    (folder / "runs" / ".pkd-seed1.lock").write_text("")
    (folder / "results.md").write_text("# table\n")
    assert compare._compare_folder(folder)
    (folder / "runs" / "mine").mkdir()  # no run_config.json: not a run
    assert not compare._compare_folder(folder)
    (folder / "runs" / "mine").rmdir()
    (folder / "notes.txt").write_text("mine")
    assert not compare._compare_folder(folder)


HOLD = """
import sys, time
from pathlib import Path
from bert_theseus.runs import OutputLock
OutputLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder():
    """Start a process that holds the lock of an output; it is killed at the end."""
    started = []

    def start(output: Path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(output)],
                                   stdout=subprocess.PIPE, text=True)  # fmt: skip
        started.append(process)
        assert process.stdout.readline().strip() == "locked"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def refuse_work(monkeypatch):
    """Any model loading or data reading now fails the test: a refusal must come first."""

    def work(*args, **kwargs):
        raise AssertionError("work started before the lock was checked")

    monkeypatch.setattr(commands, "load_model", work)
    monkeypatch.setattr(commands, "read_data", work)
    monkeypatch.setattr(run_setup, "load_model", work)  # where compress and compare load
    monkeypatch.setattr(run_setup, "read_data", work)
    monkeypatch.setattr(compare, "prepare_run", work)


def test_a_second_run_on_a_locked_output_exits_2_at_once_naming_the_first(
    tmp_path, inputs, holder, monkeypatch, capsys
):
    model, data = inputs
    out = tmp_path / "runs" / "student"
    first = holder(out)  # a run writing `out` (issue 38's third row: two runs at once)
    before = tree(tmp_path)
    with monkeypatch.context() as patched:
        refuse_work(patched)
        assert main(compress(model, data, out, "--seed", "2")) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"theseus: error: --output {out} is being written by another run (process "
            f"{first.pid}, lock {out.parent}/.student.lock): wait for it to finish, or choose "
            "another --output"
        )
        compared = ["compare", "--model", str(model), "--task", "sst2", "--data-dir",
                    str(data), "--successor-layers", "2", "--output", str(out)]  # fmt: skip
        assert main(compared) == 2
        assert f"(process {first.pid}," in capsys.readouterr().err
    assert tree(tmp_path) == before
    # The lock goes with its process: a run killed mid-way blocks no later one.
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (out.parent / ".student.lock").is_file()  # left behind, but no longer locked
    assert main(compress(model, data, out)) == 0
    assert (out / "metrics.json").is_file() and not (out.parent / ".student.lock").exists()


def test_a_lock_taken_after_the_check_refuses_at_open(tmp_path):
    out = tmp_path / "new" / "student"
    run = OutputDir(out)  # nobody writes `out` yet
    other = OutputLock(out)
    other.acquire()  # a run that started at the same time and reached open() first
    try:
        with pytest.raises(
            RunError, match=rf"being written by another run \(process {os.getpid()}"
        ):
            run.open()
        assert [p.name for p in (tmp_path / "new").iterdir()] == [".student.lock"]
    finally:
        other.release()
    assert not (tmp_path / "new").exists(), "the folders made for the lock go with it"
    assert run.open() == tmp_path / "new" / ".student.partial"
    run.abort()
    assert not (tmp_path / "new").exists()


def test_only_the_main_process_locks(tmp_path, monkeypatch):
    out = tmp_path / "student"
    lock = OutputLock(out)
    lock.acquire()  # rank 0 of a run under accelerate, writing
    try:
        monkeypatch.setenv("RANK", "1")
        OutputDir(out)  # the other ranks never write the folder: they must not be refused
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunError, match="being written by another run"):
            OutputDir(out)
    finally:
        lock.release()


def test_a_failed_run_leaves_no_lock_and_no_folder_it_made(tmp_path, tiny_bert_dir, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rows = "text\tscore\ngood\t1e38\nbad\t-1e38\n"  # the squared error overflows: fails at step 1
    (data / "train.tsv").write_text(rows)
    (data / "dev.tsv").write_text(rows)
    before = tree(tmp_path)
    args = ["finetune", "--model", str(tiny_bert_dir), "--train-file", str(data / "train.tsv"),
            "--dev-file", str(data / "dev.tsv"), "--regression", "--text-columns", "text",
            "--label-column", "score", "--max-steps", "3", "--mixed-precision", "no"]  # fmt: skip
    assert main([*args, "--output", str(tmp_path / "new" / "deep" / "out")]) == 2
    assert "loss became inf at step 1" in capsys.readouterr().err
    assert tree(tmp_path) == before
