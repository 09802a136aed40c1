"""What `--successor-init auto` measures on a predecessor, for several successor depths.

For each depth: the spread across the first 64 training inputs of the [CLS] state after
the predecessor's bottom layers (where the paper's successors start) and after its last
layer, their ratio, and the start `auto` chooses (docs/results.md section 6).

    python benchmarks/successor_init.py --model runs/mpnet-rte --task rte \
        --data-dir ../shared/data/glue/RTE --successor-layers 3 4 6
"""

from __future__ import annotations

import argparse

from bert_theseus.commands import DataConfig, load_model, read_data
from bert_theseus.data.loading import encode
from bert_theseus.methods.theseus import TheseusConfig
from bert_theseus.methods.theseus.init import EXAMPLES, choose_successor_init
from bert_theseus.run_setup import train_batches
from bert_theseus.training import TrainingConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--successor-layers", type=int, nargs="+", required=True)
    args = parser.parse_args()
    training = TrainingConfig()
    model, tokenizer = load_model(args.model)
    data = read_data(DataConfig(task=args.task, data_dir=args.data_dir), training)
    features = encode(
        data.train[:EXAMPLES], tokenizer, training.max_length, data.task.is_regression
    )
    print("successors | [CLS] spread: bottom layers  last layer | ratio  | auto chooses")
    for layers in args.successor_layers:
        config = TheseusConfig(successor_layers=layers)
        choice = choose_successor_init(
            model, config, train_batches(features, tokenizer, training)()
        )
        print(f"{layers:10d} | {choice.bottom_cls_spread:27.4f}  {choice.top_cls_spread:10.4f} | "
              f"{choice.share:6.3f} | {choice.successor_init}")  # fmt: skip


if __name__ == "__main__":
    main()
