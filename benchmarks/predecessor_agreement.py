"""How much of its predecessor's function a student keeps, on training inputs and on dev.

    python benchmarks/predecessor_agreement.py runs/predecessor STUDENT [STUDENT ...] \
        --task rte --data-dir GLUE/RTE --train-examples 2490

For a classifier, on dev and on the first `--train-examples` training examples (eval mode):
the student's accuracy, how often it gives the predecessor's answer, and that agreement
split by whether the predecessor's answer is right. A student that copies what the
predecessor knows agrees more where the predecessor is right; one that agrees as often
where it is wrong copies its answers, not its knowledge, and on a predecessor that has
memorised its training set (train accuracy far above dev) scores near chance on dev while
it agrees with it on most inputs. For a regression, the correlation of the two outputs.
"""

from __future__ import annotations

import numpy as np
import torch
from probe_data import dev_features, outputs, probe_parser, score, train_features

from bert_theseus.data.loading import make_loader
from bert_theseus.models import load_model


def split_outputs(folder: str, splits: dict) -> dict[str, np.ndarray]:
    """The model's logits on each split's batches, the model loaded once."""
    model, _ = load_model(folder, with_tokenizer=False)
    return {name: outputs(model, batches) for name, (batches, _) in splits.items()}


def agreement(ours: np.ndarray, theirs: np.ndarray, labels: np.ndarray, task) -> str:
    if task.is_regression:
        r = np.corrcoef(ours[:, 0], theirs[:, 0])[0, 1]
        return f"score {score(ours, labels, task):.2f}, correlation with the predecessor {r:.3f}"
    ours, theirs = ours.argmax(1), theirs.argmax(1)
    same, right = ours == theirs, theirs == labels
    return (
        f"acc {100 * (ours == labels).mean():.1f}, agrees {100 * same.mean():.1f} "
        f"(where it is right {100 * same[right].mean():.1f}, "
        f"where it is wrong {100 * same[~right].mean():.1f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = probe_parser(__doc__, "predecessor")
    parser.add_argument("--train-examples", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    dev, tokenizer, task = dev_features(args.predecessor, args.task, args.data_dir)
    train = train_features(args.predecessor, args.task, args.data_dir, args.train_examples)
    splits = {}
    for name, features in (("train", train), ("dev", dev)):
        batches = list(make_loader(features, tokenizer, 64, False))
        labels = np.concatenate([batch.pop("labels").numpy() for batch in batches])
        splits[name] = (batches, labels)
    theirs = split_outputs(args.predecessor, splits)
    for name, (_, labels) in splits.items():
        print(f"predecessor, {name} ({len(labels)}): {score(theirs[name], labels, task):.2f}")
    for folder in args.students:
        ours = split_outputs(folder, splits)
        for name, (_, labels) in splits.items():
            found = agreement(ours[name], theirs[name], labels, task)
            print(f"{folder}, {name}: {found}", flush=True)


if __name__ == "__main__":
    main()
