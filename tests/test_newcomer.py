"""What a newcomer meets first: a CLI that starts at once, says what it is doing, and one
score scale; a model card whose snippet works from anywhere; runs that record what ran."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bert_theseus.cli import main
from bert_theseus.training import TrainingConfig, make_accelerator

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "transformers", "sklearn", "scipy", "accelerate", "bert_theseus.compact")


def _loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running `code`."""
    probe = (
        f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                          timeout=120, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import bert_theseus.cli",
        "import bert_theseus.cli as c; c.build_parser()",
        "import bert_theseus.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass",
        "import bert_theseus.cli as c\ntry:\n    c.main(['compress', '--help'])\n"
        "except SystemExit:\n    pass",
        "import bert_theseus.cli as c; assert c.main(['methods']) == 0",
    ],
    ids=["import", "parser", "help", "compress-help", "methods"],
)
def test_help_and_methods_load_no_torch_transformers_or_sklearn(code):
    assert _loaded_after(code) == []


def test_import_registers_the_model_families_once_transformers_is_imported():
    """`import bert_theseus` stays cheap, yet `pipeline(model=folder)` finds compact and
    RefBERT models: they register as transformers is imported, whichever module imports it
    first (here arch.py, which the compact family itself needs)."""
    code = (
        "import sys, bert_theseus\n"
        "assert 'torch' not in sys.modules\n"
        "import bert_theseus.arch\n"
        "mapping = sys.modules['transformers.models.auto.configuration_auto'].CONFIG_MAPPING\n"
        "assert {'bert-theseus-compact', 'bert-theseus-refbert'} <= set(mapping._extra_content)"
    )
    assert "torch" in _loaded_after(code)


def test_a_lazily_exported_function_keeps_its_name_when_its_submodule_is_imported():
    """`deploy.benchmark` is a function of the submodule deploy/benchmark.py: importing the
    submodule first must not turn the package's name into the module (as eager imports
    never did)."""
    code = (
        "import types, bert_theseus.deploy.benchmark, bert_theseus.methods.dynabert.importance\n"
        "from bert_theseus.deploy import benchmark\n"
        "from bert_theseus.methods.dynabert import importance\n"
        "import bert_theseus\n"
        "assert callable(benchmark) and not isinstance(benchmark, types.ModuleType)\n"
        "assert callable(importance) and not isinstance(importance, types.ModuleType)\n"
        "assert isinstance(bert_theseus.compact, types.ModuleType)"
    )
    assert "torch" in _loaded_after(code)


FAST = ["--batch-size", "8", "--learning-rate", "2e-3"]


def _snippet(card: Path) -> str:
    """The Python block under the model card's "## Use"."""
    use = card.read_text().split("## Use", 1)[1]
    return use.split("```python\n", 1)[1].split("```", 1)[0]


def _run_snippet(card: Path, cwd: Path) -> str:
    """Run the card's usage snippet as a user would, from another working folder."""
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", _snippet(card)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _scores_printed(text: str) -> list[float]:
    """Every number printed right after the word "score"."""
    return [float(x) for x in re.findall(r"score[^0-9\n]{0,3}(-?\d+\.\d+)", text)]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_bert_dir, sst2_dir):
    """A compress run at the default --mixed-precision (auto), and what it printed."""
    out = tmp_path_factory.mktemp("runs") / "successor"
    args = ["compress", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir",
            str(sst2_dir), "--output", str(out), "--successor-layers", "2", "--max-steps", "4",
            "--eval-steps", "2", *FAST]  # fmt: skip
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0
    return out, printed.getvalue()


def test_metrics_record_the_precision_that_ran(run):
    out, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    ran = make_accelerator(TrainingConfig()).mixed_precision  # what auto resolves to here
    assert ran in ("bf16", "no") and metrics["mixed_precision"] == ran
    assert json.loads((out / "run_config.json").read_text())["training"]["mixed_precision"] == (
        "auto"  # the setting as given stays the run's record (resume and reuse compare it)
    )
    shown = "in fp32" if ran == "no" else f"with {ran} mixed precision"
    assert (
        f"optimizer steps in {metrics['train_seconds']} s {shown};"
        in (out / "README.md").read_text()
    )


def test_the_report_prints_scores_on_the_metrics_json_scale(run):
    out, printed = run
    metrics = json.loads((out / "metrics.json").read_text())
    score = metrics["dev"]["dev"]["score"]
    before = metrics["predecessor_dev"]["dev"]["score"]
    assert f"best dev score {score:.4f}" in printed and f"dev score {before:.4f}" in printed
    assert _scores_printed(printed) and all(0 <= s <= 1 for s in _scores_printed(printed))
    card = (out / "README.md").read_text()
    assert f"| dev score | {before:.4f} | {score:.4f} |" in card


def test_the_cards_usage_snippet_loads_the_model_from_another_folder(run, tmp_path):
    out, _ = run
    snippet = _snippet(out / "README.md")
    assert f'model="{out.resolve()}"' in snippet or f'model="{out.absolute()}"' in snippet
    answer = _run_snippet(out / "README.md", tmp_path)
    assert "'label': 'negative'" in answer or "'label': 'positive'" in answer


def test_evaluate_reads_the_runs_recorded_data_when_no_data_flag_is_given(
    run, sst2_dir, tmp_path, capsys
):
    out, _ = run
    recorded = tmp_path / "recorded.json"
    assert main(["evaluate", "--model", str(out), "--output", str(recorded)]) == 0
    said = capsys.readouterr().err
    line = f"using those {out / 'run_config.json'} records: --task sst2 --data-dir {sst2_dir}"
    assert line in said and said.count("evaluate: no data flags given") == 1
    flags = tmp_path / "flags.json"
    data = ["--task", "sst2", "--data-dir", str(sst2_dir)]
    assert main(["evaluate", "--model", str(out), *data, "--output", str(flags)]) == 0
    assert "no data flags given" not in capsys.readouterr().err
    assert json.loads(recorded.read_text()) == json.loads(flags.read_text())
    # Flags given win: a test file is scored, and the recorded settings are not read.
    test = tmp_path / "test.json"
    given = [*data, "--test-file", str(sst2_dir / "dev.tsv"), "--output", str(test)]
    assert main(["evaluate", "--model", str(out), *given]) == 0
    assert "no data flags given" not in capsys.readouterr().err
    assert set(json.loads(test.read_text())) == {"written_by", "dev", "test"}


def test_compare_says_which_run_starts_and_which_is_reused(tiny_bert_dir, sst2_dir, tmp_path):
    out = tmp_path / "compare"
    args = ["compare", "--model", str(tiny_bert_dir), "--task", "sst2", "--data-dir",
            str(sst2_dir), "--output", str(out), "--methods", "truncated", "kd", "--seeds", "1",
            "2", "--successor-layers", "2", "--max-steps", "2", "--eval-steps", "2",
            "--speed-batch-size", "2", "--speed-length", "8", "--mixed-precision", "no",
            *FAST]  # fmt: skip
    said, printed = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(printed):
        assert main(args) == 0
    lines = [line for line in said.getvalue().splitlines() if line.startswith("compare: ")]
    runs = [("truncated", 1), ("truncated", 2), ("kd", 1), ("kd", 2)]
    assert lines == [
        f"compare: run {k} of 4: {m}, seed {s} (training into {out / 'runs' / f'{m}-seed{s}'})"
        for k, (m, s) in enumerate(runs, 1)
    ]
    # One scale in the table as in metrics.json: the runs' fractions, to 4 decimals.
    results = list(csv.DictReader((out / "results.csv").open()))
    for row in results[1:]:
        scores = []
        for seed in (1, 2):
            folder = out / "runs" / f"{row['method']}-seed{seed}"
            scores.append(json.loads((folder / "metrics.json").read_text())["dev"]["dev"]["score"])
        assert float(row["score_mean"]) == round(sum(scores) / 2, 4)
        assert f"| {float(row['score_mean']):.4f} ± " in printed.getvalue()
    assert all(0 <= s <= 1 for s in _scores_printed((out / "results.md").read_text()))
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    lines = [line for line in said.getvalue().splitlines() if line.startswith("compare: ")]
    assert lines == [
        f"compare: run {k} of 4: {m}, seed {s} (finished already, reused)"
        for k, (m, s) in enumerate(runs, 1)
    ]


def test_benchmark_says_what_it_times(tiny_bert_dir, tmp_path):
    output = tmp_path / "bench.json"
    args = ["benchmark", str(tiny_bert_dir), str(tiny_bert_dir), "--variants", "torch-fp32",
            "--lengths", "8", "16", "--sweep-batch-sizes", "2", "--latency-repeats", "1",
            "--throughput-repeats", "1", "--warmup", "0", "--output", str(output)]  # fmt: skip
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    lines = [line for line in said.getvalue().splitlines() if line.startswith("benchmark: ")]
    timed = f" (torch-fp32 of {tiny_bert_dir.name}, interleaved)"
    assert lines == [
        f"benchmark: model 1 of 2: loading {tiny_bert_dir}",
        f"benchmark: model 2 of 2: loading {tiny_bert_dir}",
        "benchmark: timing 1 of 5: latency, batch 1 x 8 tokens" + timed,
        "benchmark: timing 2 of 5: latency, batch 1 x 16 tokens" + timed,
        "benchmark: timing 3 of 5: throughput, batch 32 x 8 tokens" + timed,
        "benchmark: timing 4 of 5: throughput, batch 32 x 16 tokens" + timed,
        "benchmark: timing 5 of 5: throughput, batch 2 x 16 tokens" + timed,
        f"benchmark: peak memory 1 of 2: {tiny_bert_dir} torch-fp32, in a process of its own",
        f"benchmark: peak memory 2 of 2: {tiny_bert_dir} torch-fp32, in a process of its own",
    ]
    assert len(json.loads(output.read_text())["results"]) == 2


@pytest.fixture
def dynabert_dir(tiny_bert_dir, tmp_path) -> Path:
    """A folder as a DynaBERT run leaves it: the model's config names its widths and
    depths, and metrics.json scores each cell (training is DynaBERT's own tests' work)."""
    folder = tmp_path / "dynabert"
    shutil.copytree(tiny_bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["dynabert"] = {"widths": [1.0, 0.5], "depths": [1.0, 0.5], "dropped_layer": "last"}
    (folder / "config.json").write_text(json.dumps(config))
    cells = {f"dev@w{w:g}-d{d:g}": {"accuracy": 0.5 + w / 10 + d / 100}
             for w in (1.0, 0.5) for d in (1.0, 0.5)}  # fmt: skip
    dev = {key: {**value, "score": value["accuracy"]} for key, value in cells.items()}
    metrics = {"method": "dynabert", "task": "sst2", "dev": {"dev": {"score": 0.6}, **dev}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_extract_writes_a_model_card_whose_snippet_loads_the_compact_model(dynabert_dir, tmp_path):
    small = tmp_path / "runs" / "small"
    args = ["extract", str(dynabert_dir), "--width", "0.5", "--depth", "0.5", "--output"]
    assert main([*args, str(small)]) == 0
    card = (small / "README.md").read_text()
    _, header, body = card.split("---\n", 2)
    header = yaml.safe_load(header)
    assert header["library_name"] == "bert-theseus" and "dynabert" in header["tags"]
    (result,) = header["model-index"][0]["results"]
    assert result["dataset"] == {"name": "sst2", "type": "sst2", "split": "dev"}
    assert result["metrics"] == [{"type": "accuracy", "value": 0.555, "name": "dev accuracy"}]
    info = json.loads((small / "extract.json").read_text())
    assert f"{info['parameters']:,} parameters" in body and "dev score in training: 0.5550" in body
    assert f"width 0.5, depth 0.5 sub-network of the DynaBERT model `{dynabert_dir}`" in body
    assert "theseus extract" in body and info["class"] == "CompactForSequenceClassification"
    answer = _run_snippet(small / "README.md", tmp_path)  # a compact model: registered on import
    assert "'label': 'negative'" in answer or "'label': 'positive'" in answer


def test_method_tables_print_scores_on_the_metrics_json_scale():
    """DynaBERT's grid rows and LadaBERT's per-stage table show the fractions metrics.json
    holds, as the run's own score line does."""
    from bert_theseus.cli import report
    from bert_theseus.methods.ladabert import iterations

    row = {"width": 0.5, "depth": 0.5, "score": 0.4688, "retention_percent": 93.75,
           "parameters": 1e6, "speedup": 2.0}  # fmt: skip
    metrics = {"method": "dynabert", "task": "rte", "dev": {"dev": {"score": 0.46875}},
               "best_step": 4, "steps": 8, "train_seconds": 1.0, "grid": [row]}  # fmt: skip
    text = report("compress", metrics)
    assert "best dev score 0.4688 at step 4" in text
    assert "width 0.5 depth 0.5: 0.4688 (93.75%)" in text and "46.88" not in text
    budget = [{"kept": 0.5, "target_kept": 0.5}]
    stage = {"stage": "prune-1", "dev": {"dev": {"score": 0.46875}}, "summary": {"budget": budget}}
    assert "| prune-1 | 0.4688 | 50.0% (50.0%) |" in iterations([stage])
