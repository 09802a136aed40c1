"""`theseus compare`: several methods x seeds on one predecessor and task, judged alike.

Every run trains through the same loop and picks its checkpoint on dev. Scores are
reported on --test-file when one is given, otherwise on dev, and the table says which.
Speed is timed once at the end, for the predecessor and every run's saved model,
interleaved in one process on the same batch.

>>> compare("runs/teacher", DataConfig(task="rte", data_dir="glue/RTE"), TrainingConfig(),
...         {"theseus": TheseusConfig(successor_layers=3), "kd": KDConfig(successor_layers=3)},
...         CompareConfig(seeds=[1, 2]), output="runs/compare-rte")
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from transformers import AutoModelForSequenceClassification

from .commands import (
    DataConfig,
    ModelError,
    embedding_setting,
    load_saved,
    method_for,
    prepare_run,
    run_report,
    run_settings,
    say_what_they_train,
    unlabelled_inputs,
    unlabelled_setting,
)
from .compare_config import CompareConfig
from .data.unlabelled import UnlabelledConfig
from .embedding.config import EmbeddingConfig
from .methods import get_method, methods
from .methods.registry import identity
from .metrics import constant_score
from .paired import paired_differences
from .pooling import say
from .run_folder import RunPlan, execute
from .run_setup import score, speed_length
from .runs import (
    OutputDir,
    OutputLock,
    RunError,
    check_not_inputs,
    input_paths,
    main_process,
    save_figure,
    write_atomic,
    write_json,
)
from .speed import count_nonzero, count_parameters, is_pruned, measure_latency
from .training import TrainingConfig
from .training.stages import saved_progress


def compare(
    model: str,
    data: DataConfig,
    training: TrainingConfig,
    methods: dict,
    config: CompareConfig,
    output: str,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    embedding: EmbeddingConfig | None = None,
    unlabelled: UnlabelledConfig | None = None,
) -> dict:
    """Run every method x seed, then write results.md, results.csv, runs.csv, pareto.png.

    `methods` maps each method's name to its config, in the order of the tables.
    `embedding` (`EmbeddingConfig(embedding=True)`) compares sentence-embedding students;
    `unlabelled` adds texts without labels to every run's teacher term.

    Finished runs already under `output/runs/` with the same settings are reused, and
    interrupted ones resume from their checkpoints, so an interrupted comparison goes on
    where it stopped when the same command is run again.
    """
    config.validate()
    training.validate()
    if not methods:
        raise ModelError("no method to compare: pass --methods, e.g. --methods theseus kd")
    specs = {name: method_for(method_config, name) for name, method_config in methods.items()}
    embedding = embedding_setting(embedding, list(specs.values()))
    unlabelled = unlabelled_setting(unlabelled, list(specs.values()), embedding)
    methods, specs = _runs_of(methods, specs)
    output = Path(output)
    lock = OutputLock(output)
    _check_output(output, input_paths(model, data, **unlabelled_inputs(unlabelled)), lock)

    def check(context) -> None:  # every method fails now, not after the first have trained
        for name, spec in specs.items():
            spec.check(methods[name], context)

    ready = prepare_run(model, data, training, trust_remote_code, check, embedding, unlabelled)
    say_what_they_train(list(dict.fromkeys(specs.values())), unlabelled)
    with lock.held(main_process()):  # one comparison writes the folder at a time
        return _compare(model, data, methods, specs, config, output, overwrite, ready)


def _runs_of(methods: dict, specs: dict) -> tuple[dict, dict]:
    """The configs and specs by run label: a method may make several runs of one config
    (`MethodSpec.compare_runs`: one per route of a method that has several)."""
    configs, labelled = {}, {}
    for name, spec in specs.items():
        runs = spec.compare_runs(methods[name]) if spec.compare_runs else {name: methods[name]}
        for label, run_config in runs.items():
            configs[label], labelled[label] = run_config, spec
    return configs, labelled


def _compare(model, data, methods, specs, config, output, overwrite, ready) -> dict:
    """`compare`'s runs and tables, once the predecessor and data are ready."""
    training, predecessor, tokenizer = ready.training, ready.predecessor, ready.tokenizer
    task_data, accelerator, features = ready.task_data, ready.accelerator, ready.features
    before = ready.before
    runs = _train_runs(model, data, methods, specs, config, output, overwrite, ready)

    reported = "test" if "test" in features else next(iter(before))

    def test_score(variant):
        return score(variant.to(accelerator.device), {"test": features["test"]}, tokenizer,
                      training, task_data, accelerator)["test"]  # fmt: skip

    runs = _expand_variants(runs, specs, reported, test_score)  # scores need every process
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        # Under several processes the main one times the models alone (timings taken while
        # the others run would measure the contention) and writes the tables.
        return {"runs": runs, "output": str(output)}
    timings = _time_runs(predecessor, runs, config, accelerator.device, ready.embedding)
    summary = _summarise(runs, before, reported, timings, predecessor)
    task = task_data.task
    labels = _labels(features[reported])
    constant = constant_score(task.metric, labels, None if task.is_regression else task.num_labels)
    setting = (
        f"batch {config.speed_batch_size} x {timings['length']} tokens, fp32, "
        f"{accelerator.device.type}, median of {config.speed_repeats} interleaved rounds "
        "in one process"
    )
    evaluation = (
        f"selected on dev, reported on the test file {data.test_file}"
        if reported == "test"
        else f"selected and reported on {reported}"
    )
    header = {
        "task": task_data.task.name,
        "metric": task_data.task.metric,
        "predecessor": model,
        "evaluation": evaluation,
        "speed": setting,
        "seeds": config.seeds,
        "constant_score": round(constant, 4),
    }
    if ready.embedding is None:  # every run trained on the same examples
        header["training_examples"] = task_data.example_counts()
    output.mkdir(parents=True, exist_ok=True)
    write_atomic(output / "results.csv", _csv(summary["methods"]))
    write_atomic(output / "runs.csv", _csv(summary["runs"]))
    write_atomic(output / "results.md", results_markdown(header, summary))
    _plot_pareto(summary, header, output / "pareto.png", _trained_by(runs))
    write_json(output / "results.json", {**header, **summary})
    return {**header, **summary, "output": str(output)}


def _train_runs(model, data, methods, specs, config, output, overwrite, ready) -> list[dict]:
    """Every method x seed trained in its folder under `output/runs/` (a finished one with
    the same settings reused); their metrics, in table order."""
    training, predecessor, tokenizer = ready.training, ready.predecessor, ready.tokenizer
    task_data, accelerator, features = ready.task_data, ready.accelerator, ready.features
    before = ready.before
    runs = []
    count = len(specs) * len(config.seeds)
    for name, spec in specs.items():
        for seed in config.seeds:
            run_training = replace(training, seed=seed, resume=None)
            folder = output / "runs" / f"{name}-seed{seed}"
            settings = run_settings(model, data, spec, methods[name], ready.embedding,
                                    ready.unlabelled)  # fmt: skip
            metrics = _finished(folder, settings, run_training, overwrite)
            if accelerator.is_main_process:
                say(_starting(len(runs) + 1, count, name, seed, folder, metrics is not None))
            if metrics is None:
                out = _output_dir(folder, overwrite)
                # The stages copy what they train; the predecessor only serves as teacher.
                run_context = ready.context(run_training)
                plan = RunPlan(
                    spec.stages(methods[name], run_context),
                    predecessor,
                    tokenizer,
                    task_data,
                    replace(run_training, resume=out.resume),
                    out,
                    settings,
                    predecessor=(predecessor, before),
                    accelerator=accelerator,
                    features=features,
                    train_features=ready.train_features,
                    measure_speed=False,
                    report=run_report(spec, methods[name], data, ready.embedding),
                )
                metrics = execute(plan)
            runs.append({"folder": folder, "seed": seed, **metrics, "method": name})
    return runs


# What a comparison writes in its folder, besides runs/ (a run folder per method and seed).
COMPARE_FILES = {"results.csv", "runs.csv", "results.md", "results.json", "pareto.png"}


def _check_output(output: Path, inputs: list[tuple[str, str]], lock: OutputLock) -> None:
    """Refuse, before any work, an output that is an input, is being written by another
    comparison, or holds anything a comparison did not write: going on in the folder of an
    earlier comparison is allowed (its finished runs are reused), with --overwrite too."""
    check_not_inputs(output, inputs)
    if main_process():
        lock.check()
    if output.exists() and not output.is_dir():
        raise RunError(f"--output {output} is a file: choose a folder path")
    if output.is_dir() and any(output.iterdir()) and not _compare_folder(output):
        raise RunError(
            f"--output {output} holds files a comparison did not write (it holds only "
            f"runs/ and {', '.join(sorted(COMPARE_FILES))}): choose a new --output"
        )


def _compare_folder(folder: Path) -> bool:
    """Whether `folder` holds only what a comparison writes: the tables, and under runs/
    finished runs (run_config.json) and the partial folders and locks of unfinished ones."""

    def own(entry: Path) -> bool:  # a partial file or folder, a lock, a run being replaced
        return entry.name.startswith(".") and entry.name.endswith((".partial", ".lock", ".old"))

    for entry in folder.iterdir():
        if entry.name == "runs" and entry.is_dir():
            if not all(own(run) or (run / "run_config.json").is_file() for run in entry.iterdir()):
                return False
        elif not (entry.name in COMPARE_FILES or own(entry)):
            return False
    return True


def _starting(index: int, count: int, method: str, seed: int, folder: Path, done: bool) -> str:
    """The line that says which run of the comparison comes next."""
    what = "finished already, reused" if done else f"training into {folder}"
    return f"compare: run {index} of {count}: {method}, seed {seed} ({what})"


def _finished(folder: Path, settings: dict, training: TrainingConfig, overwrite: bool):
    """The metrics of a finished run made with these settings; None if it must be run."""
    if overwrite or not (folder / "metrics.json").is_file():
        return None
    saved = _with_defaults(json.loads((folder / "run_config.json").read_text()))
    wanted = json.loads(json.dumps({**settings, "training": asdict(training)}, default=str))
    saved.get("training", {}).pop("resume", None)
    wanted["training"].pop("resume", None)
    saved, wanted = _resolve_paths(saved), _resolve_paths(wanted)
    if saved != wanted:
        changed = _changed(saved, wanted)
        raise RunError(
            f"{folder} was made with other settings ({', '.join(changed)} differ): pass "
            "--overwrite to redo it, or choose another --output"
        )
    return json.loads((folder / "metrics.json").read_text())


def _with_defaults(saved: dict) -> dict:
    """A run record with the defaults of settings added since it was written, so a run
    finished by an older version is reused when nothing it was made with has changed."""
    defaults = {"data": DataConfig(), "training": TrainingConfig()}
    if saved.get("method") in methods():
        defaults["config"] = get_method(saved["method"]).config()
        if isinstance(saved.get("config"), dict):  # speed-only fields are no part of a run
            saved["config"] = {k: v for k, v in saved["config"].items()
                               if k in identity(defaults["config"])}  # fmt: skip
    for section, default in defaults.items():
        if isinstance(saved.get(section), dict):
            values = identity(default) if section == "config" else asdict(default)
            values = json.loads(json.dumps(values, default=str))
            saved[section] = {**values, **saved[section]}
    return saved


def _changed(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """The settings that differ, named down to the field (config.alpha, training.seed)."""
    names = []
    for key in sorted(set(saved) | set(wanted)):
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            names += _changed(old, new, f"{prefix}{key}.")
        elif old != new:
            names.append(prefix + key)
    return names


def _resolve_paths(value):
    """Settings with local paths resolved, so a symlink or another spelling of the same
    model or data folder is not taken for other settings; hub ids stay as they are."""
    if isinstance(value, dict):
        return {key: _resolve_paths(item) for key, item in value.items()}
    if isinstance(value, str) and value:
        try:  # a setting that is not a path may still be too long or odd for the OS
            return str(Path(value).resolve()) if Path(value).exists() else value
        except (OSError, ValueError):
            return value
    return value


def _output_dir(folder: Path, overwrite: bool) -> OutputDir:
    """The run's output; an interrupted run (checkpoints in its partial folder) resumes."""
    saved = saved_progress(OutputDir.partial_path(folder))
    return OutputDir(folder, overwrite, "auto" if saved and not overwrite else None)


def _expand_variants(runs: list[dict], specs: dict, reported: str, test_score) -> list[dict]:
    """Each run of a method with variants (models inside its saved run) becomes one run per
    variant, named "METHOD VIEW" (and `trained_by` METHOD), scored on its own "split@VIEW"
    entry (or on the test file) and timed as its own standalone model."""
    expanded = []
    for run in runs:
        spec = specs[run["method"]]
        if spec.variants is None:
            expanded.append(run)
            continue
        saved = AutoModelForSequenceClassification.from_pretrained(run["folder"])
        for view, model in spec.variants(saved).items():
            row = {**run, "method": f"{run['method']} {view}", "folder": f"{run['folder']}@{view}"}
            row["trained_by"] = run["method"]
            row.update(variant=model, layers=model.config.num_hidden_layers)
            row.update(parameters=count_parameters(model), nonzero_parameters=count_nonzero(model))
            constant = run.get("constant_views_at_best", [])
            row["constant_at_best"] = any(key.endswith(f"@{view}") for key in constant)
            if reported == "test":
                row["test"] = test_score(model)
            else:
                row["dev"] = {reported: run["dev"][f"{reported}@{view}"]}
            expanded.append(row)
    return expanded


def _labels(features: list[dict]):
    """The reported split's labels: numbers, or the teacher's embeddings stacked."""
    labels = [example["labels"] for example in features]
    if np.ndim(labels[0]) == 0:
        return labels
    return np.stack([np.asarray(v, dtype=np.float32) for v in labels])


def _time_runs(predecessor, runs: list[dict], config: CompareConfig, device, embedding) -> dict:
    """Latency of the predecessor and of every saved run, interleaved on one batch."""
    models = {"predecessor": predecessor.to(device)}
    for run in runs:
        saved = run.get("variant")
        if saved is None:
            saved = load_saved(run["folder"], embedding)
        models[str(run["folder"])] = saved.to(device)
    length = min(speed_length(m, config.speed_length) for m in models.values())
    times = measure_latency(
        models,
        batch_size=config.speed_batch_size,
        seq_length=length,
        repeats=config.speed_repeats,
    )
    return {"length": length, "seconds": times}


def _summarise(runs, before, reported, timings, predecessor) -> dict:
    """Per-run and per-method rows; scores are fractions, as in each run's metrics.json,
    rounded to 4 decimals."""
    seconds = timings["seconds"]
    base = seconds["predecessor"]
    reference = (before.get(reported) or next(iter(before.values())))["score"]
    run_rows, exact = [], {}
    for run in runs:
        score = (run["test"] if reported == "test" else run["dev"][reported])["score"]
        exact[str(run["folder"])] = score
        latency = seconds[str(run["folder"])]
        run_rows.append(
            {
                "method": run["method"],
                "seed": run["seed"],
                "layers": run["layers"],
                "score": round(score, 4),
                "best_step": run["best_step"],
                "parameters": run["parameters"],
                # Runs recorded before the count existed had no pruned weights.
                "nonzero_parameters": run.get("nonzero_parameters", run["parameters"]),
                "latency_ms": round(1000 * latency, 2),
                "speedup": round(base / latency, 3),
                "train_seconds": run["train_seconds"],
                # The saved model answers one class (or value) for all of dev.
                "constant": bool(run.get("constant_at_best")),
                "folder": str(run["folder"]),
            }
        )
    method_rows = [
        {
            "method": "predecessor",
            "layers": predecessor.config.num_hidden_layers,
            "runs": 1,
            "score_mean": round(reference, 4),
            "score_std": "",
            "retention_percent": 100.0,
            "parameters": count_parameters(predecessor),
            "nonzero_parameters": count_nonzero(predecessor),
            "latency_ms": round(1000 * base, 2),
            "speedup": 1.0,
            "train_seconds_mean": "",
            "constant_runs": "",
        }
    ]
    for method in dict.fromkeys(row["method"] for row in run_rows):
        rows = [row for row in run_rows if row["method"] == method]
        # Aggregate the unrounded scores, so retention agrees with each run's metrics.json.
        scores = [exact[row["folder"]] for row in rows]
        mean = statistics.mean(scores)
        method_rows.append(
            {
                "method": method,
                "layers": rows[0]["layers"],
                "runs": len(rows),
                "score_mean": round(mean, 4),
                "score_std": round(statistics.stdev(scores), 4) if len(scores) > 1 else "",
                "retention_percent": round(100 * mean / reference, 2) if reference else "",
                "parameters": rows[0]["parameters"],
                "nonzero_parameters": rows[0]["nonzero_parameters"],
                "latency_ms": round(statistics.mean(r["latency_ms"] for r in rows), 2),
                "speedup": round(statistics.mean(r["speedup"] for r in rows), 3),
                "train_seconds_mean": round(statistics.mean(r["train_seconds"] for r in rows)),
                "constant_runs": sum(r["constant"] for r in rows),
            }
        )
    # Variants of one method share their training run, not only its seed: no pair of them.
    by_method: dict[str, dict[int, float]] = {}
    for row in run_rows:
        by_method.setdefault(row["method"], {})[row["seed"]] = exact[row["folder"]]
    trained_by = _trained_by(runs)
    paired = [
        row
        for row in paired_differences(by_method, decimals=4)
        if trained_by[row["first"]] != trained_by[row["second"]]
    ]
    return {"methods": method_rows, "runs": run_rows, "paired": paired}


def _trained_by(runs: list[dict]) -> dict[str, str]:
    """The method whose run each row's model comes from (a variant's is its run's method)."""
    return {run["method"]: run.get("trained_by", run["method"]) for run in runs}


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def results_markdown(header: dict, summary: dict) -> str:
    lines = [
        f"# {header['task']}: methods compared on {header['predecessor']}",
        "",
        f"- Scores: {header['metric']} (a fraction, as in metrics.json), "
        f"{header['evaluation']}; mean ± sample std "
        f"over seeds {', '.join(map(str, header['seeds']))}.",
        f"- Speed: {header['speed']}; speed-up = predecessor latency / latency.",
        "- Per-run numbers: runs.csv; score against speed-up: pareto.png.",
        "- constant: runs whose saved model gives one answer (one class, or one value) for "
        "every dev example; such a score is that of a constant, not of a classifier. "
        f"A constant scores at most {header['constant_score']:.4f} here.",
        *_examples_line(header),
        "",
        "| method | layers | runs | score | retention | parameters | latency (ms) | speed-up "
        "| train time | constant |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["methods"]:
        std = f" ± {row['score_std']:.4f}" if row["score_std"] != "" else ""
        train = f"{row['train_seconds_mean']} s" if row["train_seconds_mean"] != "" else "–"
        lines.append(
            f"| {row['method']} | {row['layers']} | {row['runs']} | {row['score_mean']:.4f}{std} "
            f"| {row['retention_percent']:.2f}% | {_parameters(row)} "
            f"| {row['latency_ms']:.1f} | {row['speedup']:.2f}x | {train} "
            f"| {_constant(row)} |"
        )
    return "\n".join(lines + _paired_markdown(summary["paired"])) + "\n"


def _examples_line(header: dict) -> list[str]:
    """What every run trained on: labelled examples, and rows for the teacher term alone."""
    counts = header.get("training_examples")
    if counts is None:
        return []
    labelled = f"- Trained on: {counts['labelled']:,} labelled examples"
    if not counts["unlabelled"] and not counts["augmented"]:
        return [labelled + "."]
    return [
        f"{labelled}, {counts['unlabelled']:,} unlabelled and {counts['augmented']:,} augmented "
        "(those two teach through the teacher's outputs alone)."
    ]


def _paired_markdown(paired: list[dict]) -> list[str]:
    if not paired:
        return []
    lines = [
        "",
        "## Paired over seeds",
        "",
        "Score of the first method minus the second's at each seed both ran: mean ± sample "
        "std, a 95% interval of the mean (Student's t), and at how many seeds the first is "
        "higher / level / lower. An interval that contains 0 does not tell the two apart.",
        "",
        "| first − second | seeds | difference | 95% interval | higher / level / lower |",
        "|---|---|---|---|---|",
    ]
    for row in paired:
        low, high = row["interval"]
        lines.append(
            f"| {row['first']} − {row['second']} | {len(row['seeds'])} "
            f"| {row['mean']:+.4f} ± {row['std']:.4f} | [{low:+.4f}, {high:+.4f}] "
            f"| {row['higher']} / {row['level']} / {row['lower']} |"
        )
    return lines


def _parameters(row: dict) -> str:
    """Stored parameters, and the non-zero ones where pruning left zeros among them."""
    stored, nonzero = row["parameters"], row["nonzero_parameters"]
    pruned = f" ({nonzero / 1e6:.2f}M non-zero)" if is_pruned(stored, nonzero) else ""
    return f"{stored / 1e6:.2f}M{pruned}"


def _constant(row: dict) -> str:
    if row["constant_runs"] == "":
        return "–"
    return f"**{row['constant_runs']} of {row['runs']}**" if row["constant_runs"] else "0"


def _plot_pareto(summary: dict, header: dict, path: Path, trained_by: dict[str, str]) -> None:
    """Score against speed-up: one point per run, the predecessor at 1x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.2))
    reference = summary["methods"][0]
    axis.scatter([1.0], [reference["score_mean"]], marker="*", s=160, c="k", label="predecessor")
    # A method's variants are one series, that of the method that trained them.
    for method in dict.fromkeys(trained_by.values()):
        rows = [r for r in summary["runs"] if trained_by[r["method"]] == method]
        axis.scatter([r["speedup"] for r in rows], [r["score"] for r in rows], label=method)
    axis.set_xlabel("speed-up over the predecessor")
    split = "test" if "test file" in header["evaluation"] else "dev"
    axis.set_ylabel(f"{header['metric']} ({split})")
    axis.set_title(header["task"])
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    save_figure(figure, path)
