"""The seed-by-seed comparison of methods, and the score a constant answer reaches."""

from __future__ import annotations

import pytest

from bert_theseus.metrics import constant_score
from bert_theseus.paired import paired_differences


def test_paired_differences_match_a_hand_computed_t_interval():
    scores = {
        "theseus": {1: 53.0, 2: 54.0, 3: 55.0, 4: 50.0},
        "truncated": {1: 52.0, 2: 52.0, 3: 52.0},
        "kd": {4: 50.0},
    }
    rows = paired_differences(scores)
    # kd shares one seed with each: no pair of one seed has a spread.
    assert [(r["first"], r["second"]) for r in rows] == [("theseus", "truncated")]
    row = rows[0]
    # Differences 1, 2, 3 at the three shared seeds: mean 2, std 1, t(0.975, 2) = 4.3027.
    assert row["seeds"] == [1, 2, 3] and row["mean"] == 2.0 and row["std"] == 1.0
    half = 4.302653 / 3**0.5
    assert row["interval"] == [round(2 - half, 2), round(2 + half, 2)] == [-0.48, 4.48]
    assert (row["higher"], row["level"], row["lower"]) == (3, 0, 0)


def test_level_and_lower_seeds_are_counted_and_order_gives_the_sign():
    rows = paired_differences({"a": {1: 52.71, 2: 50.0}, "b": {1: 52.71, 2: 51.0}})
    assert rows[0]["mean"] == -0.5 and (rows[0]["higher"], rows[0]["level"], rows[0]["lower"]) == (
        0,
        1,
        1,
    )
    assert (
        paired_differences({"b": {1: 52.71, 2: 51.0}, "a": {1: 52.71, 2: 50.0}})[0]["mean"] == 0.5
    )


@pytest.mark.parametrize(
    ("metric", "labels", "num_labels", "expected"),
    [
        ("accuracy", [1, 1, 1, 0, 0], 2, 0.6),  # the majority class's share
        ("accuracy", [2, 0, 2, 1, 2, 1], 3, 0.5),
        ("matthews", [1, 1, 0, 0, 0], 2, 0.0),  # no correlation with a constant
        # F1 of answering 1 for all: 2 * 0.75 / 1.75 = 0.857; with accuracy 0.75: 0.804.
        ("f1_accuracy", [0, 1, 1, 1], 2, (6 / 7 + 0.75) / 2),
        ("pearson_spearman", [0.5, 2.0, 4.5], None, 0.0),
    ],
)
def test_constant_score(metric, labels, num_labels, expected):
    assert constant_score(metric, labels, num_labels) == pytest.approx(expected)
