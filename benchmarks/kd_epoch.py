"""A KD epoch against a truncated fine-tuning epoch, with and without the teacher cache.

    python benchmarks/kd_epoch.py --model runs/minilm-sst2 --task sst2 --data-dir GLUE/SST-2 \\
        --successor-layers 3 --max-train-samples 2000

Trains, one after another in one process, on the same examples and student: truncated
fine-tuning, KD recomputing the teacher every step, and KD with the teacher cache, each for
two epochs without evaluation in between. Prints each run's seconds per epoch (from its
log) and the ratios the issue asks for: KD epoch / truncated epoch, in the second epoch,
where the cache is in use.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bert_theseus.commands import DataConfig, compress
from bert_theseus.methods.kd import KDConfig
from bert_theseus.methods.truncated import TruncatedConfig
from bert_theseus.training import TrainingConfig


def epoch_seconds(folder: Path, steps_per_epoch: int) -> list[float]:
    """Seconds of each epoch, from the log's cumulative seconds at the epoch boundaries."""
    records = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    at = {r["step"]: r["seconds"] for r in records if "loss" in r}
    ends = [at[steps_per_epoch], at[2 * steps_per_epoch]]
    return [ends[0], ends[1] - ends[0]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--successor-layers", type=int, default=3)
    parser.add_argument("--max-train-samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    steps = -(-args.max_train_samples // args.batch_size)
    runs = {
        "truncated": TruncatedConfig(successor_layers=args.successor_layers),
        "kd, teacher recomputed": KDConfig(successor_layers=args.successor_layers,
                                           teacher_cache=False),
        "kd, teacher cached": KDConfig(successor_layers=args.successor_layers),
    }  # fmt: skip
    data = DataConfig(task=args.task, data_dir=args.data_dir)
    seconds = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, config in runs.items():
            training = TrainingConfig(
                epochs=2,
                batch_size=args.batch_size,
                logging_steps=1,
                eval_steps=10**6,
                max_train_samples=args.max_train_samples,
            )
            out = Path(scratch) / name.replace(" ", "-").replace(",", "")
            method = "truncated" if name == "truncated" else "kd"
            compress(args.model, data, training, config, str(out), method=method)
            seconds[name] = epoch_seconds(out, steps)  # fmt: skip
    print(f"{args.model}, {args.successor_layers}-layer student, {args.max_train_samples} "
          f"examples, batch {args.batch_size}: seconds per epoch (1st, 2nd)")  # fmt: skip
    for name, (first, second) in seconds.items():
        print(f"{name:<24} {first:8.1f} {second:8.1f}")
    base = seconds["truncated"][1]
    for name in list(runs)[1:]:
        print(f"{name} / truncated, 2nd epoch = {seconds[name][1] / base:.2f}x (target <= 1.1x)")


if __name__ == "__main__":
    main()
