"""LadaBERT budgets: what low rank and unstructured sparsity do to size and speed, side by side.

    python benchmarks/ladabert_speed.py runs/mpnet-rte

Builds, from a fine-tuned classifier and without training (speed and size do not depend on
it), each preset's student as LadaBERT leaves it after its last pruning step: every encoder
matrix at its SVD rank, the word table at P_embd, the factors pruned by magnitude to
P_weight. Also the SVD alone (no pruning) and the pruning alone (no SVD), so each part's
effect shows. Times them interleaved in one process on one random batch against the
predecessor, and writes each to a temporary folder to measure its safetensors file.
Compare ratios, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging

from bert_theseus.compact import factorize
from bert_theseus.methods.ladabert import (
    PRESETS,
    LadaBERTConfig,
    Masks,
    embedding_rank,
    encoder_ranks,
)
from bert_theseus.speed import count_nonzero, count_parameters, measure_latency


def student(model: nn.Module, p_embd: float, p_svd: float, p_weight: float) -> nn.Module:
    ranks, rank = encoder_ranks(model, p_svd), embedding_rank(model, p_embd)
    compressed = factorize(model, ranks, rank) if any(ranks) or rank else copy.deepcopy(model)
    if p_weight < 1.0:
        Masks(compressed, p_weight).apply()
    return compressed.eval()


def file_mb(model: nn.Module) -> float:
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return (Path(folder) / "model.safetensors").stat().st_size / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a fine-tuned classifier folder")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (default fp32)")
    args = parser.parse_args(argv)
    logging.disable_progress_bar()

    predecessor = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    models: dict[str, nn.Module] = {"predecessor": predecessor}
    for preset in args.presets:
        p_embd, p_svd, p_weight = LadaBERTConfig(preset=preset).kept()
        models[preset] = student(predecessor, p_embd, p_svd, p_weight)
        models[f"{preset} SVD only"] = student(predecessor, p_embd, p_svd, 1.0)
    p_weight = LadaBERTConfig(preset=args.presets[-1]).kept()[2]
    models[f"pruning only ({p_weight:.2f})"] = student(predecessor, 1.0, 1.0, p_weight)
    times = measure_latency(models, args.batch_size, args.length, args.repeats, bf16=args.bf16)
    precision = "bf16 autocast" if args.bf16 else "fp32"
    print(f"{args.model}: batch {args.batch_size} x {args.length}, {precision}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}, interleaved")  # fmt: skip
    whole = count_parameters(predecessor)
    print(f"{'model':<26} {'stored':>8} {'non-zero':>9} {'x fewer':>8} {'file MB':>8} "
          f"{'ms':>8} {'speed-up':>9}")  # fmt: skip
    for name, model in models.items():
        nonzero = count_nonzero(model)
        print(
            f"{name:<26} {count_parameters(model) / 1e6:>7.1f}M {nonzero / 1e6:>8.1f}M "
            f"{whole / nonzero:>7.2f}x {file_mb(model):>8.1f} {1000 * times[name]:>8.1f} "
            f"{times['predecessor'] / times[name]:>8.2f}x"
        )


if __name__ == "__main__":
    main()
