"""Why does a deployed model run slower than the plan said? Its weights or its calibration?

    python benchmarks/plan_gap.py MODEL --depth 6 --width 0.75 --task sst2 --data-dir glue/SST-2

The plan timed an untrained model of a shape (until this measured it), made int8 with
random tokens as OpenVINO's calibration; a deployed model has trained weights and was made
int8 by `theseus export` with dev sentences. This builds the shape both ways, untrained
and with the predecessor's own weights (`plan.shapes.with_weights_of`: its first heads and
FFN neurons in its bottom layers, real values as a trained student has), and times them
on each of `--runtimes` in one interleaved block beside the predecessor on torch-fp32,
with the plan's own timer, in alternating trials; on OpenVINO int8 made both by the plan
(random tokens) and by `export` (the dev split). Prints each way's speed-up per trial and
its median. A difference along one axis only names the cause. Compare ratios, not
absolute times across runs.

`--student DIR` adds a trained successor of the shape: its own `export/` as it was deployed,
and the predecessor's weights cut in the student's per-layer head order (its config's
`layer_head_indices`), which separates what training changed from what the order changed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from bert_theseus.compact import compact_from
from bert_theseus.data.config import DataConfig
from bert_theseus.deploy.config import ExportConfig
from bert_theseus.deploy.export import export_onnx
from bert_theseus.deploy.runtime import load_variant
from bert_theseus.models import load_model
from bert_theseus.plan import PlanConfig
from bert_theseus.plan.shapes import Shape, untrained, with_weights_of
from bert_theseus.plan.timing import Candidate, Entry, block_seconds
from bert_theseus.speed import random_batch

RUNTIME = "openvino-int8"  # the runtime whose int8 calibration differs between the two


def exported(model, tokenizer, folder: Path, data: DataConfig, threads: int) -> Candidate:
    """`theseus export --int8 --backend openvino` of `model` (calibrated on the dev split),
    wrapped so the plan's timer runs its OpenVINO int8 file."""
    source = folder / "model"
    model.save_pretrained(source)
    tokenizer.save_pretrained(source)
    export_onnx(str(source), str(folder / "export"),
                ExportConfig(int8=True, backend="openvino"), data)  # fmt: skip
    return deployed(folder, threads)


def deployed(folder: Path, threads: int) -> Candidate:
    """A trained successor's own `export/` (made by `compress` or `export`), as deployed."""
    runner = load_variant(folder / "export", RUNTIME, threads)
    return Candidate(None, None, [RUNTIME], folder, runners={RUNTIME: runner.logits},
                     inputs={RUNTIME: set(runner.input_names)})  # fmt: skip


def in_order_of(predecessor, shape: Shape, student_config) -> torch.nn.Module:
    """The shape with the predecessor's weights, each layer's heads in the student's order."""
    total = predecessor.config.num_hidden_layers
    order = [list(kept) for kept in student_config.layer_head_indices[: shape.depth]]
    neurons = [range(n) for n in shape.layer_intermediate_sizes]
    rest = [range(1)] * (total - shape.depth)
    return compact_from(predecessor, heads=order + rest, neurons=neurons + rest,
                        layers=range(shape.depth)).eval()  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="the predecessor (a classifier folder)")
    parser.add_argument("--depth", type=int, required=True)
    parser.add_argument("--width", type=float, required=True)
    parser.add_argument("--task", required=True, help="GLUE task of the dev split")
    parser.add_argument("--data-dir", required=True, help="its folder (dev.tsv)")
    parser.add_argument(
        "--runtimes",
        nargs="+",
        default=["torch-fp32", RUNTIME],
        help="runtimes to time each weight set on (export only for int8)",
    )
    parser.add_argument("--student", help="a trained successor of this shape, with export/")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    args = parser.parse_args(argv)

    config = PlanConfig(runtime=args.runtimes, batch_size=args.batch_size, length=args.length)
    predecessor, tokenizer = load_model(args.model, False)
    predecessor.eval()
    shape = Shape.of(predecessor.config, args.depth, args.width)
    data = DataConfig(task=args.task, data_dir=args.data_dir)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="plan-gap-") as scratch:
        root = Path(scratch)
        base = Candidate(predecessor, None, ["torch-fp32"], root / "predecessor")
        base.prepare(config, threads)
        models = {"untrained": untrained(predecessor.config, shape),
                  "predecessor's": with_weights_of(predecessor, shape)}  # fmt: skip
        if args.student:
            student_config = load_model(args.student, False)[0].config
            models["predecessor's in the student's head order"] = in_order_of(
                predecessor, shape, student_config
            )
        ways = {}
        for weights, model in models.items():
            planned = Candidate(model, shape, args.runtimes, root / f"{weights}-plan")
            planned.prepare(config, threads)
            for runtime in args.runtimes:
                how = ", plan's int8 (random tokens)" if runtime == RUNTIME else ""
                ways[f"{weights} weights, {runtime}{how}"] = Entry(planned, runtime)
            if RUNTIME in args.runtimes:
                export = exported(model, tokenizer, root / f"{weights}-export", data, threads)
                ways[f"{weights} weights, {RUNTIME}, export's int8 (dev)"] = Entry(export, RUNTIME)
        if args.student:
            ways[f"the student's own export, {RUNTIME}"] = Entry(
                deployed(Path(args.student), threads), RUNTIME
            )
        entries = [Entry(base, "torch-fp32"), *ways.values()]
        batch = random_batch(args.batch_size, args.length, predecessor.config.vocab_size,
                             token_types=True)  # fmt: skip
        speedups = {name: [] for name in ways}
        for trial in range(args.trials):
            order = entries if trial % 2 == 0 else [entries[0], *reversed(entries[1:])]
            times = dict(zip(map(id, order), block_seconds(order, batch, config), strict=True))
            for name, entry in zip(ways, entries[1:], strict=True):
                speedups[name].append(times[id(entries[0])] / times[id(entry)])
            print(f"trial {trial + 1} of {args.trials}: predecessor "
                  f"{1000 * times[id(entries[0])]:.0f} ms", flush=True)  # fmt: skip
    print(f"\n{shape.name} of {args.model}, against the predecessor on "
          f"torch-fp32, batch {args.batch_size} x {args.length}, {threads} threads, "
          f"{config.warmup} warm-up + {config.repeats} timed rounds a block\n")  # fmt: skip
    print("| way | speed-up per trial | median |")
    print("|---|---|---|")
    for name, values in speedups.items():
        per = " ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {per} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
