"""What DynaBERT's rewiring alone keeps: every width x depth cell's dev score before training.

    python benchmarks/dynabert_cells.py runs/mpnet-rte --task rte --data-dir GLUE/RTE
    python benchmarks/dynabert_cells.py runs/minilm-rte --task rte --data-dir GLUE/RTE \
        --dropped-layer first

DynaBERT's first step (Alg. 1) scores heads and FFN neurons on dev and puts the most
important first, so that a narrow sub-network keeps them. This cuts every cell out of a
fine-tuned classifier twice, from the model as it is (the first heads and neurons by index)
and from the rewired model (the most important ones, the library's own `importance` and
`rewire`, as stage 1 of `--method dynabert` does), and scores both on dev with the task's
official metric, in eval mode, fp32, with no training. It measures what the rewiring buys
by itself, and the floor each cell's training starts from. (Importance is scored on the same
dev set, as the paper's code does, so the rewired scores are optimistic by that much.)
It also prints each rewired cell's output spread (the standard deviation of its logits
across dev inputs, averaged over outputs): a cell near 0 answers the same for every input,
and training starts it from a constant.
"""

from __future__ import annotations

import argparse

import numpy as np
from probe_data import dev_features, outputs, score

from bert_theseus.data.loading import make_loader
from bert_theseus.methods.dynabert import cell_name, extract, importance, rewire
from bert_theseus.methods.dynabert.adaptive import trained_rule
from bert_theseus.methods.dynabert.config import DROPPED_LAYERS
from bert_theseus.models import load_model
from bert_theseus.speed import count_parameters


def spread(logits: np.ndarray) -> float:
    """Standard deviation across inputs, averaged over outputs."""
    return float(logits.std(axis=0).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a fine-tuned classifier folder")
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--widths", nargs="+", type=float, default=[1.0, 0.75, 0.5, 0.25])
    parser.add_argument("--depths", nargs="+", type=float, default=[1.0, 0.75, 0.5])
    parser.add_argument("--dropped-layer", choices=DROPPED_LAYERS,
                        help="the depth rule (compress --dropped-layer); default: the one the "
                        "model was trained with, else the paper's")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    model, _ = load_model(args.model, with_tokenizer=False)
    features, tokenizer, task = dev_features(args.model, args.task, args.data_dir)
    labelled = list(make_loader(features, tokenizer, args.batch_size, False))
    heads, neurons = importance(model, labelled)
    rewired = rewire(model, heads, neurons)
    labels = np.concatenate([batch["labels"].numpy() for batch in labelled])
    batches = [{k: v for k, v in batch.items() if k != "labels"} for batch in labelled]
    predecessor = outputs(model, batches)
    full = score(predecessor, labels, task)
    print(f"{args.model}: {task.name} dev, {len(labels)} examples, fp32, no training; "
          f"predecessor {full:.2f}, output spread {spread(predecessor):.3f}; "
          f"depth rule: drop the {args.dropped_layer or trained_rule(model)} layer of each "
          "group")  # fmt: skip
    print("| cell (width, depth) | parameters | as it is | rewired | retention, rewired "
          "| output spread, rewired |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for d in args.depths:
        for w in args.widths:
            plain = extract(model, w, d, args.dropped_layer)
            ordered = extract(rewired, w, d, args.dropped_layer)
            ordered_out = outputs(ordered, batches)
            ours = score(ordered_out, labels, task)
            print(
                f"| {cell_name(w, d)} | {count_parameters(ordered) / 1e6:.1f}M | "
                f"{score(outputs(plain, batches), labels, task):.2f} | {ours:.2f} | "
                f"{100 * ours / full:.1f}% | {spread(ordered_out):.3f} |"
            )


if __name__ == "__main__":
    main()
