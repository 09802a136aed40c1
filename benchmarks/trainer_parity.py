"""Our training loop against the `transformers` Trainer on the same job: examples per second.

    python benchmarks/trainer_parity.py --model runs/minilm-sst2 --task sst2 \\
        --data-dir GLUE/SST-2 --successor-layers 3 --steps 200 --precision fp32 bf16

Truncated fine-tuning (the predecessor's bottom --successor-layers layers under its head)
on the same first `steps x batch` training examples, with the same batch, learning rate,
linear schedule, clipping, maximum length, precision and number of optimizer steps: once
through `theseus compress --method truncated` and once through `transformers.Trainer`
(dynamic padding by `DataCollatorWithPadding`, no evaluation or saving while it trains),
alternating in one process, the order swapped every round so neither always runs second.

Each run is timed over its optimizer steps only: ours from its log (seconds at the last
step, before the final evaluation and saving), the Trainer's from `train_runtime`. Both
then score dev once, ours through its run, the Trainer's through `predict`. Prints examples
per second, our rate over the Trainer's (the median over rounds), and the dev scores.
Never run it beside other work: only ratios measured side by side in one process count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from bert_theseus.commands import DataConfig, compress
from bert_theseus.data.loading import encode
from bert_theseus.data.readers import read_glue_split
from bert_theseus.data.tasks import get_task
from bert_theseus.methods.truncated import TruncatedConfig, truncate
from bert_theseus.metrics import compute_metrics
from bert_theseus.models import load_model
from bert_theseus.training import TrainingConfig

PRECISIONS = {"fp32": "no", "bf16": "bf16"}


def ours(args, precision: str, scratch: Path, name: str) -> tuple[float, float]:
    """(seconds of the training steps, dev score) of the shared loop."""
    training = TrainingConfig(
        max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
        max_length=args.max_length, mixed_precision=PRECISIONS[precision],
        eval_steps=args.steps, logging_steps=10, seed=args.seed,
        max_train_samples=args.steps * args.batch_size,
    )  # fmt: skip
    out = scratch / name
    data = DataConfig(task=args.task, data_dir=args.data_dir)
    compress(args.model, data, training, TruncatedConfig(successor_layers=args.successor_layers),
             str(out), method="truncated")  # fmt: skip
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    seconds = max(r["seconds"] for r in lines if r.get("step") == args.steps and "loss" in r)
    dev = json.loads((out / "metrics.json").read_text())["dev"]
    return seconds, next(iter(dev.values()))["score"]


class Features(torch.utils.data.Dataset):
    def __init__(self, features: list[dict]):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]


def trainer(args, precision: str, scratch: Path, name: str) -> tuple[float, float]:
    """(seconds of the training steps, dev score) of `transformers.Trainer`."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    task = get_task(args.task)
    predecessor, tokenizer = load_model(args.model)
    torch.manual_seed(args.seed)
    student = truncate(predecessor, args.successor_layers)

    def features(file_name: str, count: int | None = None) -> Features:
        examples = read_glue_split(args.data_dir, task, file_name)[:count]
        return Features(encode(examples, tokenizer, args.max_length, task.is_regression))

    settings = TrainingArguments(
        output_dir=str(scratch / name), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, max_steps=args.steps, learning_rate=args.learning_rate,
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=10, save_strategy="no", eval_strategy="no", report_to=[],
        bf16=precision == "bf16", use_cpu=not torch.cuda.is_available(), seed=args.seed,
        dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    run = Trainer(
        model=student, args=settings, train_dataset=features(task.train_file,
        args.steps * args.batch_size), data_collator=DataCollatorWithPadding(tokenizer),
    )  # fmt: skip
    seconds = run.train().metrics["train_runtime"]
    dev = run.predict(features(task.dev_files[0]))
    logits = dev.predictions[0] if isinstance(dev.predictions, tuple) else dev.predictions
    predicted = logits.squeeze(-1) if task.is_regression else np.argmax(logits, axis=-1)
    return seconds, compute_metrics(task.metric, predicted, dev.label_ids)["score"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--successor-layers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=["fp32"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    examples = args.steps * args.batch_size
    print(f"{args.model}: {args.successor_layers} layers, {args.steps} steps of "
          f"{args.batch_size}, {args.max_length} tokens at most, {torch.get_num_threads()} "
          "threads")  # fmt: skip
    runners = {"ours": ours, "trainer": trainer}
    with tempfile.TemporaryDirectory() as scratch:
        for precision in args.precision:
            rates, scores = {name: [] for name in runners}, {name: [] for name in runners}
            for r in range(args.rounds):
                order = list(runners) if r % 2 == 0 else list(reversed(runners))
                for name in order:
                    seconds, score = runners[name](
                        args, precision, Path(scratch), f"{name}-{precision}-{r}"
                    )
                    rates[name].append(examples / seconds)
                    scores[name].append(score)
                    print(f"{precision} round {r + 1} {name:<8} {examples / seconds:8.1f} "
                          f"examples/s  dev {score:.4f}", flush=True)  # fmt: skip
            ratios = [a / b for a, b in zip(rates["ours"], rates["trainer"], strict=True)]
            dev = {name: np.mean(values) for name, values in scores.items()}
            print(f"{precision}: ours / Trainer examples per second = "
                  f"{statistics.median(ratios):.3f}x (rounds: "
                  f"{', '.join(f'{x:.3f}' for x in ratios)}; target >= 1.0x); dev "
                  f"{dev['ours']:.4f} against {dev['trainer']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
