"""Methods as plug-ins: methods defined in this file alone join every command.

`head-only` trains only the classifier; `head-then-all` is two stages, the head first, then
every weight distilled from the first stage's model. A child process finds them through
BERT_THESEUS_PLUGINS, as a user's own module would be found.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from bert_theseus import Distiller, SoftTargets
from bert_theseus.cli import main
from bert_theseus.methods import MethodConfigError, register_method
from bert_theseus.methods.registry import PLUGINS_VARIABLE, MethodError
from bert_theseus.training import Method
from bert_theseus.training.stages import Stage

TESTS = Path(__file__).parent


@dataclass
class HeadOnlyConfig:
    """Train the classifier alone (a linear probe of the predecessor's features)."""

    train_pooler: bool = field(default=False, metadata={"help": "also train the pooler"})


class HeadOnly(Method):
    name = "head-only"

    def __init__(self, train_pooler: bool = False):
        self.train_pooler = train_pooler

    def prepare(self, model, total_steps):
        for name, parameter in model.named_parameters():
            head = name.startswith("classifier.") or (self.train_pooler and ".pooler." in name)
            parameter.requires_grad_(head)


def build_head_only(context, config: HeadOnlyConfig) -> list[Stage]:
    return [Stage("head", lambda model: (copy.deepcopy(model), HeadOnly(config.train_pooler)))]


@dataclass
class HeadThenAllConfig(SoftTargets):
    """The head alone for `head_steps`, then everything, distilled from the first stage."""

    head_steps: int = field(default=4, metadata={"help": "optimizer steps of the head stage"})

    def validate(self) -> None:
        super().validate()
        if self.head_steps < 1:
            raise MethodConfigError(f"head_steps {self.head_steps} must be at least 1")


class Distilled(Method):
    name = "distilled"

    def __init__(self, distiller: Distiller):
        self.distiller = distiller

    def loss(self, model, batch):
        return self.distiller.loss(model, batch)


def build_head_then_all(context, config: HeadThenAllConfig) -> list[Stage]:
    def everything(model):
        teacher = copy.deepcopy(model)  # the first stage's model, frozen
        return model, Distilled(Distiller(teacher, config, context.regression))

    head = Stage(
        "head", lambda model: (copy.deepcopy(model), HeadOnly()), {"max_steps": config.head_steps}
    )
    return [head, Stage("all", everything)]


register_method("head-only", HeadOnlyConfig, build_head_only, "the classifier alone", "a test")
register_method(
    "head-then-all", HeadThenAllConfig, build_head_then_all, "head, then all by KD", "a test"
)


@pytest.fixture
def predecessor(dropout_bert_dir) -> Path:
    return dropout_bert_dir


FAST = ["--batch-size", "8", "--learning-rate", "1e-3", "--mixed-precision", "no"]


def compress(predecessor, sst2_dir, output, method, *extra) -> list[str]:
    return [
        "compress",
        "--model",
        str(predecessor),
        "--task",
        "sst2",
        "--data-dir",
        str(sst2_dir),
        "--output",
        str(output),
        "--method",
        method,
        "--seed",
        "7",
        "--eval-steps",
        "20",
        *FAST,
        *extra,
    ]


def test_a_plugin_method_trains_through_compress_with_its_own_flag(predecessor, sst2_dir, tmp_path):
    out = tmp_path / "probe"
    assert main(compress(predecessor, sst2_dir, out, "head-only", "--max-steps", "6")) == 0
    before = load_file(predecessor / "model.safetensors")
    after = load_file(out / "model.safetensors")
    changed = sorted(name for name in after if not torch.equal(after[name], before[name]))
    assert changed == ["classifier.bias", "classifier.weight"]
    config = json.loads((out / "run_config.json").read_text())
    assert config["method"] == "head-only" and config["config"] == {"train_pooler": False}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "head-only" and metrics["steps"] == 6

    pooled = tmp_path / "pooled"
    args = compress(predecessor, sst2_dir, pooled, "head-only", "--max-steps", "2")
    assert main([*args, "--train-pooler"]) == 0
    after = load_file(pooled / "model.safetensors")
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    assert "bert.pooler.dense.weight" in changed
    saved = json.loads((pooled / "run_config.json").read_text())
    assert saved["config"] == {"train_pooler": True}


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_help_methods_and_refusals_come_from_the_registry(predecessor, sst2_dir, tmp_path, capsys):
    help_text = _help(["compress", "--method", "head-only"], capsys)
    group = help_text[help_text.index("head-only: the classifier alone") :]
    assert "--train-pooler" in group and "--head-steps" not in help_text
    help_text = _help(["compress", "--method", "head-then-all"], capsys)
    assert "--head-steps" in help_text and "--train-pooler" not in help_text
    help_text = _help(["compare", "--methods", "head-only", "kd", "head-then-all"], capsys)
    group = help_text[help_text.index("head-only: the classifier alone") :]
    assert group.index("--train-pooler") < group.index("head-then-all:")
    assert "--head-steps" in group and "also takes --temperature, --alpha, --teacher-cache" in group

    assert main(["methods"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("head-only ") and "the classifier alone" in line for line in listed)
    assert listed[0].startswith("theseus ")

    refused = tmp_path / "refused"
    args = compress(predecessor, sst2_dir, refused, "head-only", "--max-steps", "2")
    assert main([*args, "--successor-layers", "2"]) == 2
    error = capsys.readouterr().err
    assert "--successor-layers is not a setting of head-only" in error
    assert main([*compress(predecessor, sst2_dir, refused, "head-then-all", "--head-steps", "0")])
    assert "head_steps 0 must be at least 1" in capsys.readouterr().err
    assert not refused.exists()

    with pytest.raises(MethodError, match="registered already"):
        register_method("head-only", HeadThenAllConfig, build_head_then_all, "x", "y")


@dataclass
class PoolerTooConfig:
    """head-only's setting under the same name, with the other default."""

    train_pooler: bool = field(default=True, metadata={"help": "also train the pooler"})


def _pooler_trained(folder: Path, predecessor: Path) -> bool:
    before = load_file(predecessor / "model.safetensors")["bert.pooler.dense.weight"]
    return not torch.equal(load_file(folder / "model.safetensors")["bert.pooler.dense.weight"],
                           before)  # fmt: skip


def test_two_methods_may_share_a_setting_name_with_different_defaults(
    predecessor, sst2_dir, tmp_path, capsys
):
    from bert_theseus.methods import registry

    register_method("pooler-too", PoolerTooConfig, build_head_only, "head and pooler", "a test")
    try:
        one, both = tmp_path / "one", tmp_path / "both"
        assert main(compress(predecessor, sst2_dir, one, "head-only", "--max-steps", "2")) == 0
        assert main(compress(predecessor, sst2_dir, both, "pooler-too", "--max-steps", "2")) == 0
        assert json.loads((one / "run_config.json").read_text())["config"] == {
            "train_pooler": False
        }
        assert json.loads((both / "run_config.json").read_text())["config"] == {
            "train_pooler": True
        }
        assert not _pooler_trained(one, predecessor) and _pooler_trained(both, predecessor)
        help_text = _help(["compare", "--methods", "head-only", "pooler-too"], capsys)
        assert "also takes --train-pooler (its default: True) (above)" in help_text

        # compare: each method keeps its own default; --set changes one method, a plain flag
        # every listed method that has the setting.
        base = ["compare", "--model", str(predecessor), "--task", "sst2", "--data-dir"]
        base += [str(sst2_dir), "--methods", "head-only", "pooler-too", "--max-steps", "2"]
        base += ["--speed-batch-size", "2", "--speed-length", "8", "--speed-repeats", "1", *FAST]

        def pooler_settings(out: Path) -> dict:
            runs = out / "runs"
            return {m: json.loads((runs / f"{m}-seed42/run_config.json").read_text())["config"]
                    ["train_pooler"] for m in ("head-only", "pooler-too")}  # fmt: skip

        assert main([*base, "--output", str(tmp_path / "c1")]) == 0
        assert pooler_settings(tmp_path / "c1") == {"head-only": False, "pooler-too": True}
        flags = ["--set", "head-only.train_pooler=true", "--set", "pooler-too.train-pooler=false"]
        assert main([*base, "--output", str(tmp_path / "c2"), *flags]) == 0
        assert pooler_settings(tmp_path / "c2") == {"head-only": True, "pooler-too": False}
        assert _pooler_trained(tmp_path / "c2/runs/head-only-seed42", predecessor)
        assert main([*base, "--output", str(tmp_path / "c3"), "--no-train-pooler"]) == 0
        assert pooler_settings(tmp_path / "c3") == {"head-only": False, "pooler-too": False}
    finally:
        del registry._REGISTRY["pooler-too"]


def test_compare_tabulates_a_plugin_method_beside_a_builtin(predecessor, sst2_dir, tmp_path):
    out = tmp_path / "compare"
    args = ["compare", "--model", str(predecessor), "--task", "sst2", "--data-dir", str(sst2_dir)]
    args += ["--output", str(out), "--methods", "truncated", "head-only", "--max-steps", "4"]
    args += ["--successor-layers", "2", "--speed-batch-size", "2", "--speed-length", "8", *FAST]
    assert main(args) == 0
    with (out / "results.csv").open() as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    assert list(rows) == ["predecessor", "truncated", "head-only"]
    assert rows["head-only"]["layers"] == "4" and rows["truncated"]["layers"] == "2"
    assert "| head-only | 4 | 1 |" in (out / "results.md").read_text()


def test_a_multi_stage_run_trains_each_stage_and_keeps_their_logs(predecessor, sst2_dir, tmp_path):
    out = tmp_path / "staged"
    args = compress(predecessor, sst2_dir, out, "head-then-all", "--head-steps", "5")
    assert main([*args, "--max-steps", "7"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["head", "all"]
    assert [s["steps"] for s in metrics["stages"]] == [5, 7] and metrics["steps"] == 12
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [(r["stage"], r["step"]) for r in log if "dev" in r]
    assert steps == [("head", 5), ("all", 12)]  # steps count on across stages
    assert (out / "stages/1-head/train_log.jsonl").is_file()
    assert not list(out.rglob("checkpoints")) and not list(out.rglob("model"))
    # The second stage starts from the first one's model: its encoder still equals the
    # predecessor's after stage one, so only the head-stage log shows frozen encoder steps.
    assert json.loads((out / "stages/1-head/result.json").read_text())["steps"] == 5


def _card(out: Path) -> tuple[dict, str]:
    text = (out / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def test_every_run_writes_a_model_card_whose_numbers_are_its_metrics(
    predecessor, sst2_dir, tmp_path, monkeypatch
):
    out = tmp_path / "probe"
    args = compress(predecessor, sst2_dir, out, "head-only", "--max-steps", "4")
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(
                ("upload_folder", kwargs["repo_id"], sorted(os.listdir(kwargs["folder_path"])))
            )
            return "https://hub/commit/1"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert main([*args, "--push-to-hub", "me/probe"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    header, body = _card(out)
    assert header["library_name"] == "bert-theseus"
    assert header["pipeline_tag"] == "text-classification"
    assert "base_model" not in header  # a local predecessor is named in the text instead
    (result,) = header["model-index"][0]["results"]
    assert result["dataset"]["split"] == "dev"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        "accuracy": metrics["dev"]["dev"]["accuracy"]
    }
    assert (
        f"| parameters | {metrics['predecessor_parameters']:,} | {metrics['parameters']:,} |"
        in body
    )
    assert f"Retention: {metrics['retention_percent']}%" in body
    assert f"Speed-up: {metrics['speedup']}x" in body
    assert "theseus compress --model" in body and "--method head-only" in body
    assert 'pipeline("text-classification", model="me/probe")' in body  # loads after the push
    assert calls[0][:2] == ("create_repo", "me/probe")
    assert calls[1][0] == "upload_folder" and "README.md" in calls[1][2]
    assert "model.safetensors" in calls[1][2]


def test_a_failed_upload_keeps_the_finished_run(
    predecessor, sst2_dir, tmp_path, monkeypatch, capsys
):
    import huggingface_hub

    class Offline:
        def create_repo(self, *args, **kwargs):
            raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    out = tmp_path / "probe"
    args = compress(predecessor, sst2_dir, out, "head-only", "--max-steps", "2")
    assert main([*args, "--push-to-hub", "me/probe"]) == 2
    error = capsys.readouterr().err
    assert f"the run is saved in {out}" in error and "hf upload me/probe" in error
    assert (out / "metrics.json").is_file()


def _run_child(args: list[str], ready, timeout: float = 120) -> None:
    """Run `theseus ARGS` in a child that finds this file's methods as a plug-in, and
    SIGKILL it as soon as `ready()` is true."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        PLUGINS_VARIABLE: "test_plugins",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "bert_theseus.cli", *args]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == -9, err.decode()[-800:]


def _steps(folder: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in folder.glob("checkpoints/step-???????")]


def _same_run(expected: Path, resumed: Path) -> None:
    a, b = load_file(expected / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a), "weights differ"

    def log(folder):
        lines = (folder / "train_log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]

    assert log(expected) == log(resumed)


def test_a_killed_plugin_run_resumes_bit_identically(predecessor, sst2_dir, tmp_path):
    args = ["--max-steps", "120", "--save-steps", "3"]
    straight = tmp_path / "straight"
    assert main(compress(predecessor, sst2_dir, straight, "head-only", *args)) == 0
    out = tmp_path / "killed"
    partial = tmp_path / ".killed.partial"
    after = random.randint(3, 60)
    _run_child(
        compress(predecessor, sst2_dir, out, "head-only", *args),
        lambda: max(_steps(partial), default=0) >= after,
    )
    assert not out.exists() and _steps(partial)
    assert (
        main([*compress(predecessor, sst2_dir, out, "head-only", *args), "--resume", "auto"]) == 0
    )
    _same_run(straight, out)


@pytest.mark.parametrize("where", ["first stage", "between stages", "second stage"])
def test_a_killed_multi_stage_run_resumes_bit_identically(where, predecessor, sst2_dir, tmp_path):
    args = ["--head-steps", "60", "--max-steps", "60", "--save-steps", "3"]
    straight = tmp_path / "straight"
    assert main(compress(predecessor, sst2_dir, straight, "head-then-all", *args)) == 0
    out = tmp_path / "killed"
    stages = tmp_path / ".killed.partial" / "stages"
    first, second = stages / "1-head", stages / "2-all"
    after = random.randint(3, 30)
    ready = {
        "first stage": lambda: max(_steps(first), default=0) >= after,
        "between stages": lambda: (first / "result.json").is_file(),
        "second stage": lambda: max(_steps(second), default=0) >= 6,
    }[where]
    _run_child(compress(predecessor, sst2_dir, out, "head-then-all", *args), ready)
    assert not out.exists()
    if where != "first stage":
        assert (first / "result.json").is_file()
    resume = [*compress(predecessor, sst2_dir, out, "head-then-all", *args), "--resume", "auto"]
    assert main(resume) == 0
    _same_run(straight, out)
    assert not (out / "stages/1-head/model").exists()


def _stop_at(stop: int):
    """A before_step that sends this process SIGTERM at step `stop`, as a preemption would."""

    def before_step(self, model, step):
        if step == stop:
            os.kill(os.getpid(), signal.SIGTERM)
        return {}

    return before_step


def test_a_resume_with_other_method_settings_is_refused(
    predecessor, sst2_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(HeadOnly, "before_step", _stop_at(3))
    out = tmp_path / "probe"
    args = compress(predecessor, sst2_dir, out, "head-only", "--max-steps", "8")
    assert main(args) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*args, "--resume", "auto", "--train-pooler"]) == 2
    error = capsys.readouterr().err
    assert "belongs to a different run (method_config" in error and "train_pooler" in error
    assert main([*args, "--resume", "auto"]) == 0


def test_a_resume_refuses_a_finished_stage_made_with_other_settings(
    predecessor, sst2_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(Distilled, "before_step", _stop_at(2))
    out = tmp_path / "staged"
    args = compress(predecessor, sst2_dir, out, "head-then-all", "--max-steps", "6")
    assert main([*args, "--head-steps", "3"]) == 130
    monkeypatch.undo()
    assert (tmp_path / ".staged.partial/stages/1-head/result.json").is_file()
    capsys.readouterr()
    assert main([*args, "--head-steps", "4", "--resume", "auto"]) == 2
    error = capsys.readouterr().err
    assert "finished stage 1-head belongs to a different run (method_config, training" in error
    assert main([*args, "--head-steps", "3", "--seed", "8", "--resume", "auto"]) == 2
    assert "(training differ)" in capsys.readouterr().err
    assert main([*args, "--head-steps", "3", "--resume", "auto"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 9 and metrics["best_step"] in (3 + 5, 3 + 6)  # across stages


def test_a_method_setting_may_not_reuse_a_command_option(capsys):
    from bert_theseus.methods import registry

    @dataclass
    class Clashing:
        epochs: float = 1.0

    register_method("clashing", Clashing, build_head_only, "clashes", "a test")
    try:
        assert main(["methods"]) == 2
        assert "method 'clashing' has a setting 'epochs', which is already an option of" in (
            capsys.readouterr().err
        )
    finally:
        del registry._REGISTRY["clashing"]
    with pytest.raises(MethodError, match="settings needed need defaults"):

        @dataclass
        class NoDefault:
            needed: int

        register_method("no-default", NoDefault, build_head_only, "x", "y")


SRC = TESTS.parent / "src" / "bert_theseus"
# The methods' own result keys (their `report` entries and model attributes): presentation
# of them belongs to the method's registration.
RESULT_KEYS = {"grid", "budget", "weight_bytes", "references", "reference_bytes",
               "reference_latency_ms"}  # fmt: skip
# Files outside methods/ that still know a method, and why (this list may only shrink).
KNOWN = {
    "__init__.py": "the public API re-exports the methods' classes (bert_theseus.KDConfig)",
}


def _method_mentions(path: Path, names: set[str], folders: set[str]) -> list[str]:
    """Where the code of `path` (docstrings and comments aside) names a method, imports a
    method's package, or reads a method's result key."""
    import ast

    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}  # fmt: skip

    def program_name(node) -> bool:  # "theseus", the command, is also a method's name
        parent = parents.get(node)
        first = isinstance(parent, ast.List) and parent.elts[0] is node
        return node.value == "theseus" and (first or isinstance(parent, ast.keyword))

    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            named = text in names and not program_name(node)
            package = any(f"methods.{folder}" in text for folder in folders)
            if id(node) not in docstrings and (named or package or text in RESULT_KEYS):
                hits.append(f"{node.lineno}: {text!r}")
        elif isinstance(node, ast.Attribute) and node.attr in RESULT_KEYS:
            if not (isinstance(parents.get(node), ast.Call) and parents[node].func is node):
                hits.append(f"{node.lineno}: .{node.attr}")  # a call (axis.grid()) is not one
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if "methods" in parts and set(parts) & folders:
                hits.append(f"{node.lineno}: from {node.module}")
    return hits


def test_no_file_outside_methods_names_a_method_or_reads_its_results(tmp_path):
    from bert_theseus.methods import methods

    names = set(methods())
    folders = {p.name for p in (SRC / "methods").iterdir() if (p / "__init__.py").is_file()}
    assert {"dynabert", "ladabert", "refbert", "kd"} <= names and "theseus_kd" in folders
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if not relative.startswith("methods/") and relative not in KNOWN:
            found.update(
                {relative: hits} if (hits := _method_mentions(path, names, folders)) else {}
            )
    assert found == {}
    # The check finds what it looks for: each known exception still names a method (else
    # it leaves the list), and so does a probe.
    assert all(_method_mentions(SRC / relative, names, folders) for relative in KNOWN)
    probe = tmp_path / "probe.py"
    probe.write_text('import a\nfrom .methods.dynabert import x\nm["grid"]\nm.budget\n'
                     'x == "ladabert"\nprog = ["theseus", "kd"]\n')  # fmt: skip
    assert len(_method_mentions(probe, names, folders)) == 5


def test_a_plugin_s_extra_export_inputs_are_computed_for_its_graph(tmp_path):
    """Deployment fills a graph's inputs past the tokens by the provider that a method
    registered for them, from what the export folder holds, without knowing the method."""
    import numpy as np

    from bert_theseus import extra_inputs
    from bert_theseus.deploy.runtime import ExportedClassifier
    from bert_theseus.extra_inputs import ExtraInputs, register_extra_inputs

    (tmp_path / "offset.txt").write_text("5")

    def load(folder):
        offset = int((folder / "offset.txt").read_text())
        return lambda batch: {"shifted_ids": np.asarray(batch["input_ids"]) + offset}

    provider = ExtraInputs(("shifted_ids",), load, lambda model: None, "shift", "shift given")
    register_extra_inputs(provider)
    try:
        with pytest.raises(ValueError, match="shifted_ids are already provided for"):
            register_extra_inputs(ExtraInputs(("shifted_ids", "other"), load, print, "a", "b"))

        class Graph(ExportedClassifier):
            input_names = ["input_ids", "shifted_ids"]
            input_types = {"input_ids": np.int64, "shifted_ids": np.int64}

        graph = Graph()
        graph._extra_inputs(tmp_path)
        feeds = graph.feeds({"input_ids": [[1, 2]], "labels": [0]})
        assert set(feeds) == {"input_ids", "shifted_ids"}
        assert feeds["shifted_ids"].tolist() == [[6, 7]]
        given = graph.feeds({"input_ids": [[1, 2]], "shifted_ids": [[0, 0]]})
        assert given["shifted_ids"].tolist() == [[0, 0]]  # given inputs are not recomputed
        tokens_only = type("Tokens", (ExportedClassifier,), {"input_names": ["input_ids"]})()
        tokens_only._extra_inputs(tmp_path)
        assert tokens_only.extra is None
    finally:
        del extra_inputs._PROVIDERS[("shifted_ids",)]
