"""Child process of `theseus benchmark`: peak memory of one model variant.

Usage: python -m bert_theseus.deploy.memory SOURCE VARIANT BATCH LENGTH THREADS
Prints one JSON line: peak resident MiB after imports, and the part of it above the
resident size the process had once its libraries were imported.
"""

from __future__ import annotations

import inspect
import json
import resource
import sys


def _status_mib(field: str) -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so imports' transient peak, which
    can exceed a small model's, does not hide the model's own."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> None:
    source, variant, batch_size, length, threads = argv
    import onnxruntime  # noqa: F401  (imported before the baseline, as the parent has it)
    import torch
    from transformers import AutoModelForSequenceClassification

    from ..embedding.benchmark import torch_model
    from ..embedding.config import is_sentence_transformers
    from ..speed import random_batch
    from .runtime import EXPORT_VARIANTS, load_variant, torch_logits

    torch.set_num_threads(int(threads))
    embedder = variant not in EXPORT_VARIANTS and is_sentence_transformers(source)
    if embedder:  # its sentence embedding (embedding/benchmark.py); its library is an import
        import sentence_transformers  # noqa: F401
    reset = _reset_peak()
    baseline = _status_mib("VmRSS") if reset else _peak_mib()
    if variant in EXPORT_VARIANTS:
        model = load_variant(source, variant, int(threads))
        batch = random_batch(int(batch_size), int(length), 100, token_types=True)
        model.logits(batch)
    else:
        if embedder:
            model, accepted = torch_model(source)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(source)
            accepted = inspect.signature(model.forward).parameters
        batch = random_batch(int(batch_size), int(length), 100, token_types=True)
        torch_logits(
            model, {k: v for k, v in batch.items() if k in accepted}, variant == "torch-bf16"
        )
    peak = _peak_mib()
    print(json.dumps({"peak_mb": round(peak, 1), "above_imports_mb": round(peak - baseline, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
