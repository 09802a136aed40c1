"""--max-steps is the run's number of optimizer steps, whatever the method's stages."""

from __future__ import annotations

import json

import pytest

from bert_theseus.cli import main
from bert_theseus.training import TrainingConfig, TrainingConfigError
from bert_theseus.training.stages import Stage, step_budgets


def stages(*shares: float, fixed: dict | None = None) -> list[Stage]:
    made = [Stage(f"s{i}", lambda model: model, share=share) for i, share in enumerate(shares)]
    for index, steps in (fixed or {}).items():
        made[index].training["max_steps"] = steps
    return made


@pytest.mark.parametrize(
    ("shares", "total", "expected"),
    [
        ((1.0,), 7, [7]),
        ((1.0, 1.0), 4, [2, 2]),  # stages that each train fully share the steps evenly
        ((1.0, 1.0, 1.0), 10, [3, 4, 3]),
        ((1 / 6, 1 / 6, 1 / 6, 0.5), 16, [3, 2, 3, 8]),  # cut at rounded cumulative shares
        ((1 / 6, 1 / 6, 1 / 6, 0.5), 4, [1, 1, 1, 1]),  # rounding left one none: largest gives
        ((0.3, 0.7), 3, [1, 2]),
    ],
)
def test_the_step_budget_is_split_over_the_stages_and_adds_up(shares, total, expected):
    budgets = step_budgets(stages(*shares), total)
    assert budgets == expected and sum(budgets) == total


def test_a_stage_that_fixes_its_steps_keeps_them_outside_the_split():
    assert step_budgets(stages(1.0, 1.0, fixed={0: 60}), 10) == [None, 10]
    config = stages(1.0, 1.0, fixed={0: 60})[0].config(TrainingConfig(max_steps=10), None)
    assert config.max_steps == 60


def test_without_a_step_budget_every_stage_trains_its_epochs():
    assert step_budgets(stages(0.5, 0.5), None) == [None, None]


def test_fewer_steps_than_stages_is_refused():
    with pytest.raises(TrainingConfigError, match="--max-steps 2 is fewer than .* 3 training"):
        step_budgets(stages(1.0, 1.0, 1.0), 2)


FAST = ["--batch-size", "8", "--mixed-precision", "no", "--eval-steps", "100"]
METHODS = {
    "dynabert": ["--widths", "1.0", "0.5", "--depths", "1.0", "0.5"],
    "ladabert": ["--preset", "ladabert-2", "--prune-iterations", "2"],
    "theseus": ["--successor-layers", "2"],
}


@pytest.mark.parametrize("method", list(METHODS))
def test_max_steps_counts_every_optimizer_step_of_the_run(method, dropout_bert_dir, sst2_dir,
                                                          tmp_path):  # fmt: skip
    out = tmp_path / method
    args = ["compress", "--method", method, "--model", str(dropout_bert_dir), "--task", "sst2",
            "--data-dir", str(sst2_dir), "--output", str(out),
            "--max-steps", "5", *FAST, *METHODS[method]]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 5
    steps = [s["steps"] for s in metrics.get("stages", [metrics])]
    assert sum(steps) == 5 and min(steps) >= 1


def test_max_steps_below_the_stage_count_exits_2_naming_the_fix(dropout_bert_dir, sst2_dir,
                                                                tmp_path, capsys):  # fmt: skip
    out = tmp_path / "lada"
    args = ["compress", "--method", "ladabert", "--model", str(dropout_bert_dir), "--task",
            "sst2", "--data-dir", str(sst2_dir), "--output", str(out), "--max-steps", "3",
            *FAST, *METHODS["ladabert"]]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "theseus: error: --max-steps 3 is fewer than this method's 4 training stages "
        "(each needs a step): give --max-steps 4 or more"
    ]
    assert not out.exists() and not (tmp_path / ".lada.partial").exists()
