"""What TinyBERT's intermediate stage teaches a student, measured against its teacher on dev.

    python benchmarks/intermediate_probe.py runs/teacher STUDENT [STUDENT ...] \
        --task stsb --data-dir GLUE/STS-B --layers 2 4 6

Each STUDENT is a classifier folder (e.g. a stage's `model/`; a RefBERT folder retrieves
its own references), `start:N` for the teacher's bottom N layers (where RefBERT's and
KD's students begin), or `ladabert:PRESET` for the teacher factorised at that preset's SVD
and embedding ranks, untrained (where LadaBERT's student begins;
`ladabert:PRESET:weight` or `ladabert:PRESET:activation` picks the SVD as `--svd` does, the
latter fitted to the first 256 training examples; `ladabert:PRESET:SVD:PRUNING` then prunes
it through the preset's schedule to P_weight with no recovery between the steps, ranking
entries as `--pruning PRUNING` does: where LadaBERT's student would be if recovery did
nothing). For each student layer l and the teacher
layer `--layers[l]` it learns from, on the first `--examples` dev inputs, in eval mode:

- the hidden-state MSE over real tokens (what the stage minimises, which also counts
  padding), and at [CLS] alone (what the classification head reads);
- the spread across inputs of [CLS] (standard deviation, mean over units), the student's
  beside the teacher's;

then the output's spread across inputs, the dev score of those inputs and, for a
classifier, how many inputs it gives each class. A student can
lower the all-token MSE while its [CLS] stays constant: [CLS] is one position of up to 128.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from probe_data import dev_features, probe_parser, score, train_features

from bert_theseus.data.loading import make_loader
from bert_theseus.methods.ladabert import LadaBERTConfig, Masks, factorised, pruning_scales
from bert_theseus.methods.theseus.init import cls_spread
from bert_theseus.methods.truncated.student import truncate
from bert_theseus.models import load_model


def compare(student, teacher, batches, layers: list[int]) -> dict:
    """Per student layer: squared error to its teacher layer summed over real tokens and at
    [CLS], the token count, and the [CLS] states of both; the outputs of both."""
    found = {"tokens": np.zeros(len(layers)), "first": np.zeros(len(layers)), "count": 0,
             "ours": [[] for _ in layers], "theirs": [[] for _ in layers],
             "student": [], "teacher": []}  # fmt: skip
    for batch in batches:
        real = batch["attention_mask"].bool()
        ours = student(**batch, output_hidden_states=True)
        theirs = teacher(**batch, output_hidden_states=True)
        found["count"] += int(real.sum())
        found["student"].append(ours.logits.float())
        found["teacher"].append(theirs.logits.float())
        for i, t in enumerate(layers):
            s_state, t_state = ours.hidden_states[i + 1].float(), theirs.hidden_states[t].float()
            error = ((s_state - t_state) ** 2).mean(-1)
            found["tokens"][i] += float(error[real].sum())
            found["first"][i] += float(error[:, 0].sum())
            found["ours"][i].append(s_state[:, :1])
            found["theirs"][i].append(t_state[:, :1])
    return found


def main(argv: list[str] | None = None) -> None:
    parser = probe_parser(__doc__, "teacher")
    parser.add_argument("--layers", type=int, nargs="+", required=True,
                        help="the teacher layer (from 1) each student layer learns")  # fmt: skip
    parser.add_argument("--examples", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    teacher, _ = load_model(args.teacher, with_tokenizer=False)
    teacher.eval()
    features, tokenizer, task = dev_features(args.teacher, args.task, args.data_dir)
    features = features[: args.examples]
    batches = list(make_loader(features, tokenizer, 32, False))
    labels = np.concatenate([batch.pop("labels").numpy() for batch in batches])
    examples = len(labels)
    for name in args.students:
        if name.startswith("start:"):
            student = truncate(teacher, int(name.split(":")[1])).eval()
        elif name.startswith("ladabert:"):
            _, preset, *kinds = name.split(":")
            chosen = dict(zip(("svd", "pruning"), kinds, strict=False))
            config = LadaBERTConfig(preset=preset, **chosen)
            config.validate()  # a misspelt kind or preset says so
            calibrate = None  # the weights' SVD and |w| read no data
            if "activation" in (config.svd, config.pruning):
                calibration = train_features(args.teacher, args.task, args.data_dir,
                                             config.calibration_examples)  # fmt: skip
                calibrate = partial(iter, make_loader(calibration, tokenizer, 32, False))
            student = factorised(teacher, config, calibrate).eval()
            for keep in config.keep_schedule() if "pruning" in chosen else []:
                Masks(student, keep, pruning_scales(student, config, calibrate)).apply()
        else:
            student, _ = load_model(name, with_tokenizer=False)
            student.eval()
        depth = student.config.num_hidden_layers
        if len(args.layers) != depth:
            raise SystemExit(f"{name} has {depth} layers: pass {depth} values to --layers")
        found = compare(student, teacher, batches, args.layers)
        ours, theirs = torch.cat(found["student"]), torch.cat(found["teacher"])
        print(
            f"\n{name}: output spread {float(ours.std(0).mean()):.3f} "
            f"(teacher {float(theirs.std(0).mean()):.3f}), score "
            f"{score(ours.numpy(), labels, task):.2f} "
            f"(teacher {score(theirs.numpy(), labels, task):.2f}), {examples} dev inputs"
        )
        if not task.is_regression:
            answers = np.bincount(ours.argmax(1).numpy(), minlength=ours.shape[1]).tolist()
            truth = np.bincount(labels.astype(int), minlength=ours.shape[1]).tolist()
            print(f"answers per class: {answers} (labels: {truth})")
        print("| student layer | teacher layer | MSE, real tokens | MSE, [CLS] | [CLS] spread, "
              "student | [CLS] spread, teacher |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for i, t in enumerate(args.layers):
            tokens = found["tokens"][i] / found["count"]
            first = found["first"][i] / examples
            spread = cls_spread(torch.cat(found["ours"][i]))
            reference = cls_spread(torch.cat(found["theirs"][i]))
            print(
                f"| {i + 1} | {t} | {tokens:.3f} | {first:.3f} | {spread:.3f} | {reference:.3f} |"
            )


if __name__ == "__main__":
    main()
