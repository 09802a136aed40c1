"""Cost of one module-replacing training step, side by side with its two reference points.

    python benchmarks/train_step.py --model runs/minilm-sst2 --successor-layers 3

Three variants train on the same batches, interleaved in one process (so machine drift
hits them alike), with the same Bernoulli draws for every Theseus step:
  theseus      predecessor + successor at p = 0.5, only successor layers trained
  successor    the merged successor alone, its layers trained (the same parameters)
  predecessor  plain fine-tuning of the whole predecessor
Peak memory: on CUDA the allocator's peak per variant; on CPU each variant runs again in a
child process that samples its resident set every millisecond during the steps and reports
the peak above what it held before them (model, optimizer and batches already loaded).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from bert_theseus import TheseusConfig, apply_theseus, merge_theseus, theseus_layers

VARIANTS = ("theseus", "successor", "predecessor")


def build(variant: str, args) -> torch.nn.Module:
    # --no-dropout: the same steps without dropout's random masks (to measure what they cost)
    off = (
        {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} if args.no_dropout else {}
    )
    model = AutoModelForSequenceClassification.from_pretrained(args.model, **off).to(args.device)
    if variant == "predecessor":
        return model.train()
    config = TheseusConfig(successor_layers=args.successor_layers, recipe=args.recipe)
    apply_theseus(model, config, "bottom")  # where the successors start costs nothing per step
    if variant == "successor":
        # Train what Theseus trains: the successor layers, and under the default recipe the
        # embeddings and head too (the same Parameter objects after the merge).
        trained = {id(p) for p in model.parameters() if p.requires_grad}
        merge_theseus(model)
        for parameter in model.parameters():
            parameter.requires_grad_(id(parameter) in trained)
    return model.train()


def batches(args, vocab: int, labels: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch_size, args.seq_length)
    return [
        {
            "input_ids": torch.randint(5, vocab, shape, generator=generator).to(args.device),
            "attention_mask": torch.ones(shape, dtype=torch.long, device=args.device),
            "labels": torch.randint(0, labels, (args.batch_size,), generator=generator).to(
                args.device
            ),
        }
        for _ in range(args.steps + args.warmup)
    ]


def draws(args, modules: int) -> list[list[bool]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.rand(modules, generator=generator) < args.rate).tolist()
        for _ in range(args.steps + args.warmup)
    ]


class Stepper:
    """One variant's model, optimizer and step function."""

    def __init__(self, variant: str, args):
        self.variant, self.args = variant, args
        self.model = build(variant, args)
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.parameters, lr=2e-5)

    def step(self, batch: dict, choice: list[bool]) -> None:
        if self.variant == "theseus":
            theseus_layers(self.model).force(choice)
        dtype = torch.bfloat16 if self.args.precision == "bf16" else None
        with torch.autocast(self.args.device, dtype=dtype, enabled=dtype is not None):
            loss = self.model(**batch).loss
        if loss.requires_grad:  # every module on the predecessor path: nothing to train
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.parameters, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def synchronize(args) -> None:
    if args.device == "cuda":
        torch.cuda.synchronize()


def timed(args) -> dict[str, float]:
    steppers = {variant: Stepper(variant, args) for variant in VARIANTS}
    config = steppers["predecessor"].model.config
    data = batches(args, config.vocab_size, config.num_labels)
    choices = draws(args, args.successor_layers)
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for index, (batch, choice) in enumerate(zip(data, choices, strict=True)):
        for variant, stepper in steppers.items():
            synchronize(args)
            start = time.perf_counter()
            stepper.step(batch, choice)
            synchronize(args)
            if index >= args.warmup:
                times[variant].append(time.perf_counter() - start)
    return {variant: statistics.median(values) for variant, values in times.items()}


def peak_memory(variant: str, args) -> float:
    """MiB of memory the steps of one variant take on top of its loaded model."""
    if args.device == "cuda":
        stepper = Stepper(variant, args)
        config = stepper.model.config
        data = batches(args, config.vocab_size, config.num_labels)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for batch, choice in zip(data, draws(args, args.successor_layers), strict=True):
            stepper.step(batch, choice)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_child_peak, (variant, args))


def _child_peak(variant: str, args) -> float:
    torch.set_num_threads(args.threads)
    stepper = Stepper(variant, args)
    config = stepper.model.config
    data = batches(args, config.vocab_size, config.num_labels)
    choices = draws(args, args.successor_layers)
    # ru_maxrss would report the peak of loading the model; sample the current RSS instead.
    before, peak, done = _rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for batch, choice in zip(data, choices, strict=True):
        stepper.step(batch, choice)
    done.set()
    sampler.join()
    return peak[0] - before


def _rss_mib() -> float:
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def profile(args) -> None:
    """torch.profiler over the timed steps of Theseus and of the successor alone (same
    batches and draws): the operators with the most self CPU time, and their totals."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    for variant in ("theseus", "successor"):
        stepper = Stepper(variant, args)
        config = stepper.model.config
        data = batches(args, config.vocab_size, config.num_labels)
        choices = draws(args, args.successor_layers)
        for batch, choice in zip(data[: args.warmup], choices, strict=False):
            stepper.step(batch, choice)
        with profiler(activities=[ProfilerActivity.CPU]) as run:
            for batch, choice in zip(data[args.warmup :], choices[args.warmup :], strict=True):
                stepper.step(batch, choice)
        table = run.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile)
        print(f"\n## {variant}: {args.steps} steps, operators by self CPU time\n{table}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a fine-tuned predecessor folder")
    parser.add_argument("--successor-layers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.5, help="replacing rate p")
    parser.add_argument(
        "--recipe",
        choices=("default", "paper"),
        default="default",
        help="Theseus recipe: default trains the embeddings and head too",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--no-dropout",
        action="store_true",
        help="set the model's dropout to 0 (what dropout's masks cost)",
    )
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="instead of timing, profile Theseus and the successor alone and "
                        "print the N operators with the most self CPU time")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.profile:
        profile(args)
        return

    seconds = timed(args)
    memory = {variant: peak_memory(variant, args) for variant in VARIANTS}
    print(
        f"model {args.model}, {args.successor_layers}-layer successor, p = {args.rate}, "
        f"{args.recipe} recipe, "
        f"batch {args.batch_size} x {args.seq_length}, {args.precision}, {args.device}, "
        f"median of {args.steps} steps after {args.warmup} warm-up, interleaved"
    )
    print(f"{'variant':<12} {'s/step':>8} {'peak MiB':>9}")
    for variant in VARIANTS:
        print(f"{variant:<12} {seconds[variant]:>8.3f} {memory[variant]:>9.0f}")
    theseus = seconds["theseus"]
    print(f"theseus / successor   = {theseus / seconds['successor']:.2f}x  (target <= 1.1x)")
    print(f"theseus / predecessor = {theseus / seconds['predecessor']:.2f}x  (target <= 0.5x)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
