"""Making a plan: build every shape, time it on every runtime against the predecessor, and
keep the result in a cache, so a later run (a resume, a comparison of several routes)
chooses from the same measurements."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch
from transformers import PretrainedConfig, PreTrainedModel

from ..cache import cache_root
from ..deploy.runtime import DeployError, require_openvino
from ..models import load_model, token_positions
from ..pooling import say
from ..runs import OutputDir, input_paths
from .config import AUTO, PlanConfig, PlanError
from .result import Plan
from .shapes import layer_sizes, shapes, with_weights_of
from .timing import Candidate, Entry, Timer, measure

# Config keys that name or label a model without changing its shape or speed.
UNTIMED_KEYS = ("_name_or_path", "transformers_version", "architectures", "id2label",
                "label2id", "finetuning_task", "problem_type")  # fmt: skip


def make_plan(
    model_or_path: str | PreTrainedModel,
    config: PlanConfig,
    timer: Timer | None = None,
    refresh: bool = False,
    trust_remote_code: bool = False,
) -> Plan:
    """Time every shape of the plan on every runtime against the predecessor on the
    baseline runtime; reuse the cached plan of the same predecessor shape, settings and
    machine unless `refresh`. `timer(entries, config)` gives each entry's seconds per
    batch (default: `timing.measure`, which exports and times them). A model given (not
    a path) is put in eval mode.

    >>> plan = make_plan("runs/teacher", PlanConfig(runtime=["onnx-int8"], length=32))
    >>> plan.choose(target_speedup=4, runtime="onnx-int8")
    """
    config.validate()
    runtimes = resolve_runtimes(config)
    if config.baseline.startswith("openvino"):
        _require_openvino()
    predecessor = _load(model_or_path, trust_remote_code)
    _check_length(predecessor.config, config)
    threads = config.threads or torch.get_num_threads()
    settings = {**asdict(config), "runtimes": runtimes, "threads": threads, **machine()}
    settings["shape_weights"] = "the predecessor's"  # older plans timed untrained shapes
    if timer is not None:  # a plan of another timer is not this machine's measurement
        settings["timer"] = getattr(timer, "__qualname__", type(timer).__qualname__)
    folder = cache_folder(predecessor.config, settings)
    if (folder / "plan.json").is_file() and not refresh:
        plan = Plan.load(folder)
        say(f"plan: reusing the plan measured {plan.measured} in {folder}")
        return plan
    plan = _measure(predecessor, config, runtimes, settings, timer or measure)
    _save_atomic(plan, folder)
    return plan


def resolve_runtimes(config: PlanConfig) -> list[str]:
    """The runtimes asked for, "auto" expanded; OpenVINO's left out of auto (one line says
    so) where openvino or nncf is missing, refused where named."""
    runtimes: list[str] = []
    for runtime in config.runtime:
        for name in AUTO if runtime == "auto" else (runtime,):
            if name not in runtimes:
                runtimes.append(name)
    named = [r for r in config.runtime if r.startswith("openvino")]
    if named:
        _require_openvino()
    elif any(r.startswith("openvino") for r in runtimes) and not _has_openvino():
        runtimes = [r for r in runtimes if not r.startswith("openvino")]
        say("plan: openvino or nncf is not installed, so auto plans without openvino-int8")
    return runtimes


def _measure(predecessor, config, runtimes, settings, timer) -> Plan:
    planned = shapes(predecessor.config, config)
    say(f"plan: {len(planned)} shape(s) x {len(runtimes)} runtime(s) ({', '.join(runtimes)}) "
        f"against the predecessor on {config.baseline}")  # fmt: skip
    own_runtimes = list(dict.fromkeys([config.baseline, *runtimes]))
    torch.set_num_threads(settings["threads"])
    with tempfile.TemporaryDirectory(prefix="theseus-plan-") as scratch:
        own = Candidate(predecessor, None, own_runtimes, Path(scratch) / "predecessor")
        candidates = [own] + [
            Candidate(
                None,
                shape,
                runtimes,
                Path(scratch) / f"shape-{index}",
                build=partial(with_weights_of, predecessor, shape),
            )  # fmt: skip
            for index, shape in enumerate(planned)
        ]
        entries = [Entry(c, r) for c in candidates for r in c.runtimes]
        seconds = timer(entries, config)
        if len(seconds) != len(entries):
            raise ValueError(f"the timer gave {len(seconds)} times for {len(entries)} entries")
        engines = [e.candidate.engines.get(e.runtime, "") for e in entries]
    base = next(s for e, s in zip(entries, seconds, strict=True)
                if e.candidate is own and e.runtime == config.baseline)  # fmt: skip
    rows = [_row(e, s, base, engine) for e, s, engine in zip(entries, seconds, engines,
                                                            strict=True)]  # fmt: skip
    mine = [e.candidate is own for e in entries]
    ours = [r for r, m in zip(rows, mine, strict=True) if m]
    return Plan(
        rows=[r for r, m in zip(rows, mine, strict=True) if not m],
        predecessor=ours,
        baseline=next(r for r in ours if r["runtime"] == config.baseline),
        settings=settings,
        measured=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )


def _row(entry: Entry, seconds: float, base: float, engine: str) -> dict:
    shape = entry.shape
    parameters, layers = entry.candidate.counted()
    if shape is not None:
        heads, neurons = list(shape.layer_heads), list(shape.layer_intermediate_sizes)
    else:
        heads, neurons = layer_sizes(entry.candidate.model.config)
    return {
        "depth": len(heads),
        "width": shape.width if shape is not None else 1.0,
        "runtime": entry.runtime,
        "layer_heads": heads,
        "layer_intermediate_sizes": neurons,
        "parameters": parameters,
        "capacity": layers,
        "seconds": seconds,
        "latency_ms": 1000 * seconds,
        "speedup": base / seconds,
        "engine": engine,
    }


def cache_folder(predecessor: PretrainedConfig, settings: dict) -> Path:
    """plans/<key>/ in the cache (env BERT_THESEUS_CACHE, default ~/.cache/bert-theseus);
    key: the predecessor's shape, the plan's settings, threads, CPU and versions."""
    shape = {k: v for k, v in predecessor.to_dict().items() if k not in UNTIMED_KEYS}
    text = json.dumps({"predecessor": shape, "settings": settings}, sort_keys=True, default=str)
    key = hashlib.sha256(text.encode()).hexdigest()[:24]
    return cache_root() / "plans" / key


def _save_atomic(plan: Plan, folder: Path) -> None:
    """Written aside and renamed into place: a reader sees a whole plan or none."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.parent / f".{folder.name}.{os.getpid()}.partial"
    try:
        plan.save(partial)
        if folder.exists():  # a refresh replaces it
            shutil.rmtree(folder)
        os.replace(partial, folder)
    finally:
        if partial.exists():
            shutil.rmtree(partial)


def machine() -> dict:
    """The CPU and the runtimes' versions: a plan holds on this machine with these only."""
    import onnxruntime

    versions = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        import nncf
        import openvino

        versions |= {"openvino": openvino.__version__, "nncf": nncf.__version__}
    except ImportError:
        pass
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), **versions}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _has_openvino() -> bool:
    try:
        _require_openvino()
    except PlanError:
        return False
    return True


def _require_openvino() -> None:
    try:
        require_openvino()
        import nncf  # noqa: F401  (int8 needs it)
    except (DeployError, ImportError):
        raise PlanError(
            "OpenVINO runtimes need openvino and nncf: pip install 'bert-theseus[openvino]', "
            "or plan ONNX Runtime ones"
        ) from None


def _load(model_or_path, trust: bool) -> PreTrainedModel:
    if not isinstance(model_or_path, str | Path):
        return model_or_path.eval()
    model, _ = load_model(str(model_or_path), trust, with_tokenizer=False)
    return model.eval()


def _check_length(predecessor: PretrainedConfig, config: PlanConfig) -> None:
    positions = token_positions(predecessor)
    if positions is not None and config.length > positions:
        raise PlanError(
            f"--length {config.length} is more than the predecessor's {positions} token "
            f"positions: pass --length {positions} or less"
        )


def run_plan(
    model: str,
    config: PlanConfig,
    output: str,
    overwrite: bool = False,
    refresh: bool = False,
    trust_remote_code: bool = False,
) -> Plan:
    """`theseus plan`: make (or reuse) the plan and write its files to `output`.

    >>> run_plan("runs/teacher", PlanConfig(), "runs/plan")
    """
    config.validate()
    out = OutputDir(output, overwrite, inputs=input_paths(model))
    plan = make_plan(model, config, refresh=refresh, trust_remote_code=trust_remote_code)
    folder = out.open()
    try:
        plan.save(folder)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return replace(plan, settings={**plan.settings, "output": str(out.output)})


def summary(plan: Plan) -> str:
    """What `theseus plan` prints: each runtime's table and where the files went."""
    tables = "\n\n".join(plan.table(runtime) for runtime in plan.runtimes)
    where = plan.settings.get("output")
    return tables + (f"\n\nwritten to {where} (plan.md, plan.csv, plan.json, plan.png)"
                     if where else "")  # fmt: skip
