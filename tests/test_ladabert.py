"""LadaBERT: SVD ranks, magnitude masks, the budget (Eq. 7), TinyBERT's losses, its stages.

Tiny models of every architecture the compact family supports (hidden 32, 4 heads of size 8,
FFN 48, 4 layers, dropout 0, all weights random; see test_compact.model_of).
"""

from __future__ import annotations

import copy
import csv
import json
import random
import signal

import pytest
import torch
from safetensors.torch import load_file
from test_compact import SUPPORTED, logits, model_of
from test_resume import interrupt
from tiny import VOCAB, tiny_batch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from bert_theseus.arch import model_type_of
from bert_theseus.cli import main
from bert_theseus.compact import LowRankLinear, factorize, layout_for
from bert_theseus.compact.layer import MOMENT_FLOOR
from bert_theseus.methods.ladabert import (
    PRESETS,
    LadaBERTConfig,
    LadaBERTMethod,
    Masks,
    budget_table,
    embedding_rank,
    encoder_ranks,
    factorised,
    input_moments,
    input_scales,
    magnitude_mask,
    prunable,
    prunable_modules,
    svd_rank,
)
from bert_theseus.methods.ladabert import build as build_ladabert
from bert_theseus.methods.registry import MethodConfigError, MethodError
from bert_theseus.methods.tinybert import AttentionScores


def test_the_rank_formula_round_trips_p_svd():
    # The spec's BERT-base ranks: P_svd 0.5 -> 192 and 307; 0.4 -> 154 and 246.
    assert [svd_rank(768, 768, 0.5), svd_rank(768, 3072, 0.5)] == [192, 307]
    assert [svd_rank(3072, 768, 0.4), svd_rank(768, 768, 0.4)] == [246, 154]
    assert svd_rank(768, 768, 1.0) is None  # factors of the same size would save nothing
    for m, n in ((32, 48), (768, 3072), (30522, 768), (7, 5)):
        for p in (0.05, 0.3, 0.5, 0.9):
            r = svd_rank(m, n, p)
            # r is rounded, so the kept fraction is within half a rank of P_svd.
            assert abs((m + n) * r / (m * n) - p) <= (m + n) / (2 * m * n) or r == 1


def test_a_truncated_svd_loses_exactly_the_dropped_singular_values():
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 40)
    weight = linear.weight.detach()
    sigma = torch.linalg.svdvals(weight)
    for rank in (24, 10, 3):
        low = LowRankLinear.from_linear(linear, rank)
        product = (low.up.weight @ low.down.weight).detach()  # A Bᵀ, shape out x in
        error = (weight - product).pow(2).sum()
        torch.testing.assert_close(error, sigma[rank:].pow(2).sum(), atol=1e-5, rtol=1e-4)
    # The singular values are split evenly: A = U sqrt(S), B = V sqrt(S).
    low = LowRankLinear.from_linear(linear, 5)
    torch.testing.assert_close(low.up.weight.norm(dim=0), low.down.weight.norm(dim=1))


def test_an_activation_aware_svd_is_exact_at_full_rank_and_best_for_its_inputs():
    torch.manual_seed(0)
    linear = torch.nn.Linear(24, 40)
    weight = linear.weight.detach().double()
    # Inputs with a few dominant directions, as sentence-embedding models' hidden states have.
    inputs = torch.randn(500, 24, dtype=torch.float64) * torch.logspace(1, -2, 24).double()
    moments = inputs.T @ inputs / len(inputs)
    full = LowRankLinear.from_linear(linear, 24, moments)
    torch.testing.assert_close((full.up.weight @ full.down.weight).detach().double(), weight,
                               atol=1e-5, rtol=1e-5)  # fmt: skip
    # What it minimises: the output error on these inputs plus the floor's weight error
    # (MOMENT_FLOOR x the mean eigenvalue): the dropped singular values of W (C + floor)^½.
    values, vectors = torch.linalg.eigh(moments)
    floor = MOMENT_FLOOR * values.mean()
    root = (vectors * (values + floor).sqrt()) @ vectors.T
    sigma = torch.linalg.svdvals(weight @ root)
    for rank in (10, 3):
        aware = LowRankLinear.from_linear(linear, rank, moments)
        plain = LowRankLinear.from_linear(linear, rank)
        errors = {}
        for name, low in (("aware", aware), ("plain", plain)):
            delta = weight - (low.up.weight @ low.down.weight).detach().double()
            output = (inputs @ delta.T).pow(2).sum(1).mean()
            errors[name] = output, output + floor * delta.pow(2).sum()
        torch.testing.assert_close(errors["aware"][1], sigma[rank:].pow(2).sum(), rtol=1e-4,
                                   atol=1e-6)  # fmt: skip
        assert errors["aware"][1] <= errors["plain"][1]
        # On inputs this uneven, the outputs' error is several times smaller.
        assert errors["aware"][0] * 3 < errors["plain"][0], (rank, errors)
    # Isotropic inputs: the plain SVD's product.
    eye = LowRankLinear.from_linear(linear, 5, torch.eye(24, dtype=torch.float64))
    low = LowRankLinear.from_linear(linear, 5)
    torch.testing.assert_close(eye.up.weight @ eye.down.weight, low.up.weight @ low.down.weight,
                               atol=1e-5, rtol=1e-4)  # fmt: skip


def test_input_moments_count_real_tokens_of_the_first_examples_only():
    model = model_of("bert")
    batch = tiny_batch(batch=3, length=9)  # row 0 ends in 3 padding tokens
    paths = [{"attention.self.query": 4, "output.dense": 4}] + [{}] * 3
    moments = input_moments(model, [batch], paths, examples=2)
    # The same two examples one at a time, their padding cut off: the same moments.
    alone = [{k: v[i : i + 1, : 6 if i == 0 else 9] for k, v in batch.items()} for i in (0, 1)]
    expected = input_moments(model, alone, paths, examples=2)
    for path in paths[0]:
        size = (
            model.config.intermediate_size if path == "output.dense" else model.config.hidden_size
        )
        assert moments[0][path].shape == (size, size)
        torch.testing.assert_close(moments[0][path], expected[0][path], atol=1e-6, rtol=1e-5)
    assert moments[1:] == [{}] * 3
    # The third example changes them.
    three = input_moments(model, [batch], paths, examples=3)
    assert not torch.allclose(three[0]["output.dense"], moments[0]["output.dense"])
    # A feed-forward run in chunks of the sequence cannot be matched to the token mask.
    for layer in model.bert.encoder.layer:
        layer.chunk_size_feed_forward = 3
    with pytest.raises(MethodError, match="layer 0 'output.dense' .* use --svd weight"):
        input_moments(model, [batch], paths, examples=3)


def test_the_activation_aware_start_is_checked_and_needs_training_data():
    with pytest.raises(MethodConfigError, match="svd 'frobenius'"):
        LadaBERTConfig(svd="frobenius").validate()
    with pytest.raises(MethodConfigError, match="pruning 'movement'"):
        LadaBERTConfig(pruning="movement").validate()
    with pytest.raises(MethodConfigError):
        LadaBERTConfig(calibration_examples=0).validate()
    config = LadaBERTConfig(preset="ladabert-1", svd="activation")
    with pytest.raises(MethodError, match="training data"):
        factorised(model_of("bert"), config)


@pytest.mark.parametrize("arch", SUPPORTED)
def test_the_activation_aware_start_fits_each_matrix_to_its_own_inputs(arch):
    original = model_of(arch)
    config = LadaBERTConfig(preset="ladabert-1", svd="activation", calibration_examples=3)
    batches = [{**tiny_batch(seed=s), "labels": torch.tensor([0, 1, 1])} for s in (1, 2)]
    aware = factorised(original, config, lambda: iter(batches))
    plain = factorised(original, LadaBERTConfig(preset="ladabert-1", svd="weight"))
    assert aware.config.layer_ranks == plain.config.layer_ranks
    assert aware.config.embedding_rank == plain.config.embedding_rank
    # The first example batch is the calibration (3 examples): on the inputs the
    # predecessor's first and last layers' matrices saw there, the fitted factors' outputs
    # are closer to the predecessor's than the weights' SVD's.
    layout = layout_for(model_type_of(original.config))
    real = batches[0]["attention_mask"].bool()
    for index, path in ((0, layout.linears()[0]), (-1, layout.linears()[-1])):
        linears = {
            name: m.base_model.get_submodule(layout.layers)[index].get_submodule(path)
            for name, m in (("original", original), ("aware", aware), ("plain", plain))
        }
        seen = []
        hook = linears["original"].register_forward_pre_hook(
            lambda m, a, seen=seen: seen.append(a[0])
        )
        with torch.no_grad():
            original(**{k: v for k, v in batches[0].items() if k != "labels"})
            hook.remove()
            x = seen[0][real]
            target = linears["original"](x)
            error = {n: float((linears[n](x) - target).pow(2).mean()) for n in ("aware", "plain")}
        assert error["aware"] < error["plain"], (index, path, error)


def test_a_mask_keeps_exactly_the_target_fraction_of_the_largest_entries():
    torch.manual_seed(0)
    weight = torch.randn(17, 23)
    for keep in (1.0, 0.64, 0.3, 0.05):
        mask = magnitude_mask(weight, keep)
        kept = round(keep * weight.numel())
        assert int(mask.sum()) == kept
        smallest_kept = weight.abs()[mask].min()
        assert kept == weight.numel() or weight.abs()[~mask].max() <= smallest_kept
    # Pruning again at a lower fraction keeps a subset: pruned entries are the smallest.
    pruned = weight * magnitude_mask(weight, 0.5)
    assert not (magnitude_mask(pruned, 0.3) & (pruned == 0)).any()


def test_an_input_aware_mask_drops_what_adds_least_to_the_output():
    torch.manual_seed(0)
    weight = torch.randn(17, 23)
    scale = torch.randn(23).mul(2).exp()  # input features of very different sizes

    def dropped(mask):  # E|(W - W*M) x|^2 for independent features of these scales
        return float(((weight * scale) ** 2)[~mask].sum())

    for keep in (0.64, 0.3, 0.05):
        aware, plain = magnitude_mask(weight, keep, scale), magnitude_mask(weight, keep)
        assert int(aware.sum()) == int(plain.sum()) == round(keep * weight.numel())
        score = weight.abs() * scale
        assert score[~aware].max() <= score[aware].min()
        # The least output lost of any mask of its size; the paper's |w| loses more here.
        assert dropped(aware) < dropped(plain)
        for _ in range(5):
            shuffled = aware.flatten()[torch.randperm(aware.numel())].view_as(aware)
            assert dropped(aware) <= dropped(shuffled)
    assert torch.equal(magnitude_mask(weight, 0.3, torch.ones(23)), magnitude_mask(weight, 0.3))
    # Pruned entries stay pruned, even beside kept ones whose input is always zero.
    pruned = weight * magnitude_mask(weight, 0.5, scale)
    dead = scale.clone()
    dead[:18] = 0.0  # leaves fewer live non-zero entries than the mask keeps
    mask = magnitude_mask(pruned, 0.3, dead)
    assert not (mask & (pruned == 0)).any()


def test_input_scales_are_the_root_of_the_moments_diagonal():
    model = model_of("bert")
    batch = tiny_batch(batch=3, length=9)
    paths = [{"attention.self.query": 4, "output.dense": 4}] + [{}] * 3
    moments = input_moments(model, [batch], paths, examples=3)
    layer = model.bert.encoder.layer[0]
    modules = {path: layer.get_submodule(path) for path in paths[0]}
    scales = input_scales(model, [batch], modules, examples=3)
    for path in paths[0]:
        torch.testing.assert_close(
            scales[path], moments[0][path].diagonal().sqrt().float(), atol=1e-6, rtol=1e-5
        )


@pytest.mark.parametrize("pruning", ["weight", "activation"])
def test_a_pruning_step_ranks_entries_as_configured(pruning):
    from bert_theseus.methods import MethodContext

    config = LadaBERTConfig(preset="ladabert-2", svd="weight", pruning=pruning,
                            calibration_examples=3, prune_iterations=2)  # fmt: skip
    original = model_of("bert")
    batches = [{**tiny_batch(seed=s), "labels": torch.tensor([0, 1, 1])} for s in (1, 2)]
    context = MethodContext(original, train_batches=lambda: iter(batches))
    stages = build_ladabert(context, config)
    assert [stage.name for stage in stages] == ["factorise", "prune-1", "prune-2", "recover"]
    student, _ = stages[0].start(original)
    keep = config.keep_schedule()[0]
    _, method = stages[1].start(student)
    scales = input_scales(student, batches, prunable_modules(student), 3)
    for name, weight in prunable(student).items():
        aware, plain = magnitude_mask(weight, keep, scales[name]), magnitude_mask(weight, keep)
        assert torch.equal(method.masks.masks[name], aware if pruning == "activation" else plain)
    weights = prunable(student).items()
    differ = [
        n
        for n, w in weights
        if not torch.equal(magnitude_mask(w, keep, scales[n]), magnitude_mask(w, keep))
    ]
    assert differ, "the test needs inputs whose scales change the ranking"
    if pruning == "activation":
        without_data = build_ladabert(MethodContext(original), config)
        with pytest.raises(MethodError, match="--pruning activation reads training inputs"):
            without_data[1].start(student)


def test_presets_are_table_2_and_settings_are_checked():
    assert LadaBERTConfig(preset="ladabert-4").kept() == pytest.approx((0.2, 0.4, 1 / 5.45))
    assert LadaBERTConfig(preset="ladabert-2", p_svd=1.0).kept()[1] == 1.0
    assert len(PRESETS) == 4
    schedule = LadaBERTConfig(preset="ladabert-2", prune_iterations=3).keep_schedule()
    ratios = [schedule[0], schedule[1] / schedule[0], schedule[2] / schedule[1]]
    assert ratios == pytest.approx([ratios[0]] * 3) and schedule[-1] == pytest.approx(1 / 3.41)
    assert LadaBERTConfig(p_weight=1.0).keep_schedule() == []
    bad = [{"preset": "ladabert-9"}, {"p_svd": 0.0}, {"p_weight": 1.5}, {"compress_share": 1.0},
           {"prune_iterations": 0}, {"hidden_weight": -1.0}]  # fmt: skip
    for values in bad:
        with pytest.raises(MethodConfigError):
            LadaBERTConfig(**values).validate()


def ladabert_student(arch: str, config: LadaBERTConfig, keep: float | None = None):
    """The predecessor and its LadaBERT student: factorised at config's ranks, pruned to `keep`."""
    original = model_of(arch)
    p_embd, p_svd, _ = config.kept()
    ranks, rank = encoder_ranks(original, p_svd), embedding_rank(original, p_embd)
    student = factorize(original, ranks, rank) if any(ranks) or rank else copy.deepcopy(original)
    masks = Masks(student, keep) if keep is not None else None
    if masks is not None:
        masks.apply()
    return original, student, masks


def method_for(student, original, config, masks=None, regression=False):
    return LadaBERTMethod(student, original, config, masks, regression, "test")


@pytest.mark.parametrize("arch", SUPPORTED)
def test_with_every_ratio_at_one_the_student_is_the_predecessor_and_every_loss_is_zero(arch):
    config = LadaBERTConfig(p_embd=1.0, p_svd=1.0, p_weight=1.0)
    original = model_of(arch)
    assert not any(encoder_ranks(original, 1.0)) and embedding_rank(original, 1.0) is None
    # The path a run takes: the factorise stage's student, then a pruning step keeping all.
    student = factorised(original, config)
    masks = Masks(student, config.kept()[2])
    masks.apply()
    assert student is not original
    method = method_for(student, original, config, masks)
    batch = {**tiny_batch(), "labels": torch.tensor([0, 1, 1])}
    method.loss(student, batch)
    assert all(abs(v.item()) < 1e-6 for v in method.last.values()), method.last
    assert set(method.last) == {"embedding", "attention", "hidden", "logits"}
    torch.testing.assert_close(logits(student), logits(original), atol=0, rtol=0)


@pytest.mark.parametrize("arch", SUPPORTED)
def test_a_compressed_student_matches_the_teacher_in_shape_and_its_losses_are_positive(arch):
    config = LadaBERTConfig(preset="ladabert-3")
    original, student, masks = ladabert_student(arch, config, keep=0.5)
    method = method_for(student, original, config, masks)
    batch = tiny_batch()
    with torch.no_grad(), method.student_scores:
        s = student(**batch, output_hidden_states=True)
    s_scores = method.student_scores.per_layer(batch["attention_mask"])
    with torch.no_grad(), method.teacher_scores:
        t = original(**batch, output_hidden_states=True)
    t_scores = method.teacher_scores.per_layer(batch["attention_mask"])
    assert [x.shape for x in s.hidden_states] == [x.shape for x in t.hidden_states]
    assert [x.shape for x in s_scores] == [x.shape for x in t_scores] == [(3, 4, 9, 9)] * 4
    assert all((x[0, :, :, -3:] == 0).all() for x in s_scores)  # padded keys zeroed
    method.loss(student, batch | {"labels": torch.tensor([0, 1, 1])})
    assert all(v.item() > 0 for v in method.last.values()), method.last
    # The recording hooks live only during the forward passes of a loss.
    layout = layout_for(arch)
    for model in (student, original):
        for layer in model.base_model.get_submodule(layout.layers):
            assert not layer.get_submodule(layout.query)._forward_hooks
    layer = student.base_model.get_submodule(layout_for(arch).layers)[0]
    assert isinstance(layer.get_submodule(layout_for(arch).ffn_in), LowRankLinear)


@pytest.mark.parametrize("arch", ["bert", "roberta", "electra", "distilbert"])
def test_recorded_scores_are_the_models_own_pre_softmax_scores(arch):
    model = model_of(arch)
    model.config._attn_implementation = "eager"  # the only one that returns attention maps
    scores = AttentionScores(model)
    batch = tiny_batch()
    with torch.no_grad(), scores:
        maps = model(**batch, output_attentions=True).attentions
    padded = batch["attention_mask"][:, None, None, :] == 0
    for score, attention in zip(scores.per_layer(batch["attention_mask"]), maps, strict=True):
        probabilities = score.masked_fill(padded, float("-inf")).softmax(-1)
        torch.testing.assert_close(probabilities, attention, atol=1e-5, rtol=0)


def test_scores_stay_fp32_under_bf16_autocast_and_regression_distils_the_output_by_mse():
    config = LadaBERTConfig(preset="ladabert-3")
    original, student, _ = ladabert_student("bert", config)
    method = method_for(student, original, config, regression=True)
    batch = tiny_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad(), method.student_scores:
        student(**batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = method.student_scores.per_layer(batch["attention_mask"])
    assert {s.dtype for s in scores} == {torch.float32}
    method.loss(student, batch)
    expected = torch.nn.functional.mse_loss(logits(student), logits(original))
    torch.testing.assert_close(method.last["logits"], expected, atol=1e-6, rtol=1e-5)


def test_an_unweighted_attention_term_computes_no_scores(monkeypatch):
    weighted = LadaBERTConfig(preset="ladabert-3")
    original, student, _ = ladabert_student("bert", weighted)
    batch = {**tiny_batch(), "labels": torch.tensor([0, 1, 1])}
    method = method_for(student, original, weighted)
    full = method.loss(student, batch)
    terms = dict(method.last)
    assert terms["attention"] > 0

    def refuse(self, mask):
        raise AssertionError("attention scores computed for a zero-weighted term")

    monkeypatch.setattr(AttentionScores, "per_layer", refuse)
    config = LadaBERTConfig(preset="ladabert-3", attention_weight=0.0)
    method = method_for(student, original, config)
    loss = method.loss(student, batch)
    assert float(method.last["attention"]) == 0.0
    for name in ("embedding", "hidden", "logits"):
        torch.testing.assert_close(method.last[name], terms[name])
    torch.testing.assert_close(loss, full - terms["attention"])
    assert method.after_backward(student, 1)["attention"] == 0.0


def test_pruned_entries_stay_zero_through_optimizer_steps():
    config = LadaBERTConfig(preset="ladabert-2")
    original, student, masks = ladabert_student("bert", config, keep=0.4)
    zeros = {name: (w == 0).clone() for name, w in prunable(student).items()}
    method = method_for(student, original, config, masks)
    method.prepare(student, 3)
    optimizer = torch.optim.AdamW(student.parameters(), lr=0.1, weight_decay=0.01)
    student.train()
    for step in range(3):
        batch = {**tiny_batch(seed=step), "labels": torch.tensor([0, 1, 1])}
        method.loss(student, batch).backward()
        optimizer.step()
        method.after_step(student, step)
        optimizer.zero_grad()
    for name, weight in prunable(student).items():
        assert (weight[zeros[name]] == 0).all(), name
        assert int((weight != 0).sum()) == round(0.4 * weight.numel()), name


def test_the_budget_table_follows_eq_7():
    config = LadaBERTConfig(preset="ladabert-2")
    p_embd, p_svd, p_weight = config.kept()
    original, student, masks = ladabert_student("bert", config, keep=p_weight)
    rows = {row["group"]: row for row in budget_table(original, student, config.kept())}
    embeddings = original.bert.embeddings
    encoder = original.bert.encoder
    theta_embd = sum(p.numel() for p in embeddings.parameters())
    theta_encd = sum(p.numel() for p in encoder.parameters())
    theta_cls = original.num_parameters() - theta_embd - theta_encd
    assert rows["embeddings"]["target"] == round(p_embd * theta_embd)
    assert rows["encoder"]["target"] == round(p_svd * p_weight * theta_encd)
    assert rows["head"]["target"] == theta_cls == rows["head"]["nonzero"]
    assert rows["total"]["parameters"] == original.num_parameters()
    assert rows["total"]["stored"] == student.num_parameters()
    # Achieved: the word table at rank r (vocab r + r 32), other embeddings whole; each factor
    # pruned to p_weight, biases and LayerNorms whole.
    r = svd_rank(VOCAB, 32, p_embd)
    assert rows["embeddings"]["nonzero"] == theta_embd - VOCAB * 32 + VOCAB * r + r * 32
    factors = sum(round(p_weight * w.numel()) for w in prunable(student).values())
    whole = sum(p.numel() for n, p in student.bert.encoder.named_parameters() if "weight" not in n
                or "LayerNorm" in n)  # fmt: skip
    assert rows["encoder"]["nonzero"] == factors + whole


FAST = ["--batch-size", "8", "--learning-rate", "1e-3", "--mixed-precision", "no", "--seed", "7"]


def compress(predecessor, data, output, *extra) -> list[str]:
    return [
        "compress", "--model", str(predecessor), "--task", "sst2", "--data-dir", str(data),
        "--output", str(output), "--method", "ladabert", *FAST, *extra,
    ]  # fmt: skip


def test_compress_runs_every_iteration_and_the_result_reloads_exports_and_serves(
    dropout_bert_dir, sst2_dir, tmp_path, capsys
):
    out = tmp_path / "lada"
    # The paper's SVD here; the resume test below runs the default (activation).
    args = ["--preset", "ladabert-2", "--prune-iterations", "2", "--max-steps", "16",
            "--eval-steps", "4", "--svd", "weight"]  # fmt: skip
    assert main(compress(dropout_bert_dir, sst2_dir, out, *args)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    stages = [s["stage"] for s in metrics["stages"]]
    assert stages == ["factorise", "prune-1", "prune-2", "recover"]
    # compress_share 0.5: 8 of the 16 steps over 3 compressing stages (cut at rounded
    # cumulative shares 16/6, 32/6, 48/6), 8 for the recovery: 16 in all.
    assert [s["steps"] for s in metrics["stages"]] == [3, 2, 3, 8]
    # Each stage draws its own data order: the run's seed (7) plus the stage's index.
    seeds = [json.loads((out / "stages" / f"{i + 1}-{name}" / "result.json").read_text())
             ["settings"]["training"]["seed"] for i, name in enumerate(stages[:-1])]  # fmt: skip
    assert seeds == [7, 8, 9]
    rows = {row["group"]: row for row in metrics["budget"]}
    budget = (out / "budget.md").read_text()
    assert all(f"\n| {group} | " in budget for group in rows) and len(rows) == 4
    # After every iteration: the encoder's kept fraction steps down to the final one, each
    # stage's target following the schedule, the last stage's budget the final one.
    kept = [s["summary"]["budget"][1]["kept"] for s in metrics["stages"]]
    targets = [s["summary"]["budget"][1]["target_kept"] for s in metrics["stages"]]
    assert kept[0] > kept[1] > kept[2] == kept[3] == rows["encoder"]["kept"]
    assert targets[1:] == pytest.approx([0.5 * 1 / 3.41**0.5, 0.5 / 3.41, 0.5 / 3.41], abs=1e-4)
    assert all(f"| {name} | " in budget for name in stages)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    p_weight = LadaBERTConfig(preset="ladabert-2").kept()[2]
    for name, weight in prunable(model).items():
        assert int((weight != 0).sum()) == round(p_weight * weight.numel()), name
    assert rows["total"]["nonzero"] == sum(int((p != 0).sum()) for p in model.parameters())
    assert model.config.embedding_rank == svd_rank(VOCAB, 32, 1 / 2.05)
    onnx = tmp_path / "onnx"
    assert main(["export", str(out), "--onnx", "--output", str(onnx)]) == 0
    assert json.loads((onnx / "export.json").read_text())["fp32"]["max_abs_logit_diff"] < 1e-4
    # evaluate scores the saved model as the run did; predict answers its argmax.
    scores = tmp_path / "scores.json"
    data = ["--task", "sst2", "--data-dir", str(sst2_dir), "--output", str(scores)]
    assert main(["evaluate", "--model", str(out), *data]) == 0
    accuracy = json.loads(scores.read_text())["dev"]["accuracy"]
    assert accuracy == pytest.approx(metrics["dev"]["dev"]["accuracy"], abs=1e-9)
    capsys.readouterr()
    assert main(["predict", str(out), "--text", "w1 good"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    expected = int(logits(model, tokenizer(["w1 good"], return_tensors="pt")).argmax(-1))
    assert capsys.readouterr().out.split("\t")[0] == model.config.id2label[expected]


def test_free_ratios_on_the_command_line_override_the_preset(dropout_bert_dir, sst2_dir, tmp_path):
    # The encoder factorised at P_svd 0.5, the word table and the factors left whole: no
    # pruning stage, and nothing pruned in the saved model.
    out = tmp_path / "free"
    args = ["--preset", "ladabert-4", "--p-svd", "0.5", "--p-embd", "1", "--p-weight", "1",
            "--max-steps", "4", "--svd", "weight"]  # fmt: skip
    assert main(compress(dropout_bert_dir, sst2_dir, out, *args)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["factorise", "recover"]
    model = AutoModelForSequenceClassification.from_pretrained(out)
    predecessor = AutoModelForSequenceClassification.from_pretrained(dropout_bert_dir)
    assert model.config.layer_ranks == encoder_ranks(predecessor, 0.5)
    assert model.config.embedding_rank is None
    rows = {row["group"]: row for row in metrics["budget"]}
    embeddings = rows["embeddings"]
    assert embeddings["stored"] == embeddings["target"] == embeddings["parameters"]  # untouched
    # Each m x n matrix at rank r stores (m + n) r instead of m n; biases stay as they were.
    layout = layout_for(model_type_of(predecessor.config))
    layers = predecessor.base_model.get_submodule(layout.layers)
    saved = sum(
        m * n - (m + n) * r
        for layer, ranks in zip(layers, model.config.layer_ranks, strict=True)
        for path, r in ranks.items()
        for m, n in [layer.get_submodule(path).weight.shape]
    )
    assert saved > 0 and rows["encoder"]["parameters"] - rows["encoder"]["stored"] == saved


def test_a_run_killed_mid_iteration_resumes_bit_identically(dropout_bert_dir, sst2_dir, tmp_path):
    # The default SVD and the input-aware pruning: both read training inputs as a stage starts.
    args = ["--preset", "ladabert-2", "--prune-iterations", "1", "--max-steps", "80",
            "--eval-steps", "10", "--save-steps", "2", "--pruning", "activation"]  # fmt: skip
    straight = tmp_path / "straight"
    assert main(compress(dropout_bert_dir, sst2_dir, straight, *args)) == 0
    out = tmp_path / "killed"
    pruning = tmp_path / ".killed.partial" / "stages" / "2-prune-1"
    after = random.randint(2, 18)
    interrupt(compress(dropout_bert_dir, sst2_dir, out, *args), pruning, after, signal.SIGKILL)
    assert not out.exists() and (pruning.parent / "1-factorise" / "result.json").is_file()
    assert main([*compress(dropout_bert_dir, sst2_dir, out, *args), "--resume", "auto"]) == 0
    a, b = load_file(straight / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"after {after}"


def test_compare_and_the_card_report_stored_and_non_zero_parameters(
    dropout_bert_dir, sst2_dir, tmp_path
):
    out = tmp_path / "compare"
    args = ["compare", "--model", str(dropout_bert_dir), "--task", "sst2", "--data-dir"]
    args += [str(sst2_dir), "--output", str(out), "--methods", "truncated", "ladabert"]
    args += ["--successor-layers", "2", "--max-steps", "8", "--speed-batch-size", "2"]
    assert main([*args, "--speed-length", "8", "--preset", "ladabert-2", *FAST]) == 0
    with (out / "results.csv").open() as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    (folder,) = (out / "runs").glob("ladabert-seed*")
    assert (folder / "budget.md").is_file()  # the method's report runs in compare too
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    assert int(rows["ladabert"]["nonzero_parameters"]) == nonzero
    assert int(rows["ladabert"]["parameters"]) == model.num_parameters() > nonzero
    table = {line.split(" | ")[0]: line for line in (out / "results.md").read_text().splitlines()}
    assert f"({nonzero / 1e6:.2f}M non-zero)" in table["| ladabert"]
    assert "non-zero" not in table["| truncated"]  # a few biases may be 0, no pruning
    card = (folder / "README.md").read_text()
    assert f"| non-zero parameters | {int(rows['predecessor']['parameters']):,} |" in card
    assert f"| {nonzero:,} |" in card
