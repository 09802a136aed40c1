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
import copy
import statistics
import time

import torch
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging

from bert_theseus.methods.dynabert import DynaBERTConfig, DynaBERTMethod
from bert_theseus.methods.dynabert.importance import importance, rewire


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
    """One stage under one rule: its own student, teacher, optimizer and cell sampler."""

    def __init__(self, stage: str, rule: str, sampled: int, teacher_width: str, rewired):
        self.name = f"{stage} {rule}" + (f" K={sampled}" if rule == "sandwich" else "")
        if teacher_width != "same":
            self.name += f" teacher={teacher_width}"
        config = DynaBERTConfig(subnetworks=rule, sampled=sampled, teacher_width=teacher_width)
        student = copy.deepcopy(rewired).train()
        width_stage = stage == "width"
        cells = config.cells(depth=not width_stage)
        self.method = DynaBERTMethod(
            student,
            cells,
            teacher=copy.deepcopy(rewired),
            regression=rewired.config.num_labels == 1,
            hidden_weight=config.width_hidden_weight if width_stage else config.depth_hidden_weight,
            same_width_teacher=not width_stage and teacher_width == "same",
            sampler=config.sampler(cells, 1, "dynabert-width" if width_stage else "dynabert"),
        )
        self.model = student
        trained = [p for p in student.parameters() if p.requires_grad]
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


def variants(rewired, sampled: list[int]) -> list[Variant]:
    rules = [("all", 0)] + [("sandwich", k) for k in sampled]
    built = [Variant("width", rule, k, "same", rewired) for rule, k in rules]
    built += [Variant("width-depth", rule, k, "same", rewired) for rule, k in rules]
    built += [Variant("width-depth", rule, k, "full", rewired) for rule, k in rules]
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
    # Rewiring orders heads and neurons; the step's cost does not depend on the order, but
    # the real stages run on a rewired model, so these do too (importance from two batches).
    probe = [labelled(batch, predecessor.config) for batch in data[:2]]
    heads, neurons = importance(predecessor.eval(), probe)
    rewired = rewire(predecessor, heads, neurons)
    built = variants(rewired, args.sampled)
    print(f"{len(built)} variants, {args.steps} timed steps each (+{args.warmup} warm-up), "
          f"batch {args.batch_size} x {args.length}, {'fp32' if args.fp32 else 'bf16 autocast'}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    report(timed(built, data, args.warmup, not args.fp32), args.sampled)


if __name__ == "__main__":
    main()
