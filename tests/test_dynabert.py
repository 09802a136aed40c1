"""DynaBERT: rewiring, the width- and depth-adaptive forward, its stages, extraction and grid.

Tiny models of every architecture the compact family supports (hidden 32, 4 heads of size 8,
FFN 48, 4 layers, dropout 0, all weights random; see test_compact.model_of).
"""

from __future__ import annotations

import copy
import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file
from test_compact import SUPPORTED, logits, model_of
from tiny import collapsed_bottom, tiny_batch, tiny_model
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

from bert_theseus.cli import main
from bert_theseus.compact import compact_from, layout_for
from bert_theseus.methods import MethodConfigError
from bert_theseus.methods.dynabert import (
    AdaptiveModel,
    DynaBERTConfig,
    DynaBERTMethod,
    choose_dropped_layer,
    extract,
    importance,
    kept_heads,
    kept_layers,
    rewire,
    teacher_match,
)
from bert_theseus.methods.dynabert.adaptive import cell_name, kept_neurons
from bert_theseus.methods.dynabert.depth_rule import output_spread
from bert_theseus.methods.dynabert.grid import ONE_ANSWER, write_grid
from bert_theseus.training.loop import Method, _backward_parts

CELLS = [(w, d) for d in (1.0, 0.75, 0.5) for w in (1.0, 0.75, 0.5, 0.25)]


def labelled(seeds=range(3)) -> list[dict]:
    return [{**tiny_batch(seed=s), "labels": torch.tensor([0, 1, 1])} for s in seeds]


def rewired(arch: str):
    model = model_of(arch)
    return model, rewire(model, *importance(model, labelled()))


def outputs(model, batch=None):
    with torch.no_grad():
        return model(**(batch or tiny_batch()), output_hidden_states=True)


@pytest.mark.parametrize("arch", SUPPORTED)
def test_rewiring_keeps_the_function_and_sorts_importance(arch):
    original, model = rewired(arch)
    before, after = outputs(original), outputs(model)
    torch.testing.assert_close(after.logits, before.logits, atol=1e-5, rtol=0)
    assert len(after.hidden_states) == len(before.hidden_states) == 5
    for a, b in zip(after.hidden_states, before.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    heads, neurons = importance(model, labelled())
    assert (heads[:, :-1] >= heads[:, 1:] - 1e-6).all(), heads
    assert (neurons[:, :-1] >= neurons[:, 1:] - 1e-6).all()
    first, _ = importance(original, labelled())
    assert not (first[:, :-1] >= first[:, 1:]).all(), "the test needs unsorted heads at first"
    assert all(not p.requires_grad or p.grad is None for p in original.parameters())


@pytest.mark.parametrize("arch", SUPPORTED)
def test_the_full_sub_network_is_the_unmodified_model(arch):
    original = model_of(arch)
    model = copy.deepcopy(original)
    adaptive = AdaptiveModel(model)
    with adaptive.sub_network(1.0, 1.0):
        full = outputs(model)
    assert torch.equal(full.logits, outputs(original).logits)
    with adaptive.sub_network(0.5, 0.5):
        assert not torch.allclose(logits(model), full.logits, atol=1e-3)
    assert torch.equal(logits(model), full.logits), "leaving the block restores the full model"
    adaptive.remove()
    assert {type(m) for m in model.modules()} == {type(m) for m in original.modules()}


def test_sizes_layers_and_teacher_matches_follow_the_spec():
    # BERT-base: 12 heads, FFN 3072, 12 layers (../shared/methods/dynabert.md, (b) and (d)).
    assert [kept_heads(w, 12) for w in (1.0, 0.75, 0.5, 0.25)] == [12, 9, 6, 3]
    assert [kept_neurons(w, 12, 3072) for w in (1.0, 0.75, 0.5, 0.25)] == [3072, 2304, 1536, 768]
    assert kept_layers(1.0, 12) == list(range(12))
    assert kept_layers(0.75, 12) == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert kept_layers(0.5, 12) == [0, 2, 4, 6, 8, 10]
    assert teacher_match(0.5, 12) == [0, 2, 4, 6, 8, 10, 12]
    assert teacher_match(0.75, 12) == [0, 1, 2, 4, 5, 6, 8, 9, 10, 12]
    assert kept_layers(0.5, 6) == [0, 2, 4] and kept_layers(0.75, 6) == [0, 1, 2, 4]


def test_the_first_dropped_rule_keeps_the_top_layer_and_matches_each_output_to_its_own():
    assert kept_layers(0.5, 12, "first") == [1, 3, 5, 7, 9, 11]
    assert kept_layers(0.75, 12, "first") == [1, 2, 3, 5, 6, 7, 9, 10, 11]
    assert kept_layers(0.5, 6, "first") == [1, 3, 5]
    assert kept_layers(0.75, 6, "first") == [1, 3, 4, 5]
    assert kept_layers(1.0, 6, "first") == list(range(6))
    # A kept layer's output is matched to the teacher's output of that same layer.
    assert teacher_match(0.5, 12, "first") == [0, 2, 4, 6, 8, 10, 12]
    assert teacher_match(0.75, 6, "first") == [0, 2, 4, 5, 6]
    assert teacher_match(1.0, 6, "first") == teacher_match(1.0, 6) == list(range(7))
    for layers in (4, 6, 12, 24):
        for depth in (0.75, 0.5, 0.25):
            paper, first = kept_layers(depth, layers), kept_layers(depth, layers, "first")
            assert len(first) == len(paper) and first[-1] == layers - 1 and paper[0] == 0
            match = teacher_match(depth, layers, "first")
            assert match[0] == 0 and match[-1] == layers and match == sorted(set(match))
    with pytest.raises(MethodConfigError, match="dropped layer 'middle'"):
        kept_layers(0.5, 6, "middle")


def cls_first(seeds=range(3)) -> list[dict]:
    """Labelled batches whose first token is [CLS] (id 2), as a tokenizer makes them."""
    batches = labelled(seeds)
    for batch in batches:
        batch["input_ids"][:, 0] = 2
    return batches


def test_auto_keeps_the_top_layer_only_where_the_papers_cut_is_constant():
    batches = cls_first()  # 9 examples; [CLS] takes in the input in the top layer only
    model = collapsed_bottom(layers=4, bottom=3)
    choice = choose_dropped_layer(model, [1.0, 0.75, 0.5], iter(batches))
    assert choice.dropped_layer == "first" and choice.depth == 0.5
    assert choice.cut_spread == 0.0 < choice.full_spread and choice.share == 0.0
    assert "dropped layer auto: first" in choice.describe()
    adaptive = AdaptiveModel(model, "first")
    with adaptive.sub_network(1.0, 0.5):  # layers 1 and 3: the top one reads the input
        kept = torch.cat([logits(model, {k: v for k, v in b.items() if k != "labels"})
                          for b in batches])  # fmt: skip
    assert output_spread(kept) > 0.1 * choice.full_spread
    ordinary = model_of("bert")
    choice = choose_dropped_layer(ordinary, [1.0, 0.75, 0.5], iter(batches))
    assert choice.dropped_layer == "last" and choice.share >= 0.1
    full_depth = choose_dropped_layer(ordinary, [1.0], iter(batches))
    assert full_depth.dropped_layer == "last" and full_depth.share == 1.0  # nothing measured


def test_the_width_depth_stage_resolves_auto_and_the_finetune_stage_keeps_it():
    from bert_theseus.methods import MethodContext, MethodError
    from bert_theseus.methods.dynabert import DynaBERTConfig, build

    config = DynaBERTConfig(widths=[1.0, 0.5], depths=[1.0, 0.5], dropped_layer="auto",
                            final_finetune=True)  # fmt: skip
    model = collapsed_bottom(layers=4, bottom=3)
    context = MethodContext(model, train_batches=lambda: iter(cls_first()))
    stages = build(context, config)
    student, method = stages[1].start(copy.deepcopy(model))
    assert method.dropped == "first" and method.settings()["dropped_layer"] == "first"
    student = method.finalize(student)
    assert method.summary(student)["depth_rule"]["dropped_layer"] == "first"
    assert student.config.dynabert["dropped_layer"] == "first"
    _, finetune = stages[2].start(student)
    assert finetune.dropped == "first"
    with pytest.raises(MethodError, match="--dropped-layer auto measures"):
        build(MethodContext(model), config)[1].start(copy.deepcopy(model))


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_the_depth_rule_is_trained_recorded_and_extracted(arch, tmp_path):
    _, model = rewired(arch)
    adaptive = AdaptiveModel(model, "first")
    with adaptive.sub_network(0.5, 0.5):
        expected = logits(model)
    # Depth 0.5 of 4 layers keeps layers 1 and 3: the same as the model cut to those two.
    cut = compact_from(model, layers=[1, 3])
    with adaptive.sub_network(1.0, 0.5):
        torch.testing.assert_close(logits(model), logits(cut), atol=1e-5, rtol=0)
    # The method trains it: at depth 0.75 (layers 1, 2, 3) each output is matched to the same
    # layer's output in the teacher, [0, 2, 3, 4]; the paper's rule would give [0, 1, 2, 4].
    teacher = copy.deepcopy(model)
    method = DynaBERTMethod(
        model, [(1.0, 0.75)], teacher=teacher, hidden_weight=1.0, logit_weight=0.0, dropped="first"
    )
    (loss,) = method.losses(model, labelled([4])[0])
    with adaptive.sub_network(1.0, 0.75):
        student = outputs(model, tiny_batch(seed=4)).hidden_states
    target = outputs(teacher, tiny_batch(seed=4)).hidden_states
    expected_loss = sum(
        torch.nn.functional.mse_loss(student[j], target[t]) for j, t in enumerate([0, 2, 3, 4])
    )
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5) and loss.item() > 1e-3
    method.finalize(model)
    assert model.config.dynabert["dropped_layer"] == "first"
    assert method.settings()["dropped_layer"] == "first"
    model.save_pretrained(tmp_path / "dynabert")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "dynabert")
    small = extract(reloaded, 0.5, 0.5)  # the rule comes from the saved config
    assert small.config.num_hidden_layers == 2
    torch.testing.assert_close(logits(small), expected, atol=1e-5, rtol=0)
    paper = extract(reloaded, 0.5, 0.5, "last")
    assert not torch.allclose(logits(paper), expected, atol=1e-3)


@pytest.mark.parametrize("arch", ["bert", "mpnet", "distilbert"])
def test_a_narrow_sub_network_computes_only_its_kept_rows(arch):
    model = model_of(arch)
    adaptive = AdaptiveModel(model)
    layout = layout_for(arch)
    seen = []
    for layer in model.base_model.get_submodule(layout.layers):
        for path in (layout.query, layout.ffn_in):
            layer.get_submodule(path).register_forward_hook(
                lambda module, args, out, path=path: seen.append((path, out.shape[-1]))
            )
    with adaptive.sub_network(0.25, 0.5):
        states = outputs(model).hidden_states
    # 1 head of 4 (8 of 32 rows) and int(1/4 * 48) = 12 neurons, in 2 of 4 layers.
    assert seen == [(layout.query, 8), (layout.ffn_in, 12)] * 2
    assert len(states) == 3


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_a_backward_of_the_narrowest_width_reaches_only_the_kept_weights(arch):
    model = model_of(arch).train()
    adaptive = AdaptiveModel(model)
    batch = labelled([0])[0]
    with adaptive.sub_network(0.25, 1.0):
        loss = model(**batch).loss
    loss.backward()
    layout = layout_for(arch)
    for layer in model.base_model.get_submodule(layout.layers):
        query = layer.get_submodule(layout.query)
        output = layer.get_submodule(layout.attention_output)
        inner, outer = layer.get_submodule(layout.ffn_in), layer.get_submodule(layout.ffn_out)
        assert query.weight.grad[8:].abs().max() == 0 and query.bias.grad[8:].abs().max() == 0
        assert output.weight.grad[:, 8:].abs().max() == 0
        assert (
            inner.weight.grad[12:].abs().max() == 0 and outer.weight.grad[:, 12:].abs().max() == 0
        )
        assert query.weight.grad[:8].abs().max() > 0 and inner.weight.grad[:12].abs().max() > 0
        assert outer.weight.grad[:, :12].abs().max() > 0


def test_parameter_counts_per_cell_match_the_spec_for_bert_base():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2))
    classifier = sum(p.numel() for p in model.classifier.parameters())
    expected = {  # millions, embeddings and pooler included, classifier excluded (spec (b))
        (1.0, 1.0): 109.5,
        (0.75, 1.0): 88.2,
        (1.0, 0.75): 88.2,
        (0.5, 1.0): 67.0,
        (1.0, 0.5): 67.0,
        (0.5, 0.5): 45.7,
        (0.25, 1.0): 45.7,
        (0.25, 0.5): 35.1,
    }
    for (width, depth), millions in expected.items():
        small = extract(model, width, depth)
        count = sum(p.numel() for p in small.parameters()) - classifier
        assert round(count / 1e6, 1) == millions, (width, depth, count)


@pytest.mark.parametrize("arch", SUPPORTED)
def test_extracted_models_compute_their_sub_network_and_reload(arch, tmp_path):
    _, model = rewired(arch)
    adaptive = AdaptiveModel(model)
    for width, depth in CELLS:
        with adaptive.sub_network(width, depth):
            expected = logits(model)
        small = extract(model, width, depth)
        assert small.config.num_hidden_layers == len(kept_layers(depth, 4))
        torch.testing.assert_close(logits(small), expected, atol=1e-5, rtol=0)
    small.save_pretrained(tmp_path / "small")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "small")
    torch.testing.assert_close(logits(reloaded), expected, atol=1e-5, rtol=0)


def test_an_extracted_full_width_mpnet_is_the_stock_class_in_the_predecessor_s_head_order():
    """A rewired MPNet keeps each layer's importance order (narrow cells take the first
    heads); one size cut out has no use for it, and in MPNet's order no layer gathers its
    own copy of the shared position bias."""
    original, model = rewired("mpnet")
    orders = model.config.layer_head_indices
    assert any(order != sorted(order) for order in orders)  # else this proves nothing
    whole = extract(model, 1.0, 0.5)
    assert type(whole) is type(original)
    with AdaptiveModel(model).sub_network(1.0, 0.5):
        expected = logits(model)
    torch.testing.assert_close(logits(whole), expected, atol=1e-5, rtol=0)
    half = extract(model, 0.5, 1.0)
    assert half.config.layer_head_indices == [sorted(order[:2]) for order in orders]


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_the_distillation_loss_is_zero_where_each_stage_starts(arch):
    original, student = rewired(arch)
    batch = labelled([4])[0]
    width_stage = DynaBERTMethod(
        student, [(1.0, 1.0), (0.5, 1.0)], teacher=original, hidden_weight=0.1
    )
    full, narrow = [part.item() for part in width_stage.losses(student, batch)]
    assert abs(full) < 1e-6 and narrow > 1e-3
    # The width-and-depth stage: the teacher is a copy at the student's own width.
    depth_stage = DynaBERTMethod(
        student, CELLS, teacher=copy.deepcopy(student), hidden_weight=1.0, same_width_teacher=True
    )
    parts = dict(zip(CELLS, (p.item() for p in depth_stage.losses(student, batch)), strict=True))
    assert all(abs(parts[(w, 1.0)]) < 1e-6 for w in (1.0, 0.75, 0.5, 0.25)), parts
    assert all(parts[(w, d)] > 1e-3 for w, d in CELLS if d < 1.0)
    full_teacher = DynaBERTMethod(student, CELLS, teacher=copy.deepcopy(student), hidden_weight=1.0)
    assert next(full_teacher.losses(student, batch)).item() < 1e-6


def test_regression_distils_the_output_unless_output_mse_is_0():
    teacher = tiny_model("bert", num_labels=1)
    student = copy.deepcopy(teacher)
    with torch.no_grad():  # move only the head's output: the hidden states stay the teacher's
        student.classifier.bias.add_(0.5)
    batch = {**tiny_batch(), "labels": torch.tensor([0.5, 2.0, 4.5])}
    cells = [(1.0, 1.0)]

    def loss(**settings) -> float:
        method = DynaBERTMethod(student, cells, teacher=teacher, regression=True, **settings)
        return next(method.losses(student, batch)).item()

    # The official code (--output-mse 0): no output term for regression, only hidden states.
    assert loss(hidden_weight=1.0, output_mse=0.0) < 1e-10
    # The default adds the MSE between the outputs at weight 1: here the bias shift squared.
    assert loss(hidden_weight=1.0) == pytest.approx(0.25, rel=1e-5)
    assert loss(hidden_weight=1.0, output_mse=2.0) == pytest.approx(2.0 * 0.25, rel=1e-5)
    assert DynaBERTConfig().output_mse == 1.0


class Accelerator:  # what _backward_parts uses of accelerate's
    num_processes = 1

    def autocast(self):
        return torch.autocast("cpu", enabled=False)

    def backward(self, loss):
        loss.backward()


def test_the_parts_of_a_step_add_up_to_one_gradient():
    class TwoParts(Method):
        def losses(self, model, batch):  # two forward passes, as two sub-networks make
            yield model(**batch).loss
            yield 3.0 * model(**batch).logits.pow(2).mean()

    model = model_of("bert").train()
    batch = labelled([0])[0]
    total, backed = _backward_parts(TwoParts(), model, batch, Accelerator())
    parts = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    out = model(**batch)
    (out.loss + 3.0 * out.logits.pow(2).mean()).backward()
    assert backed and total.item() == pytest.approx(
        (out.loss + 3.0 * out.logits.pow(2).mean()).item()
    )
    for a, p in zip(parts, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5)


SANDWICH = ["--subnetworks", "sandwich", "--sampled", "1"]


def sandwich(seed: int, sampled: int = 2, cells=CELLS, stage="dynabert"):
    return DynaBERTConfig(subnetworks="sandwich", sampled=sampled).sampler(cells, seed, stage)


def test_sandwich_steps_train_the_largest_the_smallest_and_k_drawn_by_seed_and_step():
    draws = [sandwich(42).step_cells(step) for step in range(200)]
    for cells in draws:
        assert len(cells) == 4 and cells[0] == (1.0, 1.0) and cells[-1] == (0.25, 0.5)
        assert cells == [c for c in CELLS if c in cells]  # in the order 'all' trains them
    drawn = Counter(c for cells in draws for c in cells[1:-1])
    assert set(drawn) == set(CELLS) - {(1.0, 1.0), (0.25, 0.5)}
    assert min(drawn.values()) >= 20, drawn  # 40 expected of each of the 10 others
    assert len({tuple(cells) for cells in draws}) > 30  # steps draw anew
    # Another sampler (another process, or a resumed run) draws the same; another seed or
    # stage does not.
    assert [sandwich(42).step_cells(step) for step in range(200)] == draws
    assert [sandwich(43).step_cells(step) for step in range(200)] != draws
    other = sandwich(42, stage="dynabert-finetune")
    assert [other.step_cells(step) for step in range(200)] != draws
    # ... nor does another interpreter (Python salts its string hashes per process).
    code = (
        "import json; from bert_theseus.methods.dynabert import DynaBERTConfig; "
        f"s = DynaBERTConfig(subnetworks='sandwich').sampler({CELLS!r}, 42, 'dynabert'); "
        "print(json.dumps([s.step_cells(i) for i in range(20)]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert [[tuple(c) for c in cells] for cells in json.loads(done.stdout)] == draws[:20]
    assert sandwich(42, sampled=0).step_cells(5) == [(1.0, 1.0), (0.25, 0.5)]
    assert sandwich(42, sampled=10).step_cells(5) == CELLS  # no more others than there are
    width_stage = [(w, 1.0) for w in (1.0, 0.75, 0.5, 0.25)]
    assert sandwich(42, cells=width_stage).step_cells(3) == width_stage
    assert DynaBERTConfig().sampler(CELLS, 42, "dynabert").step_cells(3) == CELLS


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_a_sandwich_steps_gradient_is_the_sum_of_its_sub_networks_gradients(arch):
    base, batch = model_of(arch).train(), labelled([0])[0]
    chosen = sandwich(5, sampled=1).step_cells(7)
    assert len(chosen) == 3

    def gradients(cells, sampler=None, step=0):
        student, teacher = copy.deepcopy(base), copy.deepcopy(base)
        with torch.no_grad():  # a student that differs from its teacher
            for parameter in student.parameters():
                parameter.add_(0.01 * torch.randn(parameter.shape, generator=noise()))
        method = DynaBERTMethod(student, cells, teacher=teacher, hidden_weight=1.0,
                                same_width_teacher=True, sampler=sampler)  # fmt: skip
        method.before_step(student, step)
        _backward_parts(method, student, batch, Accelerator())
        # A narrow cell's backward reaches only its kept weights: no gradient elsewhere.
        return method, [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                        for p in student.parameters()]  # fmt: skip

    def noise():
        return torch.Generator().manual_seed(3)

    method, step = gradients(CELLS, sandwich(5, sampled=1), step=7)
    assert list(method.last) == [f"loss@{cell_name(w, d)}" for w, d in chosen]
    by_cell = [gradients([cell])[1] for cell in chosen]
    for got, *parts in zip(step, *by_cell, strict=True):
        torch.testing.assert_close(got, sum(parts), atol=1e-6, rtol=1e-5)
    # The full sub-network's part alone differs: the narrow cells added to it.
    assert any(not torch.allclose(a, b) for a, b in zip(step, by_cell[0], strict=True))


def test_a_sandwich_run_trains_the_drawn_cells_and_scores_them_all(
    dropout_bert_dir, sst2_dir, tmp_path
):
    out = tmp_path / "sandwich"
    args = [*SMALL, "--widths", "1.0", "0.5", "0.25", *SANDWICH, "--max-steps", "16"]
    args += ["--eval-steps", "8", "--logging-steps", "1", "--dropped-layer", "last"]
    assert main(compress(dropout_bert_dir, sst2_dir, out, *args)) == 0
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    trained = [sorted(k for k in line if k.startswith("loss@")) for line in lines if "loss" in line]
    config = DynaBERTConfig(widths=[1.0, 0.5, 0.25], depths=[1.0, 0.5])
    width_cells, all_cells = config.cells(depth=False), config.cells()
    expected = [  # 8 steps of each stage; the loop's step count starts at 0 in each
        *(sandwich(7, 1, width_cells, "dynabert-width").step_cells(s) for s in range(8)),
        *(sandwich(7, 1, all_cells, "dynabert").step_cells(s) for s in range(8)),
    ]
    assert trained == [sorted(f"loss@{cell_name(w, d)}" for w, d in c) for c in expected]
    assert all(len(cells) == 3 for cells in expected)
    assert len({tuple(cells) for cells in expected[8:]}) > 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert {f"dev@{cell_name(w, d)}" for w, d in all_cells} <= set(metrics["dev"])
    settings = json.loads((out / "run_config.json").read_text())
    assert "sandwich" in json.dumps(settings)


FAST = ["--batch-size", "8", "--learning-rate", "1e-3", "--mixed-precision", "no", "--seed", "7"]
SMALL = ["--widths", "1.0", "0.5", "--depths", "1.0", "0.5"]


def compress(predecessor, data, output, *extra) -> list[str]:
    return [
        "compress", "--model", str(predecessor), "--task", "sst2", "--data-dir", str(data),
        "--output", str(output), "--method", "dynabert", *FAST, *extra,
    ]  # fmt: skip


def test_the_grid_marks_cells_that_give_one_answer(tmp_path):
    rows = [
        {"width": w, "depth": d, "layers": "0 1", "score": score, "retention_percent": 90.0,
         "parameters": 1e6, "latency_ms": 1.0, "speedup": 2.0, "one_answer": one}
        for w, d, score, one in ((1.0, 1.0, 0.6, False), (0.5, 0.5, 0.5271, True))
    ]  # fmt: skip
    write_grid(tmp_path, rows, "fp32", "rte")
    lines = (tmp_path / "grid.md").read_text().splitlines()
    marked = [line for line in lines if line.startswith("| ") and ONE_ANSWER in line]
    assert marked == [
        "| 0.5 | 0.5 | 0 1 | 0.5271 | 90.0% | 1.0M | 1.0 | 2.00x | " + ONE_ANSWER + " |"
    ]
    table = list(csv.DictReader((tmp_path / "grid.csv").open()))
    assert [row["one_answer"] for row in table] == ["False", "True"]


def test_compress_writes_the_grid_and_extract_and_export_accept_a_cell(
    dropout_bert_dir, sst2_dir, tmp_path, capsys
):
    out = tmp_path / "dynabert"
    args = [*SMALL, "--max-steps", "6", "--eval-steps", "3"]
    assert main(compress(dropout_bert_dir, sst2_dir, out, *args)) == 0
    assert "4 sub-networks (dev score above: their mean)" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["width", "width-depth"]
    assert set(metrics["stages"][0]["dev"]) == {"dev", "dev@w1-d1", "dev@w0.5-d1"}
    cells = {(r["width"], r["depth"]): r for r in metrics["grid"]}
    assert list(cells) == [(1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.5, 0.5)]
    constant = metrics.get("constant_views_at_best", [])
    for (w, d), row in cells.items():
        assert row["score"] == round(metrics["dev"][f"dev@w{w:g}-d{d:g}"]["score"], 4)
        assert row["one_answer"] == (f"dev@w{w:g}-d{d:g}" in constant)
    assert cells[(1.0, 1.0)]["parameters"] == metrics["parameters"]
    assert cells[(0.5, 0.5)]["parameters"] < cells[(0.5, 1.0)]["parameters"] < metrics["parameters"]
    mean = sum(metrics["dev"][f"dev@w{w:g}-d{d:g}"]["score"] for w, d in cells) / 4
    assert metrics["dev"]["dev"]["score"] == pytest.approx(mean)  # selection: the mean of cells
    assert (out / "grid.png").is_file() and (out / "grid.csv").read_text().count("\n") == 5
    grid_md = (out / "grid.md").read_text()
    assert "| 0.5 | 0.5 | 0 2 |" in grid_md and "fp32, median of 5, interleaved" in grid_md
    assert cells[(1.0, 1.0)]["layers"] == "0 1 2 3" and cells[(1.0, 0.5)]["layers"] == "0 2"
    config = json.loads((out / "config.json").read_text())
    trained = {"widths": [1.0, 0.5], "depths": [1.0, 0.5], "dropped_layer": "last"}
    assert config["dynabert"] == trained
    card = (out / "README.md").read_text()
    assert "This model holds 4 sub-networks" in card and "| 0.5 | 0.5 |" in card
    assert "dev@" not in card.split("---")[1], "views are not dataset splits in model-index"

    small = tmp_path / "small"
    assert (
        main(["extract", str(out), "--width", "0.5", "--depth", "0.5", "--output", str(small)]) == 0
    )
    info = json.loads((small / "extract.json").read_text())
    assert info["parameters"] == cells[(0.5, 0.5)]["parameters"] and info["layers"] == 2
    assert info["kept_layers"] == [0, 2]
    assert info["dev"]["dev"] == metrics["dev"]["dev@w0.5-d0.5"]
    assert "dynabert" not in json.loads((small / "config.json").read_text())
    full = AutoModelForSequenceClassification.from_pretrained(out)
    adaptive = AdaptiveModel(full)
    with adaptive.sub_network(0.5, 0.5):
        expected = logits(full)
    reloaded = AutoModelForSequenceClassification.from_pretrained(small)
    torch.testing.assert_close(logits(reloaded), expected, atol=1e-5, rtol=0)
    onnx = tmp_path / "onnx"
    assert main(["export", str(small), "--onnx", "--int8", "--output", str(onnx)]) == 0
    assert json.loads((onnx / "export.json").read_text())["fp32"]["max_abs_logit_diff"] < 1e-4

    capsys.readouterr()
    untrained = [
        "extract",
        str(out),
        "--width",
        "0.25",
        "--depth",
        "1",
        "--output",
        str(tmp_path / "x"),
    ]
    assert main(untrained) == 2
    error = capsys.readouterr().err
    assert "width 0.25, depth 1 was not trained" in error and "\n" not in error.strip()
    assert main(["extract", str(dropout_bert_dir), "--width", "0.5", "--depth", "1",
                 "--output", str(tmp_path / "y")]) == 2  # fmt: skip
    assert "is not a DynaBERT model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _steps(folder) -> list[int]:
    return [int(p.name.split("-")[1]) for p in folder.glob("checkpoints/step-???????")]


@pytest.mark.parametrize("sampling", [[], SANDWICH], ids=["all", "sandwich"])
def test_a_run_killed_in_the_second_stage_resumes_bit_identically(
    sampling, dropout_bert_dir, sst2_dir, tmp_path
):
    # --max-steps is the run's: 40 steps for each of the two stages.
    args = [*SMALL, *sampling, "--max-steps", "80", "--eval-steps", "20", "--save-steps", "2"]
    straight = tmp_path / "straight"
    assert main(compress(dropout_bert_dir, sst2_dir, straight, *args)) == 0
    out = tmp_path / "killed"
    second = tmp_path / ".killed.partial" / "stages" / "2-width-depth"
    after = random.randint(2, 20)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "bert_theseus.cli",
        *compress(dropout_bert_dir, sst2_dir, out, *args),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while (
        time.time() < deadline and process.poll() is None and max(_steps(second), default=0) < after
    ):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == -9, err.decode()[-800:]
    assert not out.exists() and (second.parent / "1-width" / "result.json").is_file()
    assert main([*compress(dropout_bert_dir, sst2_dir, out, *args), "--resume", "auto"]) == 0
    a, b = load_file(straight / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def log(folder):
        lines = (folder / "train_log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in lines]

    assert log(straight) == log(out)


def test_compare_gives_each_sub_network_its_own_row(dropout_bert_dir, sst2_dir, tmp_path):
    out = tmp_path / "compare"
    args = ["compare", "--model", str(dropout_bert_dir), "--task", "sst2", "--data-dir"]
    args += [str(sst2_dir), "--output", str(out), "--methods", "truncated", "dynabert", *SMALL]
    args += ["--successor-layers", "2", "--max-steps", "4", "--speed-batch-size", "2"]
    assert main([*args, "--speed-length", "8", *FAST]) == 0
    with (out / "results.csv").open() as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    cells = ["dynabert w1-d1", "dynabert w0.5-d1", "dynabert w1-d0.5", "dynabert w0.5-d0.5"]
    assert list(rows) == ["predecessor", "truncated", *cells]
    (folder,) = (out / "runs").glob("dynabert-seed*")
    metrics = json.loads((folder / "metrics.json").read_text())
    for cell in cells:
        view = cell.split(" ")[1]
        assert float(rows[cell]["score_mean"]) == round(metrics["dev"][f"dev@{view}"]["score"], 4)
    assert rows["dynabert w1-d0.5"]["layers"] == "2" and rows["dynabert w1-d1"]["layers"] == "4"
    assert int(rows["dynabert w0.5-d0.5"]["parameters"]) < int(rows["truncated"]["parameters"])
    assert (out / "pareto.png").is_file()


def test_settings_and_predecessors_that_cannot_be_sliced_are_refused():
    from bert_theseus.compact import compact_from
    from bert_theseus.methods import MethodConfigError, MethodContext
    from bert_theseus.methods.dynabert import DynaBERTConfig

    model = model_of("bert")
    DynaBERTConfig().check(MethodContext(model))
    cut = compact_from(model, heads=[[0, 1, 2]] * 4)  # 3 of 4 heads in every layer
    with pytest.raises(MethodConfigError, match="layers are cut"):
        DynaBERTConfig().check(MethodContext(cut))
    with pytest.raises(MethodConfigError, match="keeps no attention head"):
        DynaBERTConfig(widths=[1.0, 0.1]).check(MethodContext(model))
    for bad, match in [
        ({"widths": [0.5]}, "must include 1.0"),
        ({"depths": [1.0, 0.0]}, r"multipliers in \(0, 1\]"),
        ({"teacher_width": "half"}, "teacher_width"),
        ({"widths": [1.0, 0.5, 0.5]}, "twice"),
        ({"dropped_layer": "top"}, "dropped_layer 'top' is not one of auto, last, first"),
    ]:
        with pytest.raises(MethodConfigError, match=match):
            DynaBERTConfig(**bad).validate()
    with pytest.raises(MethodConfigError, match="cannot slice"):
        DynaBERTConfig().check(MethodContext(model_of("deberta-v2")))


def test_sub_networks_that_answer_one_thing_are_named_without_flagging_the_model():
    from bert_theseus.training.loop import _note_constant, _State

    class Progress:
        def __init__(self):
            self.lines = []

        def warn(self, line):
            self.lines.append(line)

    dev = {"dev": {}, "dev@w1-d1": {}, "dev@w0.5-d1": {}}
    state, progress = _State(), Progress()
    _note_constant(state, progress, 10, dev, {"dev@w0.5-d1": "answers 'a'"})
    assert state.constant_steps == [] and state.constant_views == [[10, ["dev@w0.5-d1"]]]
    assert "1 of 2 sub-networks give one answer for every example (w0.5-d1)" in progress.lines[0]
    _note_constant(state, progress, 20, dev, {"dev@w1-d1": "x", "dev@w0.5-d1": "x"})
    assert state.constant_steps == [20], "every view constant: the model is"
    _note_constant(state, progress, 30, {"dev": {}}, {"dev": "answers 'a'"})
    assert state.constant_steps == [20, 30] and len(state.constant_views) == 2


def test_a_resume_that_rewires_in_another_order_is_refused():
    from bert_theseus.methods.dynabert.importance import rewiring_digest

    heads, neurons = importance(model_of("mpnet"), labelled())
    swapped = heads.clone()
    swapped[0, [0, 1]] = heads[0, [1, 0]] + torch.tensor([1e-3, -1e-3])
    same = rewiring_digest(heads, neurons)
    assert same == rewiring_digest(heads.clone(), neurons.clone())
    assert same != rewiring_digest(swapped, neurons)
    student = rewire(model_of("mpnet"), heads, neurons)
    method = DynaBERTMethod(student, [(1.0, 1.0)], teacher=model_of("mpnet"), rewiring=same)
    assert method.settings()["rewiring"] == same  # part of what a resume must match
