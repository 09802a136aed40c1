"""Dev score against training steps, for several finished runs on one plot (LadaBERT's claim).

    python benchmarks/convergence.py ladabert-2=runs/sst2-ladabert-2 kd=runs/sst2-kd \
        --output docs/convergence-sst2.png

LadaBERT (Mao et al., COLING 2020, Figs. 3-4) claims to reach a given score in about a tenth
of the steps a freshly built student of the same size needs. Each run folder's
`train_log.jsonl` holds its dev evaluations, with steps counted across stages; this plots
them and prints, per run, its best score and the first step at which every other run's best
(less `--within` points) was reached.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(folder: Path) -> list[tuple[int, float]]:
    """(step, dev score x 100) at every evaluation of a finished or partial run."""
    points = []
    for line in (folder / "train_log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "dev" in record:
            split = next(iter(record["dev"]))
            points.append((record["step"], 100 * record["dev"][split]["score"]))
    if not points:
        raise SystemExit(f"{folder}: no dev evaluation in train_log.jsonl")
    return points


def first_step(points: list[tuple[int, float]], score: float) -> int | None:
    return next((step for step, value in points if value >= score), None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=FOLDER, one per run")
    parser.add_argument("--within", type=float, default=1.0, help="points below a best score")
    parser.add_argument("--output", help="write the plot here (PNG)")
    args = parser.parse_args(argv)
    curves = {}
    for entry in args.runs:
        label, _, folder = entry.partition("=")
        curves[label] = curve(Path(folder or label))
    bests = {label: max(value for _, value in points) for label, points in curves.items()}
    for label, points in curves.items():
        reached = ", ".join(
            f"{other}'s best - {args.within:g} ({bests[other] - args.within:.2f}) at step "
            f"{first_step(points, bests[other] - args.within) or 'never'}"
            for other in curves
        )
        print(f"{label}: best {bests[label]:.2f} of {len(points)} evaluations; {reached}")
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from bert_theseus.runs import save_figure

        figure, axis = plt.subplots(figsize=(6, 4))
        for label, points in curves.items():
            axis.plot(*zip(*points, strict=True), marker=".", label=label)
        axis.set_xlabel("training steps (all stages)")
        axis.set_ylabel("dev score x 100")
        axis.legend()
        save_figure(figure, Path(args.output))


if __name__ == "__main__":
    main()
