"""How much of a method's "best dev" is the method, and how much the pick of its best
evaluation: per method over the runs of one or more `compare` folders (seeds pooled by
method name), the best dev score, the mean of all its evaluations, how much its
evaluations vary within one run, and what picking the best of them adds. Then every two
methods' difference seed by seed, as `compare` reports it.

    python benchmarks/evaluation_spread.py compare/rte-5 compare/rte-seeds6-15 --subsets 3 5

With --subsets K it also says how often a verdict drawn from K of those seeds goes one way:
of all sets of K shared seeds, in how many the first method's mean of best dev is at or
above the second's mean minus its standard deviation.

A run whose evaluations swing more has a higher expected maximum at the same level, so
two methods can differ in best dev with no difference in what they learned. Reads the
runs' `train_log.jsonl` and `metrics.json`; trains and times nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
from pathlib import Path

from bert_theseus.paired import paired_differences


def read_runs(folders: list[str]) -> dict[str, dict[int, dict]]:
    """{method: {seed: {"best": points, "evaluations": [points], "constant": count}}}."""
    runs: dict[str, dict[int, dict]] = {}
    for folder in folders:
        for metrics_file in sorted(Path(folder).glob("runs/*/metrics.json")):
            method, seed = re.fullmatch(r"(.*)-seed(\d+)", metrics_file.parent.name).groups()
            if int(seed) in runs.get(method, {}):
                raise SystemExit(f"{method} seed {seed} is in two folders: pass one of them")
            metrics = json.loads(metrics_file.read_text())
            split = next(iter(metrics["dev"]))
            log = (metrics_file.parent / "train_log.jsonl").read_text().splitlines()
            evaluations = [json.loads(line).get("dev") for line in log]
            runs.setdefault(method, {})[int(seed)] = {
                "best": 100 * metrics["dev"][split]["score"],
                "evaluations": [100 * e[split]["score"] for e in evaluations if e],
                "constant": len(metrics.get("constant_output_steps", [])),
            }
    return runs


def spread(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="compare output folders")
    parser.add_argument("--subsets", type=int, nargs="*", default=[], help="seeds per subset")
    args = parser.parse_args(argv)
    if any(size < 2 for size in args.subsets):
        parser.error("--subsets takes sizes of 2 or more: a standard deviation needs two seeds")
    runs = read_runs(args.folders)
    print(
        "| method | seeds | best dev | mean of all evaluations | std of the evaluations "
        "within a run | best − mean of its evaluations | evaluations answering one class |"
    )
    print("|---|---|---|---|---|---|---|")
    for method, seeds in runs.items():
        rows = seeds.values()
        means = [statistics.mean(r["evaluations"]) for r in rows]
        within = [statistics.stdev(r["evaluations"]) for r in rows]
        gains = [r["best"] - m for r, m in zip(rows, means, strict=True)]
        total = sum(len(r["evaluations"]) for r in rows)
        print(
            f"| {method} | {len(seeds)} | {spread([r['best'] for r in rows])} "
            f"| {spread(means)} | {statistics.mean(within):.2f} | {statistics.mean(gains):.2f} "
            f"| {sum(r['constant'] for r in rows)} of {total} |"
        )
    print()
    for name, key in (("best dev", "best"), ("mean of all evaluations", "evaluations")):
        scores = {
            method: {
                seed: run[key] if key == "best" else statistics.mean(run[key])
                for seed, run in seeds.items()
            }
            for method, seeds in runs.items()
        }
        for row in paired_differences(scores):
            low, high = row["interval"]
            print(
                f"{name}, {row['first']} − {row['second']}, {len(row['seeds'])} seeds: "
                f"{row['mean']:+.2f} ± {row['std']:.2f}, 95% interval [{low:+.2f}, {high:+.2f}], "
                f"higher / level / lower at {row['higher']} / {row['level']} / {row['lower']}"
            )
    for size in args.subsets:
        for first, second in itertools.combinations(runs, 2):
            print(bar_verdicts(runs[first], runs[second], size, f"{first} against {second}"))


def bar_verdicts(first: dict, second: dict, size: int, name: str) -> str:
    """In how many sets of `size` shared seeds first's mean best dev >= second's mean - std."""
    seeds = sorted(set(first) & set(second))
    subsets = list(itertools.combinations(seeds, size))
    cleared = 0
    for subset in subsets:
        theirs = [second[s]["best"] for s in subset]
        bar = statistics.mean(theirs) - statistics.stdev(theirs)
        cleared += statistics.mean(first[s]["best"] for s in subset) >= bar
    return f"{name}, sets of {size} seeds: clears the mean - std bar in {cleared} of {len(subsets)}"


if __name__ == "__main__":
    main()
