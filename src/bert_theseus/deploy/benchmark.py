"""`theseus benchmark`: latency and throughput of models x runtimes, timed side by side.

Every (model, variant) runs on the same random batch in turn within each round, after
warm-up rounds, alternating the order between rounds, so drift in the machine's speed
hits all of them alike. Peak memory is measured apart, one child process per variant,
since a process's peak cannot be attributed to one of several models inside it.
Sentence-transformers folders are timed as sentence embeddings, in sentences per second
(embedding/benchmark.py); a mix of those and classifiers is refused.
"""

from __future__ import annotations

import hashlib
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..embedding import benchmark as embedding
from ..embedding.config import is_sentence_transformers
from ..extra_inputs import ExtraInputs, for_model
from ..models import check_weights, load_model
from ..pooling import say
from ..runs import JsonOutput, input_paths
from ..speed import count_parameters, interleaved, random_batch
from .config import (  # noqa: F401  (the variant lists: imported from here before)
    DEFAULT_VARIANTS,
    VARIANTS,
    BenchmarkConfig,
    ExportConfig,
)
from .entry import Entry, limits
from .export import export_onnx
from .runtime import (
    EXPORT_VARIANTS,
    ONNX_FILE,
    DeployError,
    accepted_inputs,
    is_onnx_folder,
    load_variant,
    torch_logits,
)


def benchmark(
    models: list[str], config: BenchmarkConfig, output: str | None = None, trust: bool = False
) -> dict:
    """Time every model in every variant; speed-ups are relative to the first entry (the
    first model's first variant). Writes JSON to `output` when given.

    >>> benchmark(["runs/teacher", "runs/successor"], BenchmarkConfig(), "bench.json")
    """
    config.validate()
    # Find out now, not after minutes of timing, that it cannot be written; create nothing yet.
    chart = Path(output).with_suffix(".png") if output else None
    saved = JsonOutput(output, input_paths(models), beside=[chart]) if output else None
    # Sentence-transformers folders are timed as sentence embeddings (embedding/benchmark.py).
    embedder = embedding.check(models, config.variants)
    _check_models(models, config)
    threads = config.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="theseus-bench-") as scratch:
        entries = []
        for index, model in enumerate(models):
            say(f"benchmark: model {index + 1} of {len(models)}: loading {model}"
                f"{_exporting(model, config)}")  # fmt: skip
            entries += (
                embedding.entries(model, config.variants, Path(scratch), threads, trust)
                if embedder
                else _prepare(model, config, Path(scratch), threads, trust)
            )
        longest = min(min(e.positions for e in entries), max(config.lengths))
        if max(config.lengths) > longest:
            raise DeployError(
                f"--lengths {max(config.lengths)} is longer than a model accepts ({longest})"
            )
        vocab = min(e.vocab for e in entries)
        step = _steps("timing", 2 * len(config.lengths) + len(config.sweep_batch_sizes),
                      f" ({_timed(entries)}, interleaved)")  # fmt: skip
        timings = {
            "latency": _time(entries, config.latency_batch_size, config, vocab, True, step),
            "throughput": _time(entries, config.throughput_batch_size, config, vocab, False, step),
        }
        longest_length = max(config.lengths)
        sweep = replace(config, lengths=[longest_length])
        timings["sweep"] = {size: _time(entries, size, sweep, vocab, False, step)[longest_length]
                            for size in config.sweep_batch_sizes}  # fmt: skip
        measured = [e.memory and not config.skip_memory for e in entries]
        step = _steps("peak memory", sum(measured))
        memory = [_peak_memory(e, config, threads, step) if m else None
                  for e, m in zip(entries, measured, strict=True)]  # fmt: skip
    rows = _rows(entries, timings, memory, config)
    unit = embedding.UNIT if embedder else "sequences/s"
    settings = {**asdict(config), "threads": threads, "throughput_unit": unit, **_machine()}
    result = {"settings": settings, "results": rows}
    if saved is not None:
        saved.write(result)
        plot(result, chart)
    return result


def _prepare(path: str, config, scratch: Path, threads: int, trust: bool) -> list[Entry]:
    """The entries of one model: PyTorch variants from its weights; ONNX variants from its
    export (made here, verified against PyTorch) or, for an exported folder, its files."""
    entries = []
    wanted = config.variants
    if is_onnx_folder(path):
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(path)
        _check_variants(path, config)
        onnx_folder, parameters, source = Path(path), _onnx_parameters(Path(path)), None
    else:
        source, _ = load_model(path, trust)
        model_config, onnx_folder = source.config, None
        parameters = count_parameters(source)
        for variant in ("torch-fp32", "torch-bf16"):
            if variant in wanted:
                bf16 = variant == "torch-bf16"
                entries.append(
                    Entry(
                        path,
                        variant,
                        lambda batch, m=source, b=bf16: torch_logits(m, batch, b),
                        parameters,
                        _weights_bytes(Path(path)),
                        *limits(model_config),
                        accepted_inputs(source),
                    )
                )
        extra = for_model(source) if "torch-fp32" in wanted else None
        if extra is not None:
            entries += _extra_step_entries(path, source, *extra, parameters, model_config)
        exported = [v for v in wanted if v in EXPORT_VARIANTS]
        if exported:
            onnx_folder = scratch / f"export-{len(list(scratch.iterdir()))}"
            export_config = ExportConfig(
                int8=any(v.endswith("int8") for v in exported),
                fused=any("fused" in v for v in exported),
                backend="openvino" if any("openvino" in v for v in exported) else "onnxruntime",
            )
            export_onnx(path, onnx_folder, export_config, trust_remote_code=trust)
    for variant in (v for v in wanted if v in EXPORT_VARIANTS):
        if onnx_folder is not None:
            runner = load_variant(onnx_folder, variant, threads)
            entries.append(
                Entry(
                    path,
                    variant,
                    lambda batch, r=runner: r.logits(batch),
                    parameters,
                    _variant_bytes(onnx_folder, variant),
                    *limits(model_config),
                    set(runner.input_names),
                    onnx_folder=onnx_folder,
                )
            )
    return entries


def _variant_bytes(folder: Path, variant: str) -> int:
    """The variant's file, with OpenVINO's weights (.bin) beside its graph (.xml)."""
    path = folder / EXPORT_VARIANTS[variant].file
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if weights.is_file() else 0)


def _extra_step_entries(path: str, source, provider: ExtraInputs, step, parameters: int,
                        model_config) -> list[Entry]:  # fmt: skip
    """The step that computes a model's extra inputs (a retrieval, say), timed alone, and
    the model given them (computed once per batch, in the warm-up), beside the "torch-fp32"
    row that does both."""
    computed = {}

    def given(batch):
        key = hashlib.blake2b(batch["input_ids"].numpy().tobytes()).hexdigest()
        if key not in computed:
            computed[key] = step(batch)
        return torch_logits(source, {**batch, **computed[key]})

    common = (parameters, _weights_bytes(Path(path)), *limits(model_config))
    inputs = accepted_inputs(source)
    return [
        Entry(path, provider.step, step, *common, inputs, memory=False),
        Entry(path, f"torch-fp32, {provider.given}", given, *common, inputs, memory=False),
    ]


def _check_models(models: list[str], config: BenchmarkConfig) -> None:
    """Refuse before loading anything what would otherwise fail after minutes of loading and
    exporting: a local model folder with broken weights, or lengths beyond its positions.
    (A Hub id is checked as it loads.)"""
    from transformers import AutoConfig

    for model in models:
        folder = Path(model)
        if not (folder / "config.json").is_file():
            continue
        if is_onnx_folder(model):
            _check_variants(model, config)
        check_weights(folder)
        try:
            positions = limits(AutoConfig.from_pretrained(folder))[0]
        except Exception:  # custom code or a broken config: load_model says which, below
            continue
        if max(config.lengths) > positions:
            raise DeployError(
                f"--lengths {max(config.lengths)} is longer than {model} accepts ({positions})"
            )


def _check_variants(path: str, config: BenchmarkConfig) -> None:
    """An ONNX export has no PyTorch model to time."""
    torch_only = [v for v in config.variants if v.startswith("torch")]
    if torch_only and len(torch_only) == len(config.variants):
        raise DeployError(f"{path} is an ONNX export: time it with --variants onnx-fp32")


def _steps(what: str, total: int, suffix: str = "") -> Callable[[str], None]:
    """A progress line per step, "benchmark: timing 3 of 7: ..." (the timing takes minutes)."""
    done = 0

    def step(text: str) -> None:
        nonlocal done
        done += 1
        say(f"benchmark: {what} {done} of {total}: {text}{suffix}")

    return step


def _exporting(model: str, config: BenchmarkConfig) -> str:
    exported = [v for v in config.variants if v in EXPORT_VARIANTS]
    if is_sentence_transformers(model):
        exported = embedding.missing(model, exported)
    if not exported or is_onnx_folder(model):
        return ""
    return f" and exporting it ({', '.join(exported)}, checked against PyTorch)"


def _timed(entries: list[Entry]) -> str:
    """What each timing step runs: "torch-fp32, onnx-int8 of teacher, successor"."""
    variants = dict.fromkeys(e.variant for e in entries)
    models = dict.fromkeys(Path(e.model).name or e.model for e in entries)
    return f"{', '.join(variants)} of {', '.join(models)}"


def _time(entries, batch_size: int, config, vocab: int, latency: bool, step=None) -> dict:
    """Seconds per call of each entry, per length; rounds interleave the entries. `step`
    is told each setting as it starts."""
    repeats = config.latency_repeats if latency else config.throughput_repeats
    result = {}
    for length in config.lengths:
        if step is not None:
            step(f"{'latency' if latency else 'throughput'}, batch {batch_size} x {length} tokens")
        batch = random_batch(batch_size, length, vocab, token_types=True)
        calls = [partial(e.run, {k: v for k, v in batch.items() if k in e.inputs})
                 for e in entries]  # fmt: skip
        result[length] = interleaved(calls, config.warmup, repeats)
    return result


def _rows(entries, timings, memory, config) -> list[dict]:
    rows = []
    base = {
        length: statistics.median(timings["throughput"][length][0]) for length in config.lengths
    }
    base_latency = {
        length: statistics.median(timings["latency"][length][0]) for length in config.lengths
    }
    for index, entry in enumerate(entries):
        row = {
            "model": entry.model,
            "variant": entry.variant,
            "parameters": entry.parameters,
            "disk_mb": round(entry.disk_bytes / 2**20, 1),
        }
        if memory[index] is not None:
            row.update(memory[index])
        for length in config.lengths:
            latency = timings["latency"][length][index]
            throughput = statistics.median(timings["throughput"][length][index])
            row[f"latency_p50_ms@{length}"] = round(1000 * statistics.median(latency), 2)
            row[f"latency_p95_ms@{length}"] = round(1000 * float(np.percentile(latency, 95)), 2)
            row[f"throughput_per_s@{length}"] = round(config.throughput_batch_size / throughput, 1)
            row[f"speedup@{length}"] = round(base[length] / throughput, 2)
            row[f"latency_speedup@{length}"] = round(
                base_latency[length] / statistics.median(latency), 2
            )
        longest = max(config.lengths)
        for size, times in timings["sweep"].items():
            row[f"throughput_per_s@{longest}_b{size}"] = round(
                size / statistics.median(times[index]), 1
            )
        rows.append(row)
    return rows


def format_table(result: dict) -> str:
    """The rows as a Markdown table (the JSON has every number)."""
    settings = result["settings"]
    lengths = settings["lengths"]
    unit = settings.get("throughput_unit", "sequences/s").replace("sequences", "seq")
    head = ["model", "variant", "params", "disk MB", "peak MB"]
    for length in lengths:
        head += [f"p50/p95 ms @{length} (b{settings['latency_batch_size']})"]
        head += [f"{unit} @{length} (b{settings['throughput_batch_size']})", f"speed-up @{length}"]
    sizes, longest = settings.get("sweep_batch_sizes") or [], max(lengths)
    if sizes:
        head += [f"{unit} @{longest}, b{' / b'.join(str(size) for size in sizes)}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["results"]:
        peak = row.get("peak_mb")
        cells = [
            Path(row["model"]).name or row["model"],
            row["variant"],
            _millions(row["parameters"]),
            f"{row['disk_mb']:.1f}",
            f"{peak:.0f}" if peak is not None else "–",
        ]
        for length in lengths:
            cells += [
                f"{row[f'latency_p50_ms@{length}']:.1f} / {row[f'latency_p95_ms@{length}']:.1f}",
                f"{row[f'throughput_per_s@{length}']:.1f}",
                f"{row[f'speedup@{length}']:.2f}x",
            ]
        if sizes:
            cells.append(" / ".join(f"{row[f'throughput_per_s@{longest}_b{size}']:.1f}"
                                    for size in sizes))  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"speed-up: throughput over the first row's at the same length; {settings['threads']} "
        f"threads; {settings['throughput_repeats']} throughput and {settings['latency_repeats']}"
        " latency rounds, interleaved; peak MB: resident memory of a process running one "
        "batch of throughput at the longest length"
    )
    if unit == embedding.UNIT:
        note += f"; {embedding.TIMED}"
    return "\n".join(lines) + "\n" + note


def plot(result: dict, path: Path) -> None:
    """Bars of throughput (batch `throughput_batch_size`) and of batch-1 p50 latency, at the
    longest length, one bar per model and variant: the table for people who look."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..runs import save_figure

    settings, rows = result["settings"], result["results"]
    length, unit = max(settings["lengths"]), settings.get("throughput_unit", "sequences/s")
    labels = [f"{Path(r['model']).name or r['model']} · {r['variant']}" for r in rows]
    panels = [
        (f"throughput@{length}", f"{unit}, batch {settings['throughput_batch_size']} x "
         f"{length} (higher is better)"),
        (f"latency_p50_ms@{length}", f"p50 ms, batch {settings['latency_batch_size']} x "
         f"{length} (lower is better)"),
    ]  # fmt: skip
    height = 1.2 + 0.32 * len(rows)
    figure, axes = plt.subplots(1, 2, figsize=(12, height), sharey=True)
    for axis, (key, title) in zip(axes, panels, strict=True):
        column = key.replace("throughput@", "throughput_per_s@")
        values = [row[column] for row in rows]
        bars = axis.barh(range(len(rows)), values, color="tab:blue")
        axis.bar_label(bars, fmt="%.3g", padding=2, fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.margins(x=0.15)
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    axes[0].invert_yaxis()  # the first row (the speed-up's base) on top
    save_figure(figure, path)


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count / 1e3:.1f}K"


def _peak_memory(entry: Entry, config: BenchmarkConfig, threads: int, step=None) -> dict:
    """Peak resident memory of a fresh process that loads only this entry and runs one
    throughput batch at the longest length."""
    if step is not None:
        step(f"{entry.model} {entry.variant}, in a process of its own")
    source = str(entry.onnx_folder) if entry.onnx_folder else entry.model
    command = [sys.executable, "-m", "bert_theseus.deploy.memory", source, entry.variant]
    command += [str(config.throughput_batch_size), str(max(config.lengths)), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DeployError(f"memory probe of {entry.model} {entry.variant} failed: {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _weights_bytes(folder: Path) -> int:
    files = list(folder.glob("*.safetensors")) + list(folder.glob("pytorch_model*.bin"))
    return sum(f.stat().st_size for f in files)


def _onnx_parameters(folder: Path) -> int:
    import onnx

    graph = onnx.load(str(folder / ONNX_FILE), load_external_data=False).graph
    return sum(int(np.prod(t.dims)) for t in graph.initializer)


def _machine() -> dict:
    import onnxruntime

    return {
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
