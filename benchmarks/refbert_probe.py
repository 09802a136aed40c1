"""How much a trained RefBERT student uses its references, on the dev split.

    python benchmarks/refbert_probe.py runs/refbert --task rte --data-dir GLUE/RTE

Prints, for the references the model was trained with swapped at inference for each
ablation's (the nearest, all-zero states, a random training example's, and none: the plain
student path, the projection unused), the dev score and the first layer's attention mass on
reference keys (mean over heads and real query tokens). All-zero states still have keys
and values (the projections' biases), so a model can attend to them: the mass says whether
it does.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from probe_data import dev_features, score

from bert_theseus.data.loading import make_loader
from bert_theseus.methods.refbert.model import retrieve
from bert_theseus.models import load_model

SWAPS = ("nearest", "zero", "random", "none")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a RefBERT run folder")
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    model, _ = load_model(args.model, with_tokenizer=False)
    model.eval()
    features, tokenizer, task = dev_features(args.model, args.task, args.data_dir)
    outputs, labels = {swap: [] for swap in SWAPS}, []
    mass = {swap: [] for swap in SWAPS if swap != "none"}
    for batch in make_loader(features, tokenizer, 64, False):
        labels.append(batch.pop("labels").numpy())
        with torch.no_grad():
            for swap in SWAPS:
                if swap == "none":
                    kept, model.references = model.references, None
                    outputs[swap].append(model(**batch).logits.numpy())
                    model.references = kept
                    continue
                states, mask = retrieve(model.references, swap, batch["input_ids"],
                                        batch["attention_mask"])  # fmt: skip
                logits = model(**batch, reference_states=states, reference_mask=mask).logits
                outputs[swap].append(logits.numpy())
                length = batch["input_ids"].shape[1]
                share = model.attention.probabilities[..., length:].sum(-1).mean(1)
                mass[swap].append(share[batch["attention_mask"].bool()].numpy())
    labels = np.concatenate(labels)
    result = {
        "reference_attention_mass": {
            swap: round(float(np.concatenate(shares).mean()), 4) for swap, shares in mass.items()
        }
    }
    for swap, logits in outputs.items():
        result[f"dev_with_{swap}"] = round(score(np.concatenate(logits), labels, task), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
