"""Inference speed-up of saved models over the first one, measured side by side.

    python benchmarks/inference_speedup.py runs/minilm-sst2 runs/minilm-sst2-theseus3

For each setting (batch x tokens, fp32 or bf16 autocast) the models run interleaved in one
process on the same random batch; the table gives median seconds per forward pass and the
speed-up relative to the first model. Compare ratios, not absolute times across runs.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForSequenceClassification

from bert_theseus.speed import count_parameters, measure_latency


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="model folders; the first is the reference")
    parser.add_argument(
        "--settings", nargs="+", default=["32x128", "1x128"], help="BATCHxTOKENS settings to time"
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    models = {
        path: AutoModelForSequenceClassification.from_pretrained(path).eval()
        for path in args.models
    }
    reference = args.models[0]
    print(f"threads {args.threads}, median of {args.repeats} after 2 warm-up, interleaved")
    for path, model in models.items():
        layers = model.config.num_hidden_layers
        print(f"  {path}: {layers} layers, {count_parameters(model) / 1e6:.2f}M parameters")
    print(f"{'setting':<20} {'model':<40} {'s/forward':>10} {'speed-up':>9}")
    for setting in args.settings:
        batch, tokens = (int(x) for x in setting.split("x"))
        for precision in ("fp32", "bf16"):
            times = measure_latency(
                models,
                batch_size=batch,
                seq_length=tokens,
                repeats=args.repeats,
                bf16=precision == "bf16",
            )
            for path in args.models:
                speedup = times[reference] / times[path]
                print(
                    f"{setting + ' ' + precision:<20} {path[-40:]:<40} "
                    f"{times[path]:>10.4f} {speedup:>8.2f}x"
                )


if __name__ == "__main__":
    main()
