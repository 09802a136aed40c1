"""`theseus export`: ONNX with dynamic batch and sequence axes, checked against PyTorch.

The legacy TorchScript exporter is used (`dynamo=False`): the dynamo exporter needs
`onnxscript`, and ONNX Runtime's dynamic quantisation failed shape inference on its
output (probed with torch 2.13).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..arch import model_type_of
from ..data.config import DataConfig
from ..data.loading import encode, make_loader
from ..metrics import compute_metrics
from ..models import ModelError, first_line, load_model, token_positions
from ..pooling import say
from ..run_setup import check_labels, model_labels, read_data
from ..runs import OutputDir, input_paths, write_json
from ..speed import random_batch
from ..training import TrainingConfig
from .config import ExportConfig
from .runtime import (
    EXPORT_VARIANTS,
    INT8_FILE,
    ONNX_FILE,
    DeployError,
    OnnxClassifier,
    load_variant,
    model_inputs,
    require_openvino,
    torch_logits,
)
from .trace import trace as _trace
from .trace import trace_onnx  # noqa: F401  (imported from here before)
from .variants import (
    BACKENDS,  # noqa: F401  (imported from here before the settings moved to config.py)
    attention_fused,
    fuse,
    openvino_fp32,
    openvino_int8,
    quantize_dynamic_int8,
)

# Checked when no dev data is given: lengths differ, so padding is exercised.
SAMPLE_TEXTS = [
    "A gripping, beautifully acted film.",
    "Dull.",
    "The plot wanders for an hour before anything happens, and then it ends abruptly.",
    "Shares rose sharply after the company reported record quarterly profits.",
]


def export_onnx(
    model: str,
    output: str,
    config: ExportConfig,
    data: DataConfig | None = None,
    max_length: int = 128,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> dict:
    """Export `model` to `output/model.onnx` (and `model.int8.onnx`) with its tokenizer and
    config, verify it against PyTorch, and score every variant on dev when data is given.

    >>> export_onnx("runs/successor", "exports/successor", ExportConfig(int8=True),
    ...             DataConfig(task="sst2", data_dir="glue/SST-2"))
    """
    config.validate()
    if config.backend == "openvino":
        require_openvino()  # before any work
    out = OutputDir(output, overwrite, inputs=input_paths(model, data))
    classifier, tokenizer = load_model(model, trust_remote_code)
    classifier.eval()
    names = model_inputs(classifier, tokenizer)
    batches, task = _verification_batches(classifier, tokenizer, data, max_length, config)
    # Inputs a model takes besides the tokens (a model declares them with `export_inputs`:
    # what the graph takes as inputs and computes outside it), added to every batch.
    extra = getattr(classifier, "export_inputs", None)
    extra_names = []
    if extra is not None:
        for batch in batches:
            batch.update(extra(batch))
        extra_names = [name for name in extra(batches[0]) if name not in names]
        names = names + extra_names
    folder = out.open()
    try:
        _trace(classifier, names, batches[0], folder / ONNX_FILE, config.opset, extra_names)
        classifier.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        if hasattr(classifier, "export_files"):  # what the graph's extra inputs come from
            classifier.export_files(folder)
        report = {"model": model, "inputs": names, **asdict(config), "notices": []}
        built = _build(config, model, trust_remote_code, classifier, names, batches, folder,
                       extra_names, report)  # fmt: skip
        # PyTorch runs once; every variant and the PyTorch dev score compare against it.
        reference = [torch_logits(classifier, b) for b in batches]
        report["variants"] = {}
        for name in list(built):

            def check(name=name):
                return _check(load_variant(folder, name), reference, batches, config, task,
                              EXPORT_VARIANTS[name].exact, name)  # fmt: skip

            optional = config.backend == "auto" and name != "onnx-fp32"
            result = _optional(report, name, check) if optional else check()
            if result is None:  # under auto: a variant that fails its check is left out
                built.remove(name)
                _remove_unused(folder, name, built)
            else:
                report["variants"][name] = result
        report["fp32"] = report["variants"]["onnx-fp32"]
        if "onnx-int8" in built:
            report["int8"] = report["variants"]["onnx-int8"]
        if task is not None:
            report["pytorch_fp32"] = _metrics(task, reference, batches)
        if config.backend == "auto":
            report["chosen"] = choose(folder, built, report, config, classifier)
        report["files"] = {str(p.relative_to(folder)): p.stat().st_size
                           for p in sorted(folder.rglob("model*.*"))}  # fmt: skip
        write_json(folder / "export.json", report)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return report


def _build(config, model, trust, classifier, names, batches, folder, extra, report) -> list[str]:
    """Write every variant the settings ask for beside model.onnx; their names, in the
    table's order."""
    auto = config.backend == "auto"
    int8 = config.int8 or auto
    built = ["onnx-fp32"]

    def build(name, make) -> bool:  # under auto a variant that fails is left out, with a notice
        done = _optional(report, name, make) if auto else (make() or True)
        if done is not None:
            built.append(name)
        return done is not None

    if int8:
        build("onnx-int8", lambda: quantize_dynamic_int8(folder / ONNX_FILE, folder / INT8_FILE))
    if config.fused or auto:
        fused = folder / EXPORT_VARIANTS["onnx-fused"].file
        made = build("onnx-fused", lambda: _fused(model, trust, classifier, names, batches,
                                                  folder, config, extra, report))  # fmt: skip
        if int8 and made:
            target = folder / EXPORT_VARIANTS["onnx-fused-int8"].file
            build("onnx-fused-int8", lambda: quantize_dynamic_int8(fused, target, True))
    openvino = config.backend == "openvino" or (auto and _has_openvino(report))
    if openvino and build("openvino-fp32", lambda: openvino_fp32(folder / ONNX_FILE, folder)):
        built.append("openvino-bf16")  # the same file, run at OpenVINO's bf16 hint
        if int8:
            plain = OnnxClassifier(folder)  # its feeds: the graph's inputs, typed
            calibration = _calibration([plain.feeds(batch) for batch in batches])
            build("openvino-int8", lambda: openvino_int8(folder, calibration))
    return built


def _optional(report: dict, name: str, make):
    """`make()`'s result (True where it returns None), or None with a notice when it fails:
    `--backend auto` leaves such a variant out rather than failing the export."""
    try:
        result = make()
    except Exception as error:  # noqa: BLE001  (any runtime's failure: leave it out)
        note = f"notice: {name} failed ({type(error).__name__}: {first_line(error)}); left out"
        report["notices"].append(note)
        say(note)
        return None
    return True if result is None else result


def _calibration(batches: list[dict], examples: int = 300) -> list[dict]:
    """The first batches, up to about `examples` examples: enough for NNCF's statistics."""
    chosen, count = [], 0
    for batch in batches:
        if count >= examples:
            break
        chosen.append(batch)
        count += len(next(iter(batch.values())))
    return chosen


def _fused(model, trust, classifier, names, batches, folder, config, extra, report) -> None:
    """model.fused.onnx, and a notice where the optimizer fused no attention."""
    fused = folder / EXPORT_VARIANTS["onnx-fused"].file
    with tempfile.TemporaryDirectory(prefix="theseus-export-") as scratch:
        eager = _eager_graph(model, trust, classifier, names, batches[0], folder, scratch,
                             config.opset, extra)  # fmt: skip
        counts = fuse(eager, fused, classifier.config)
    report["fused_operators"] = counts
    if not attention_fused(counts):
        kind = model_type_of(classifier.config)
        note = (
            f"notice: ONNX Runtime's optimizer fuses no attention in {kind}: "
            f"onnx-fused keeps attention unfused (fused: {', '.join(counts) or 'none'})"
        )
        report["notices"].append(note)
        say(note)


def _remove_unused(folder: Path, name: str, built: list[str]) -> None:
    """Delete a left-out variant's file (and OpenVINO's weights beside it) unless a kept
    variant runs the same file, so the folder holds only what export.json lists."""
    path = EXPORT_VARIANTS[name].file
    if any(EXPORT_VARIANTS[other].file == path for other in built):
        return
    for file in (folder / path, (folder / path).with_suffix(".bin")):
        file.unlink(missing_ok=True)


def _has_openvino(report: dict) -> bool:
    try:
        require_openvino()
    except DeployError:
        note = "notice: OpenVINO is not installed, so auto compares ONNX Runtime variants only"
        report["notices"].append(note)
        say(note)
        return False
    return True


def _eager_graph(model, trust, classifier, names, batch, folder, scratch, opset, extra) -> Path:
    """model.onnx when the classifier already runs eager attention; else a trace of it loaded
    with eager attention (sdpa hides attention from the optimizer's pattern matcher)."""
    if classifier.config._attn_implementation == "eager":
        return folder / ONNX_FILE
    try:
        eager, _ = load_model(model, trust, with_tokenizer=False, attn_implementation="eager")
    except ModelError:
        return folder / ONNX_FILE
    share = getattr(classifier, "share_export_state", None)  # state a reload does not restore
    if share is not None:
        share(eager)
    path = Path(scratch) / "eager.onnx"
    _trace(eager.eval(), names, batch, path, opset, extra)
    return path


def choose(folder: Path, built: list[str], report: dict, config, classifier) -> dict:
    """The fastest variant that keeps the score: each timed on one batch of 32 x (up to) 128
    tokens, interleaved, median of 3 after a warm-up."""
    qualified, reasons = [], {}
    for name in built:
        ok, reason = _keeps_score(name, report, config)
        reasons[name] = reason
        if ok:
            qualified.append(name)
    timing = _timing_batch(classifier)
    threads = torch.get_num_threads()  # as PyTorch runs: the timings compare alike
    runners = {name: load_variant(folder, name, threads) for name in built}
    times = {name: [] for name in built}
    for round_ in range(4):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner.logits(timing)
            if round_:
                times[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    best = min(qualified, key=seconds.get)
    faster = [n for n in built if seconds[n] < seconds[best]]
    shape = "x".join(str(d) for d in timing["input_ids"].shape)
    why = (f"fastest of the {len(qualified)} variants that keep the score, on a batch of "
           f"{shape} tokens: {1000 * seconds[best]:.1f} ms, "
           f"{seconds['onnx-fp32'] / seconds[best]:.2f}x onnx-fp32; {reasons[best]}")  # fmt: skip
    if faster:
        why += "; faster but left out: " + "; ".join(f"{n} ({reasons[n]})" for n in faster)
    return {"variant": best, "why": why, "seconds": seconds}


def _keeps_score(name: str, report: dict, config) -> tuple[bool, str]:
    """Whether a variant may be chosen, and why: fp32 variants are verified already; the
    others must keep the dev score within the tolerance, or without dev data every label."""
    check = report["variants"][name]
    if "dev" in check:
        drop = 100 * (report["pytorch_fp32"]["score"] - check["dev"]["score"])
        reason = (f"dev score {check['dev']['score']:.4f} against PyTorch fp32's "
                  f"{report['pytorch_fp32']['score']:.4f}")  # fmt: skip
        return EXPORT_VARIANTS[name].exact or drop <= config.auto_tolerance, reason
    if EXPORT_VARIANTS[name].exact:
        return True, f"max |logit - PyTorch| {check['max_abs_logit_diff']:.1e}"
    agreement = check.get("label_agreement")
    if agreement is None:  # regression: within 0.05 of PyTorch's value
        return check["max_abs_logit_diff"] <= 0.05, (
            f"max |value - PyTorch| {check['max_abs_logit_diff']:.3f}")  # fmt: skip
    return agreement == 1.0, f"keeps {100 * agreement:.1f}% of PyTorch's labels"


def _timing_batch(classifier) -> dict:
    vocab = getattr(classifier.config, "vocab_size", 1000)
    length = min(128, (token_positions(classifier.config) or 130) - 2)
    timing = random_batch(32, length, vocab, token_types=True)
    extra = getattr(classifier, "export_inputs", None)
    return {**timing, **(extra(timing) if extra is not None else {})}


def _verification_batches(classifier, tokenizer, data, max_length, config):
    """Tokenised batches to compare on: the dev split when given, else sample texts."""
    if data is None or not (data.task or data.dev_file or data.dataset):
        encoded = tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")
        return [dict(encoded)], None
    task_data = read_data(data, TrainingConfig(), model_labels(classifier), need_train=False)
    check_labels(classifier, task_data)
    examples = next(iter(task_data.dev.values()))
    features = encode(examples, tokenizer, max_length, task_data.task.is_regression)
    batches = list(make_loader(features, tokenizer, 32, False))
    return batches, task_data.task


def _check(runner, reference, batches, config, task, strict: bool, name: str) -> dict:
    """Largest |logit difference| to PyTorch's `reference` logits over the compared examples,
    how often the top label agrees (classification), and dev metrics."""
    compared, largest, agree, all_logits = 0, 0.0, 0, []
    for batch, expected in zip(batches, reference, strict=True):
        logits = runner.logits(batch)
        all_logits.append(logits)
        if compared < config.verify_samples:
            largest = max(largest, float(np.abs(logits - expected).max()))
            agree += int((logits.argmax(-1) == expected.argmax(-1)).sum())
            compared += len(logits)
    if strict and largest > config.tolerance:
        raise ExportMismatch(
            f"{name} logits differ from PyTorch by up to {largest:.3g} (tolerance "
            f"{config.tolerance:g}) on {compared} examples: the export is wrong for this "
            "model; try another --opset, or report the architecture"
        )
    result = {"max_abs_logit_diff": largest, "examples_compared": compared}
    if reference[0].shape[-1] > 1:
        result["label_agreement"] = agree / compared
    if task is not None:
        result["dev"] = _metrics(task, all_logits, batches)
    return result


def _metrics(task, logits: list[np.ndarray], batches) -> dict:
    logits = np.concatenate(logits)
    labels = np.concatenate([b["labels"].numpy() for b in batches])
    predictions = logits[:, 0] if task.is_regression else logits.argmax(-1)
    return compute_metrics(task.metric, predictions, labels)


class ExportMismatch(DeployError):
    """The exported graph does not reproduce PyTorch within the tolerance."""
