"""Does a shape's planned speed-up depend on the runtimes timed beside it? Side by side.

    python benchmarks/plan_company.py runs/minilm-sst2-64 --depth 6 --width 0.75

Builds one untrained shape of the predecessor, exports it to every runtime named, and
times it two ways in alternating trials, all in one process on the same random batch:
"together", one interleaved block of the predecessor (on the baseline) and the shape on
every runtime (how `theseus plan` times it); and "alone", one block per runtime, each
holding only the predecessor and the shape on that runtime. Prints each runtime's
speed-up under both, with the predecessor's own time per block, so a difference shows
which company moves which side of the ratio. Compare ratios, not absolute times across
runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from bert_theseus.plan import PlanConfig
from bert_theseus.plan.make import _load
from bert_theseus.plan.shapes import Shape, untrained
from bert_theseus.plan.timing import Candidate, Entry, block_seconds
from bert_theseus.speed import random_batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the predecessor (a classifier folder)")
    parser.add_argument("--depth", type=int, required=True)
    parser.add_argument("--width", type=float, required=True)
    parser.add_argument("--runtimes", nargs="+",
                        default=["torch-fp32", "onnx-int8", "openvino-int8"])  # fmt: skip
    parser.add_argument("--trials", type=int, default=3, help="alternating trials of each")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args(argv)

    config = PlanConfig(runtime=args.runtimes, batch_size=args.batch_size, length=args.length)
    predecessor = _load(args.model, False)
    shape = Shape.of(predecessor.config, args.depth, args.width)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="plan-company-") as scratch:
        base = Candidate(predecessor, None, ["torch-fp32"], Path(scratch) / "predecessor")
        model = untrained(predecessor.config, shape)
        candidate = Candidate(model, shape, args.runtimes, Path(scratch) / "shape")
        base.prepare(config, threads)
        candidate.prepare(config, threads)
        base_entry = Entry(base, "torch-fp32")
        entries = [Entry(candidate, r) for r in args.runtimes]
        batch = random_batch(args.batch_size, args.length, predecessor.config.vocab_size,
                             token_types=True)  # fmt: skip
        speedups = {(how, r): [] for how in ("together", "alone") for r in args.runtimes}
        base_ms = {(how, r): [] for how in ("together", "alone") for r in args.runtimes}
        for trial in range(args.trials):
            times = block_seconds([base_entry, *entries], batch, config)
            for entry, seconds in zip(entries, times[1:], strict=True):
                speedups["together", entry.runtime].append(times[0] / seconds)
                base_ms["together", entry.runtime].append(1000 * times[0])
            for entry in entries:
                pair = block_seconds([base_entry, entry], batch, config)
                speedups["alone", entry.runtime].append(pair[0] / pair[1])
                base_ms["alone", entry.runtime].append(1000 * pair[0])
            print(f"trial {trial + 1} of {args.trials} done", flush=True)
    print(f"\n{shape.name} of {args.model}, against the predecessor on torch-fp32, "
          f"batch {args.batch_size} x {args.length}, {threads} threads, "
          f"{config.warmup} warm-up + {config.repeats} timed rounds a block\n")  # fmt: skip
    print("| runtime | blocks | speed-up per trial | median | predecessor ms per trial |")
    print("|---|---|---|---|---|")
    for (how, runtime), values in speedups.items():
        per = " ".join(f"{v:.2f}" for v in values)
        ms = " ".join(f"{v:.0f}" for v in base_ms[how, runtime])
        print(f"| {runtime} | {how} | {per} | {statistics.median(values):.2f} | {ms} |")


if __name__ == "__main__":
    main()
