"""DynaBERT sub-networks: does a narrow width cost what a narrow model costs? Side by side.

    python benchmarks/dynabert_speed.py runs/mpnet-rte --save runs/mpnet-cells

Times, interleaved in one process on the same random batch, the adaptive model (sliced
weights, one shared model) at every width x depth and each cell's extracted standalone model,
against the full model. Speed does not depend on training, so any fine-tuned predecessor
shows it. `--save DIR` also writes each extracted cell to DIR/w<W>-d<D> for `theseus
benchmark` (ONNX fp32/int8). Compare ratios, not absolute times across runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging

from bert_theseus.methods.dynabert import AdaptiveModel, cell_name, extract
from bert_theseus.methods.dynabert.adaptive import trained_rule
from bert_theseus.speed import count_parameters, measure_latency


class SubNetwork(nn.Module):
    """The shared adaptive model run as one cell (what a training step's forward does)."""

    def __init__(self, model, adaptive: AdaptiveModel, width: float, depth: float):
        super().__init__()
        self.model, self.adaptive, self.cell = model, adaptive, (width, depth)
        self.config = model.config

    def forward(self, **inputs):
        with self.adaptive.sub_network(*self.cell):
            return self.model(**inputs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a fine-tuned classifier folder")
    parser.add_argument("--widths", nargs="+", type=float, default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--depths", nargs="+", type=float, default=[1.0, 0.75, 0.5])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (default fp32)")
    parser.add_argument("--save", help="write each extracted cell under this folder")
    args = parser.parse_args(argv)
    logging.disable_progress_bar()  # no "Writing model shards" bar per saved cell

    full = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    shared = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    adaptive = AdaptiveModel(shared, trained_rule(shared))  # the depth rule it was trained with
    cells = [(w, d) for d in args.depths for w in args.widths]
    models: dict[str, nn.Module] = {"full": full}
    for w, d in cells:
        models[f"sliced {cell_name(w, d)}"] = SubNetwork(shared, adaptive, w, d)
        models[f"extracted {cell_name(w, d)}"] = extract(full, w, d).eval()
    times = measure_latency(models, args.batch_size, args.length, args.repeats, bf16=args.bf16)
    precision = "bf16 autocast" if args.bf16 else "fp32"
    print(f"{args.model}: batch {args.batch_size} x {args.length}, {precision}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}, interleaved")  # fmt: skip
    print(f"{'cell':<12} {'params':>8} {'sliced ms':>10} {'speed-up':>9} "
          f"{'extracted ms':>13} {'speed-up':>9} {'vs width 1':>11}")  # fmt: skip
    for w, d in cells:
        name = cell_name(w, d)
        sliced, alone = times[f"sliced {name}"], times[f"extracted {name}"]
        widest = times[f"sliced {cell_name(max(args.widths), d)}"]
        params = count_parameters(models[f"extracted {name}"]) / 1e6
        print(
            f"{name:<12} {params:>7.1f}M {1000 * sliced:>10.1f} {times['full'] / sliced:>8.2f}x "
            f"{1000 * alone:>13.1f} {times['full'] / alone:>8.2f}x {widest / sliced:>10.2f}x"
        )
    if args.save:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        for w, d in cells:
            folder = Path(args.save) / cell_name(w, d)
            models[f"extracted {cell_name(w, d)}"].save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        print(f"saved {len(cells)} cells under {args.save}, for 'theseus benchmark'")


if __name__ == "__main__":
    main()
