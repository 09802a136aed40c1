"""Replacing-rate schedules, and the shared training loop run with module replacing."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from safetensors.torch import load_file
from tiny import collapsed_bottom, tiny_model
from transformers import BertTokenizerFast

from bert_theseus.data import load_task_data
from bert_theseus.data.loading import encode, make_loader
from bert_theseus.methods.theseus import (
    AntiCurriculumScheduler,
    ConstantScheduler,
    LinearScheduler,
    TheseusConfig,
    TheseusMethod,
    make_scheduler,
    theseus_layers,
)
from bert_theseus.training import Method, TrainingConfig, make_accelerator, train


@pytest.mark.parametrize(
    ("b", "k", "first_full"),
    [(0.3, 0.0006, 1167), (0.5, 0.1, 5), (0.3, 0.1, 7), (0.1, 0.0009, 1000), (1.0, 0.5, 0)],
)
def test_linear_schedule(b, k, first_full):
    scheduler = LinearScheduler(b, k)
    assert scheduler.rate(0) == b
    assert scheduler.full_step == first_full == max(0, math.ceil(round((1 - b) / k, 9)))
    for t in range(0, first_full):
        assert scheduler.rate(t) == pytest.approx(k * t + b)
        assert scheduler.rate(t) < 1.0
    assert scheduler.rate(first_full) == 1.0
    assert scheduler.rate(first_full + 1000) == 1.0


def test_constant_schedule_switches_to_one_exactly_at_replacing_steps():
    scheduler = ConstantScheduler(0.5, 2500)
    assert [scheduler.rate(t) for t in (0, 1, 2498, 2499)] == [0.5] * 4
    assert scheduler.rate(2500) == 1.0 and scheduler.rate(10_000) == 1.0


def test_anti_curriculum_mirrors_linear():
    linear = LinearScheduler(0.3, 0.1)
    anti = AntiCurriculumScheduler(linear)
    for t in range(12):
        assert anti.rate(t) == pytest.approx(1 - linear.rate(t))
    assert anti.rate(0) == pytest.approx(0.7) and anti.rate(7) == 0.0


def test_default_horizon_is_half_the_run():
    linear = make_scheduler(TheseusConfig(successor_layers=2, replacing_rate=0.3), 1000)
    assert linear.full_step == 500
    constant = make_scheduler(TheseusConfig(successor_layers=2, scheduler="constant"), 1000)
    assert constant.replacing_steps == 500
    given = make_scheduler(TheseusConfig(successor_layers=2, k=0.0006), 10)
    assert given.full_step == 1167


@pytest.fixture
def features(tokenizer_dir, sst2_dir):
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)
    data = load_task_data("sst2", data_dir=str(sst2_dir))
    train_features = encode(data.train, tokenizer, 32, False)
    dev_features = {"dev": encode(data.dev["dev"], tokenizer, 32, False)}
    return tokenizer, data.task, train_features, dev_features


def in_order(features):
    """The training split's batches in file order, as a `MethodContext` gives them (what
    successor_init "auto" measures)."""
    tokenizer, _, train_features, _ = features
    loader = make_loader(train_features, tokenizer, TrainingConfig().eval_batch_size, False)
    return lambda: iter(loader)


def run(model, method, features, steps=4, **settings):
    tokenizer, task, train_features, dev_features = features
    settings = {"eval_steps": steps, **settings}
    config = TrainingConfig(
        max_steps=steps,
        batch_size=8,
        learning_rate=1e-3,
        mixed_precision="no",
        device="cpu",
        **settings,
    )
    return train(
        model,
        method,
        train_features,
        dev_features,
        task,
        tokenizer,
        config,
        make_accelerator(config),
    )


def test_after_k_steps_frozen_parts_are_bit_identical_and_successors_changed(features):
    model = tiny_model("bert", layers=4)
    initial = copy.deepcopy(model.state_dict())
    method = TheseusMethod(
        TheseusConfig(  # the paper's recipe: every part but the successors is frozen
            successor_layers=2,
            scheduler="constant",
            replacing_rate=0.5,
            replacing_steps=2,
            recipe="paper",
        ),
        seed=0,
        train_batches=in_order(features),
    )
    result = run(model, method, features, steps=4)
    assert result.steps == 4
    layers = theseus_layers(model)
    successor_ids = {id(p) for p in layers.successor.parameters()}
    # Predecessor names map back to the original state-dict names.
    for name, parameter in model.named_parameters():
        if id(parameter) in successor_ids:
            continue
        original = name.replace("encoder.layer.predecessor.", "encoder.layer.")
        assert torch.equal(parameter, initial[original]), name
        assert parameter.grad is None
    for i, successor in enumerate(layers.successor):
        for name, parameter in successor.named_parameters():
            before = initial[f"bert.encoder.layer.{i}.{name}"]
            assert not torch.equal(parameter, before), f"successor {i} {name} did not change"


def test_log_records_rate_and_replaced_modules_each_step(features):
    model = tiny_model("bert", layers=4)
    config = TheseusConfig(successor_layers=2, replacing_rate=0.5, k=0.25)
    method = TheseusMethod(config, seed=1, train_batches=in_order(features))
    result = run(model, method, features, steps=3, logging_steps=1)
    steps = [r for r in result.history if "loss" in r]
    assert [r["replacing_rate"] for r in steps] == [0.5, 0.75, 1.0]
    assert all(0 <= r["successor_modules"] <= 2 for r in steps)
    assert steps[-1]["successor_modules"] == 2  # p = 1
    assert [r["step"] for r in result.history if "dev" in r] == [3]


def test_same_seed_gives_identical_weights_on_cpu(features):
    weights = []
    for _ in range(2):
        model = tiny_model("bert", layers=4)
        method = TheseusMethod(TheseusConfig(successor_layers=2), 3, in_order(features))
        run(model, method, features, seed=3)
        weights.append(theseus_layers(model).successor.state_dict())
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_auto_init_is_measured_before_training_and_changes_nothing_else(features):
    """`successor_init="auto"` on a predecessor whose bottom layers leave [CLS] constant
    chooses the last layer for the top successor; the run is then bit for bit the run
    that names that start (dropout on: measuring draws no random number), and its summary
    says what was measured."""
    runs = {}
    for init in ("auto", "bottom-last-top"):
        model = collapsed_bottom(layers=4, bottom=2, dropout=0.1)
        config = TheseusConfig(successor_layers=2, successor_init=init)
        method = TheseusMethod(config, seed=3, train_batches=in_order(features))
        result = run(model, method, features, steps=4, logging_steps=1, seed=3)
        runs[init] = (method, result, theseus_layers(model).successor.state_dict())
    auto, named = runs["auto"], runs["bottom-last-top"]
    assert auto[0].init.successor_init == "bottom-last-top" and named[0].init is None
    summary = auto[0].summary(None)["successor_init"]
    assert summary["bottom_cls_spread"] == 0.0 < summary["top_cls_spread"]
    assert summary["share"] == 0.0 and named[0].summary(None) == {}
    assert auto[0].settings()["successor_init"] == "auto"  # what a resume must match
    assert [r.get("loss") for r in auto[1].history] == [r.get("loss") for r in named[1].history]
    for name, value in auto[2].items():
        assert torch.equal(value, named[2][name]), name


def test_finetune_trains_every_parameter_and_keeps_the_best_dev_checkpoint(features):
    model = tiny_model("bert", layers=2)
    initial = copy.deepcopy(model.state_dict())
    result = run(model, Method(), features, steps=6, eval_steps=2)
    dev_steps = [r["step"] for r in result.history if "dev" in r]
    assert dev_steps == [2, 4, 6]
    scores = {r["step"]: r["dev"]["dev"]["score"] for r in result.history if "dev" in r}
    assert result.best_step == max(scores, key=lambda s: (scores[s], -s))
    changed = [n for n, p in model.state_dict().items() if not torch.equal(p, initial[n])]
    assert "bert.embeddings.word_embeddings.weight" in changed and "classifier.weight" in changed


def test_a_bf16_run_hands_back_a_model_that_computes_in_fp32(features):
    """Accelerate wraps the model's forward in bf16 autocast for training; the trained model
    handed back computes as the same weights loaded afresh do (a target report timed the
    student in bf16 beside an fp32 predecessor while that wrapper stayed on)."""
    from tiny import tiny_batch

    tokenizer, task, train_features, dev_features = features
    model = tiny_model("bert", layers=2)
    config = TrainingConfig(max_steps=2, batch_size=8, learning_rate=1e-3,
                            mixed_precision="bf16", device="cpu")  # fmt: skip
    train(model, Method(), train_features, dev_features, task, tokenizer, config,
          make_accelerator(config))  # fmt: skip
    fresh = tiny_model("bert", layers=2)
    fresh.load_state_dict(model.state_dict())
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(**tiny_batch()).logits, fresh(**tiny_batch()).logits)


def test_runs_with_different_precisions_share_one_process():
    # Accelerate keeps one global state; a second run asking for another precision must work.
    first = make_accelerator(TrainingConfig(mixed_precision="no", device="cpu"))
    assert first.mixed_precision == "no"
    second = make_accelerator(TrainingConfig(mixed_precision="bf16", device="cpu"))
    assert second.mixed_precision == "bf16"


def test_finetune_with_a_new_head_is_reproducible(tiny_bert_dir, tmp_path):
    # The new classifier is drawn while loading; without seeding first it differs per run.
    from bert_theseus.cli import main

    rows = "text\tlabel\nw1 good\ta\nw2 bad\tb\nw3\tc\n"  # 3 labels: a new head
    (tmp_path / "train.tsv").write_text(rows)
    weights = []
    for run in ("one", "two"):
        torch.manual_seed(len(run) * 1000 + len(weights))  # disturb the global generator
        assert (
            main(
                [
                    "finetune",
                    "--model",
                    str(tiny_bert_dir),
                    "--train-file",
                    str(tmp_path / "train.tsv"),
                    "--dev-file",
                    str(tmp_path / "train.tsv"),
                    "--text-columns",
                    "text",
                    "--output",
                    str(tmp_path / run),
                    "--max-steps",
                    "2",
                    "--mixed-precision",
                    "no",
                ]
            )
            == 0
        )
        weights.append(load_file(tmp_path / run / "model.safetensors"))
    assert weights[0]["classifier.weight"].shape == (3, 32)
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


def test_the_optimizer_is_fused_adamw_and_its_checkpoint_says_so(features, tmp_path):
    """The Trainer's update rule: one fused AdamW kernel over every parameter, recorded in
    the checkpoint, so a resume brings the same rule back."""
    tokenizer, task, train_features, dev_features = features
    config = TrainingConfig(max_steps=4, batch_size=8, save_steps=2, device="cpu")
    model = tiny_model("bert", layers=2)
    train(model, Method(), train_features, dev_features, task, tokenizer, config,
          make_accelerator(config), run_dir=tmp_path)  # fmt: skip
    saved = sorted(tmp_path.glob("checkpoints/*/optimizer.pt"))
    assert saved, "no checkpoint written"
    groups = torch.load(saved[-1], weights_only=True)["param_groups"]
    assert [g["fused"] for g in groups] == [True]
