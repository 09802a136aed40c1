"""Methods compared seed by seed: the difference of their scores at the seeds they share.

Two means ± their standard deviations overlap at a handful of seeds whether or not one
method is ahead; the mean of the differences, with an interval, says whether it is. Where
two methods' runs share part of their run-to-run spread (the same seed drawing what their
code draws alike), that part cancels in the difference and the interval narrows; where they
share none (as Theseus's and truncated fine-tuning's best dev on MiniLM RTE: docs/compare.md),
it is as wide as the unpaired one.
"""

from __future__ import annotations

import math
import statistics
from itertools import combinations


def paired_differences(scores: dict[str, dict[int, float]], decimals: int = 2) -> list[dict]:
    """Per pair of methods (in the order given) sharing two or more seeds: the mean
    difference first − second over those seeds, its sample std, a 95% interval of the mean
    (Student's t), and at how many seeds the first is higher, level or lower.

    `scores` maps each method to {seed: score}; `decimals` is how many the scores are shown
    with (2 for points, 4 for the fractions `compare` shows): the results round to it, and
    seeds closer than that are level.

    >>> paired_differences({"a": {1: 2.0, 2: 3.0}, "b": {1: 1.0, 2: 1.0}})[0]["mean"]
    1.5
    """
    from scipy.stats import t  # slow to import; only the comparison's summary needs it

    level = 0.5 * 10**-decimals
    rows = []
    for first, second in combinations(scores, 2):
        seeds = sorted(set(scores[first]) & set(scores[second]))
        if len(seeds) < 2:
            continue
        differences = [scores[first][s] - scores[second][s] for s in seeds]
        mean, std = statistics.mean(differences), statistics.stdev(differences)
        half = t.ppf(0.975, len(seeds) - 1) * std / math.sqrt(len(seeds))
        rows.append(
            {
                "first": first,
                "second": second,
                "seeds": seeds,
                "mean": round(mean, decimals),
                "std": round(std, decimals),
                "interval": [round(mean - half, decimals), round(mean + half, decimals)],
                # Closer than the shown decimals tell apart reads as level.
                "higher": sum(d > level for d in differences),
                "level": sum(abs(d) <= level for d in differences),
                "lower": sum(d < -level for d in differences),
            }
        )
    return rows
