"""What a DynaBERT step costs under each sub-network rule, side by side (issue 43's time target).

    python benchmarks/dynabert_sandwich.py runs/minilm-stsb --sampled 2 1 0

Builds both of DynaBERT's distillation stages from one fine-tuned predecessor, as `compress
--method dynabert` does (default widths x depths, rewired, the paper's same-width teacher in
stage 2), once per rule: `all`, and `sandwich` with each `--sampled` K, plus stage 2 with the
full-width teacher (`--teacher-width full`). All variants train on the same random batches,
interleaved step by step in one process, under the loop's precision. Prints each stage's
median step time and its ratio to `all`, and the whole run's ratio at equal steps per stage,
the figure issue 43's target is set on. Compare ratios, never absolute times across runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging

from bert_theseus.data.tasks import get_task
from bert_theseus.methods import MethodContext
from bert_theseus.methods.dynabert import DynaBERTConfig, build


def batches(config, count: int, size: int, length: int, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    shape = (size, length)
    return [
        {
            "input_ids": torch.randint(5, config.vocab_size, shape, generator=generator),
            "attention_mask": torch.ones(shape, dtype=torch.long),
        }
        for _ in range(count)
    ]


def labelled(batch: dict, config) -> dict:
    rows = batch["input_ids"].shape[0]
    if config.num_labels == 1:
        return {**batch, "labels": torch.rand(rows) * 5}
    return {**batch, "labels": torch.randint(0, config.num_labels, (rows,))}


class Variant:
    """One stage under one rule, built by DynaBERT's own `build` as `compress` builds it:
    its student, teacher and cell sampler; the optimizer the loop would give it."""

    def __init__(self, stage: str, rule: str, sampled: int, teacher_width: str, context):
        self.name = f"{stage} {rule}" + (f" K={sampled}" if rule == "sandwich" else "")
        if teacher_width != "same":
            self.name += f" teacher={teacher_width}"
        # The paper's depth rule: `auto` would measure the model on training batches first,
        # which changes which layers a cell drops, not what its step costs.
        config = DynaBERTConfig(subnetworks=rule, sampled=sampled, teacher_width=teacher_width,
                                dropped_layer="last")  # fmt: skip
        width, width_depth = build(context, config)
        self.model, self.method = width.start(context.predecessor)
        if stage == "width-depth":
            self.model, self.method = width_depth.start(self.model)
        self.model.train()
        trained = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trained, lr=2e-5)

    def step(self, batch: dict, index: int, bf16: bool) -> None:
        self.method.before_step(self.model, index)
        # Each sub-network's loss back-propagated as the loop does: part by part.
        parts = self.method.losses(self.model, batch)
        while True:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                part = next(parts, None)
            if part is None:
                break
            part.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def variants(context, sampled: list[int]) -> list[Variant]:
    rules = [("all", 0)] + [("sandwich", k) for k in sampled]
    built = [Variant("width", rule, k, "same", context) for rule, k in rules]
    built += [Variant("width-depth", rule, k, "same", context) for rule, k in rules]
    built += [Variant("width-depth", rule, k, "full", context) for rule, k in rules]
    return built


def timed(built: list[Variant], data: list[dict], warmup: int, bf16: bool) -> dict[str, float]:
    times: dict[str, list[float]] = {variant.name: [] for variant in built}
    for index, batch in enumerate(data):
        for variant in built:
            start = time.perf_counter()
            variant.step(batch, index, bf16)
            if index >= warmup:
                times[variant.name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def report(medians: dict[str, float], sampled: list[int]) -> None:
    print(f"{'variant':<40} {'s/step':>8} {'x all':>7}")
    for name, value in medians.items():
        stage = name.split()[0]
        reference = medians[f"{stage} all" + (" teacher=full" if "teacher=full" in name else "")]
        print(f"{name:<40} {value:8.3f} {value / reference:7.3f}")
    print("\nwhole run at equal steps per stage (width + width-depth), x all:")
    for teacher in ("", " teacher=full"):
        total_all = medians["width all"] + medians["width-depth all" + teacher]
        for k in sampled:
            rule = f" sandwich K={k}"
            total = medians["width" + rule] + medians["width-depth" + rule + teacher]
            label = f"sandwich K={k}" + (", stage 2 teacher=full" if teacher else "")
            print(f"  {label:<38} {total / total_all:.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a fine-tuned classifier or regressor folder")
    parser.add_argument("--sampled", nargs="+", type=int, default=[2, 1, 0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    args = parser.parse_args(argv)
    logging.set_verbosity_error()
    torch.manual_seed(0)

    predecessor = AutoModelForSequenceClassification.from_pretrained(args.model)
    data = batches(predecessor.config, args.steps + args.warmup, args.batch_size, args.length)
    # Rewiring scores heads on labelled dev batches; two random ones order them as well as
    # any for timing (a step's cost does not depend on the order).
    probe = [labelled(batch, predecessor.config) for batch in data[:2]]
    task = get_task("stsb" if predecessor.config.num_labels == 1 else "sst2")  # the loss's kind
    context = MethodContext(predecessor.eval(), seed=1, task=task, dev_batches=lambda: probe)
    built = variants(context, args.sampled)
    print(f"{len(built)} variants, {args.steps} timed steps each (+{args.warmup} warm-up), "
          f"batch {args.batch_size} x {args.length}, {'fp32' if args.fp32 else 'bf16 autocast'}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    report(timed(built, data, args.warmup, not args.fp32), args.sampled)


if __name__ == "__main__":
    main()
