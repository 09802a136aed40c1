"""Probe module replacing while it trains: where does the successor lose its input? (issue 15)

Trains Theseus through the library's own loop and, every `--probe-every` optimizer steps
(before that step's update), measures on a fixed slice of dev, in eval mode:

- for four paths (all successors; all predecessors; only the top module's successor; every
  successor but the top one): the standard deviation across inputs of the [CLS] state after
  every layer (mean over hidden units), the spread of the logits, accuracy and loss;
- for the same paths, how far the top hidden state lies from the all-predecessor path's;
- for every module i: how well successor i imitates its predecessor module on the
  predecessor's own input (relative error of the whole output, and of [CLS] alone);

and after every backward pass, the gradient norm of each successor that was on the path.
One JSON line per probe and per step goes to `--output`; a summary table is printed.

    python benchmarks/collapse_probe.py --model runs/minilm-rte --task rte \
        --data-dir ../shared/data/glue/RTE --successor-layers 3 --epochs 4 \
        --learning-rate 5e-5 --seed 1 --output probe-rte-paper.jsonl
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import torch

from bert_theseus import TheseusConfig, theseus_layers
from bert_theseus.commands import DataConfig, load_model, read_data
from bert_theseus.data.loading import encode, make_loader
from bert_theseus.methods.theseus import TheseusMethod
from bert_theseus.methods.theseus.init import cls_spread
from bert_theseus.training import TrainingConfig, make_accelerator, train


class ProbedTheseus(TheseusMethod):
    """Module replacing that measures itself (see the module docstring)."""

    def __init__(self, config, seed, probe, every, sink):
        super().__init__(config, seed=seed)
        self.probe_batch, self.every, self.sink = probe, every, sink

    def before_step(self, model, step):
        values = super().before_step(model, step)
        if step % self.every == 0:
            record = {
                "step": step,
                "p": values["replacing_rate"],
                **measure(model, self.probe_batch),
            }
            self.sink.write(json.dumps(record) + "\n")
            self.sink.flush()
        return values

    def after_backward(self, model, step):
        layers = theseus_layers(model)
        norms = {}
        for i, layer in enumerate(layers.successor):
            grads = [p.grad for p in layer.parameters() if p.grad is not None]
            if grads:
                norms[f"grad_{i}"] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads)))
        used = "".join("S" if s else "P" for s in layers.use_successor)
        values = super().after_backward(model, step)
        self.sink.write(json.dumps({"step": step, "path": used, **norms, **values}) + "\n")
        return values


@torch.no_grad()
def measure(model, batch) -> dict:
    layers = theseus_layers(model)
    was_training, saved = model.training, list(layers.use_successor)
    model.eval()
    n = len(layers.groups)
    paths = {
        "successors": [True] * n,
        "predecessors": [False] * n,
        "top_successor": [False] * (n - 1) + [True],
        "top_predecessor": [True] * (n - 1) + [False],
    }
    result, states = {}, {}
    for name, choice in paths.items():
        out = _run(model, layers, choice, batch)
        states[name] = out.hidden_states
        result[name] = _summary(out, batch["labels"])
    # How far each path's top state lies from the predecessor's: on the all-successor path
    # this adds up what every successor makes of inputs it was not copied to read.
    top = states["predecessors"][-1]
    for name in paths:
        result[name]["top_relative_error"] = float((states[name][-1] - top).norm() / top.norm())
    # Successor i alone on the path: its input is the predecessor's, so its output can be
    # set beside predecessor module i's output on the same input.
    reference = states["predecessors"]
    for i, group in enumerate(layers.groups):
        alone = _run(model, layers, [j == i for j in range(n)], batch).hidden_states
        ours, theirs = alone[group[0] + 1], reference[group[-1] + 1]
        result[f"module_{i}"] = {
            "relative_error": float((ours - theirs).norm() / theirs.norm()),
            "cls_relative_error": float((ours[:, 0] - theirs[:, 0]).norm() / theirs[:, 0].norm()),
            "cls_std": cls_spread(ours),
        }
    layers.use_successor = saved
    model.train(was_training)
    return result


def _run(model, layers, choice, batch):
    layers.use_successor = list(choice)
    layers.training = True  # only its path choice: every dropout stays off
    try:
        return model(**batch, output_hidden_states=True)
    finally:
        layers.training = False


def _summary(out, labels) -> dict:
    logits = out.logits.float()
    summary = {
        "cls_std": [round(cls_spread(h), 5) for h in out.hidden_states],
        "logit_std": float(logits.std(dim=0).mean()),
        "loss": float(out.loss),
    }
    if logits.shape[-1] > 1:
        summary["accuracy"] = float((logits.argmax(-1) == labels).float().mean())
        summary["classes_answered"] = int(logits.argmax(-1).unique().numel())
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--eval-steps", type=int, default=None)
    parser.add_argument("--probe-every", type=int, default=13)
    parser.add_argument("--probe-examples", type=int, default=64)
    parser.add_argument("--output", required=True, help="JSON lines file of measurements")
    theseus_fields = {f.name for f in fields(TheseusConfig)} - {"grouping", "train_parts"}
    for name in sorted(theseus_fields):
        kind = {"successor_layers": int, "replacing_steps": int}.get(name, None)
        kind = kind or (float if name in ("replacing_rate", "k", "module_loss") else str)
        parser.add_argument("--" + name.replace("_", "-"), type=kind)
    parser.add_argument("--train-parts", nargs="*", default=[])
    args = parser.parse_args()

    values = {k: getattr(args, k) for k in theseus_fields if getattr(args, k) is not None}
    config = TheseusConfig(**values, train_parts=args.train_parts)
    training = TrainingConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
        eval_steps=args.eval_steps,
    )
    model, tokenizer = load_model(args.model)
    data = read_data(DataConfig(task=args.task, data_dir=args.data_dir), training)
    task = data.task
    train_features = encode(data.train, tokenizer, training.max_length, task.is_regression)
    dev = {
        k: encode(v, tokenizer, training.max_length, task.is_regression)
        for k, v in data.dev.items()
    }
    first = next(iter(dev.values()))
    probe = next(
        iter(make_loader(first[: args.probe_examples], tokenizer, args.probe_examples, False))
    )
    accelerator = make_accelerator(training)
    with Path(args.output).open("w") as sink:
        method = ProbedTheseus(config, args.seed, probe, args.probe_every, sink)
        result = train(model, method, train_features, dev, task, tokenizer, training, accelerator)
        sink.write(json.dumps({"final": result.best_dev, "best_step": result.best_step,
                               "constant_steps": result.constant_steps}) + "\n")  # fmt: skip
    report(Path(args.output))


def report(path: Path) -> None:
    """A table of the probes: [CLS] spread at the top, logit spread and accuracy per path."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    probes = [r for r in records if "successors" in r]
    print("step  p     | cls std at the top: succ  pred  top-S  top-P | logit std: succ  pred"
          "  top-S  top-P | acc succ | module top rel.err")  # fmt: skip
    for r in probes:
        tops = [r[k]["cls_std"][-1] for k in ("successors", "predecessors", "top_successor",
                                               "top_predecessor")]  # fmt: skip
        logits = [r[k]["logit_std"] for k in ("successors", "predecessors", "top_successor",
                                               "top_predecessor")]  # fmt: skip
        top_module = max(k for k in r if k.startswith("module_"))
        print(f"{r['step']:4d}  {r['p']:.2f}  | " + "  ".join(f"{t:.3f}" for t in tops)
              + "  | " + "  ".join(f"{v:.3f}" for v in logits)
              + f"  | {r['successors'].get('accuracy', float('nan')):.3f}"
              + f"    | {r[top_module]['relative_error']:.3f}")  # fmt: skip
    print(records[-1])


if __name__ == "__main__":
    main()
