"""Invariants of module replacing (theseus.md §(d)), for every supported architecture."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny import ARCHITECTURES, collapsed_bottom, tiny_batch, tiny_model
from transformers import AutoModelForSequenceClassification

from bert_theseus.arch import ArchitectureError
from bert_theseus.methods.theseus import (
    TheseusConfig,
    TheseusConfigError,
    apply_theseus,
    merge_theseus,
    theseus_layers,
)


def prepared(model_type: str, layers: int = 4, n: int = 2, **config):
    """The paper's recipe unless told otherwise: these are the spec's invariants."""
    predecessor = tiny_model(model_type, layers=layers)
    config = {"recipe": "paper", **config}
    model = apply_theseus(copy.deepcopy(predecessor), TheseusConfig(successor_layers=n, **config))
    return predecessor, model


@torch.no_grad()
def logits(model, batch, **kwargs):
    return model(**batch, **kwargs).logits


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_all_draws_on_predecessor_reproduce_the_predecessor_exactly(model_type):
    predecessor, model = prepared(model_type)
    batch = tiny_batch()
    model.train()  # dropout is 0 in the tiny configs, so train mode is deterministic
    theseus_layers(model).force([False, False])
    assert torch.equal(logits(model, batch), logits(predecessor, batch))


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_rate_one_in_train_mode_equals_eval(model_type):
    _, model = prepared(model_type)
    batch = tiny_batch()
    # Make successors differ from the predecessor layers they were copied from.
    with torch.no_grad():
        for parameter in theseus_layers(model).successor.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.train()
    assert theseus_layers(model).sample(p=1.0) == 2
    train_logits = logits(model, batch)
    model.eval()
    assert torch.equal(train_logits, logits(model, batch))


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_eval_ignores_predecessor_layers(model_type):
    _, model = prepared(model_type)
    batch = tiny_batch()
    model.eval()
    before = logits(model, batch)
    with torch.no_grad():
        for parameter in theseus_layers(model).predecessor.parameters():
            parameter.zero_()
    assert torch.equal(before, logits(model, batch))


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_successors_start_as_copies_of_bottom_layers(model_type):
    _, model = prepared(model_type, layers=6, n=3)
    layers = theseus_layers(model)
    for i, successor in enumerate(layers.successor):
        assert successor is not layers.predecessor[i]
        pairs = zip(
            successor.state_dict().items(), layers.predecessor[i].state_dict().items(), strict=True
        )
        for (name, a), (_, b) in pairs:
            assert torch.equal(a, b), name


def test_first_of_group_initialisation():
    _, model = prepared("bert", layers=6, n=3, successor_init="first-of-group")
    layers = theseus_layers(model)
    for i, source in enumerate([0, 2, 4]):
        successor, source_layer = layers.successor[i], layers.predecessor[source]
        for a, b in zip(successor.parameters(), source_layer.parameters(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_frozen_parameters_get_no_gradient_but_pass_it_through(model_type):
    _, model = prepared(model_type)
    batch = tiny_batch()
    model.train()
    theseus_layers(model).force([True, False])  # successor 0 feeds predecessor module 1
    model(**batch, labels=torch.tensor([0, 1, 0])).loss.backward()
    layers = theseus_layers(model)
    trainable = {id(p) for p in layers.successor.parameters()}
    for name, parameter in model.named_parameters():
        if id(parameter) in trainable:
            assert parameter.requires_grad
        else:
            assert not parameter.requires_grad and parameter.grad is None, name
    # Successor 0 learns through the frozen predecessor module 1 above it ...
    assert all(p.grad is not None for p in layers.successor[0].parameters())
    # ... and successor 1, not on this path, gets nothing.
    assert all(p.grad is None for p in layers.successor[1].parameters())


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_hidden_states_have_one_entry_per_executed_layer(model_type):
    _, model = prepared(model_type, layers=6, n=3)
    batch = tiny_batch()
    layers = theseus_layers(model)
    model.train()
    for choices, executed in (([False] * 3, 6), ([True, False, True], 4), ([True] * 3, 3)):
        layers.force(choices)
        assert len(layers) == executed  # R + c * (n - R)
        with torch.no_grad():
            out = model(**batch, output_hidden_states=True)
        assert len(out.hidden_states) == executed + 1
    model.eval()
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    assert len(out.hidden_states) == 3 + 1
    merged = merge_theseus(model)
    with torch.no_grad():
        merged_out = merged(**batch, output_hidden_states=True)
    assert len(merged_out.hidden_states) == 3 + 1
    for a, b in zip(out.hidden_states, merged_out.hidden_states, strict=True):
        assert torch.equal(a, b)


def test_hidden_states_when_hooks_were_installed_before_replacing():
    # transformers 5 installs its recording hooks once, at the first output_hidden_states call.
    predecessor = tiny_model("bert", layers=4)
    batch = tiny_batch()
    with torch.no_grad():
        assert len(predecessor(**batch, output_hidden_states=True).hidden_states) == 5
    model = apply_theseus(predecessor, TheseusConfig(successor_layers=2, recipe="paper"))
    with torch.no_grad():
        assert len(model(**batch, output_hidden_states=True).hidden_states) == 3
    model.train()
    theseus_layers(model).force([False, True])
    with torch.no_grad():
        assert len(model(**batch, output_hidden_states=True).hidden_states) == 4


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_merged_model_reloads_with_equal_logits(model_type, tmp_path):
    predecessor, model = prepared(model_type, layers=6, n=3)
    with torch.no_grad():
        for parameter in theseus_layers(model).successor.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    batch = tiny_batch()
    model.eval()
    expected = logits(model, batch)
    merged = merge_theseus(model)
    assert type(merged) is type(predecessor)
    assert merged.config.num_hidden_layers == 3
    assert all(p.requires_grad for p in merged.parameters())
    merged.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_hidden_layers == 3
    assert sum(p.numel() for p in reloaded.parameters()) == sum(
        p.numel() for p in merged.parameters()
    )
    assert torch.equal(logits(reloaded, batch), expected)


def test_uneven_grouping_12_to_5():
    groups = [[0, 1, 2], [3, 4], [5, 6], [7, 8], [9, 10, 11]]
    predecessor, model = prepared("bert", layers=12, n=None, grouping=groups)
    layers = theseus_layers(model)
    assert len(layers.successor) == 5 and layers.groups == groups
    model.train()
    layers.force([False, True, False, True, False])
    assert len(layers) == 3 + 1 + 2 + 1 + 3
    layers.force([False] * 5)
    assert torch.equal(logits(model, tiny_batch()), logits(predecessor, tiny_batch()))
    assert merge_theseus(model).config.num_hidden_layers == 5


def test_draws_are_one_per_module_with_rate_p():
    _, model = prepared("bert", layers=6, n=3)
    layers = theseus_layers(model)
    generator = torch.Generator().manual_seed(0)
    counts = [layers.sample(0.3, generator) for _ in range(4000)]
    assert abs(sum(counts) / len(counts) - 3 * 0.3) < 0.05  # mean R = n * p
    replay = torch.Generator().manual_seed(0)
    assert [layers.sample(0.3, replay) for _ in range(50)] == counts[:50]


def test_layers_path_override_and_errors():
    model = tiny_model("bert", layers=4)
    config = TheseusConfig(successor_layers=2, layers_path="bert.encoder.layer", recipe="paper")
    apply_theseus(model, config)
    assert theseus_layers(model).groups == [[0, 1], [2, 3]]
    with pytest.raises(ArchitectureError, match="does not exist"):
        apply_theseus(tiny_model("bert"), TheseusConfig(successor_layers=2, layers_path="bert.x"))
    with pytest.raises(ArchitectureError, match="ModuleList"):
        apply_theseus(
            tiny_model("bert"), TheseusConfig(successor_layers=2, layers_path="bert.encoder")
        )


def test_albert_and_unknown_architectures_are_refused_with_a_fix():
    from transformers import AlbertConfig, AlbertForSequenceClassification

    albert = AlbertForSequenceClassification(
        AlbertConfig(vocab_size=64, hidden_size=32, num_attention_heads=4, intermediate_size=48)
    )
    with pytest.raises(ArchitectureError, match="ALBERT reuses one shared layer"):
        apply_theseus(albert, TheseusConfig(successor_layers=2))
    model = tiny_model("bert")
    model.config.model_type = "mystery"
    with pytest.raises(ArchitectureError, match="pass layers_path"):
        apply_theseus(model, TheseusConfig(successor_layers=2))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"successor_layers": 3}, "does not divide the predecessor depth 4"),
        ({"grouping": [[0, 1], [3, 2]]}, "must split layers 0..3"),
        ({"grouping": [[0, 1], [2]]}, "must split layers 0..3"),
        ({"successor_layers": 2, "replacing_rate": 0.0}, r"outside \(0, 1\]"),
        ({"successor_layers": 2, "replacing_rate": 1.5}, r"outside \(0, 1\]"),
        ({"successor_layers": 2, "k": 0.0}, "must be positive"),
        ({"successor_layers": 2, "k": -0.1}, "must be positive"),
        ({"successor_layers": 2, "scheduler": "cosine"}, "unknown scheduler"),
        ({}, "no successor size"),
    ],
)
def test_invalid_settings_name_the_fix(settings, message):
    with pytest.raises(TheseusConfigError, match=message):
        apply_theseus(tiny_model("bert", layers=4), TheseusConfig(**settings))


def _labelled(batch):
    return {**batch, "labels": torch.arange(batch["input_ids"].shape[0]) % 2}


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_module_loss_is_zero_where_each_successor_is_a_copy_of_its_module(model_type):
    # One layer per module, successors copied from it: the target, computed on the
    # successor's own input with the encoder's own arguments, is the successor's output.
    from bert_theseus.methods.theseus import TheseusMethod

    model = tiny_model(model_type, layers=4, dropout=0.1)
    method = TheseusMethod(
        TheseusConfig(successor_layers=4, module_loss=1.0, successor_init="bottom"), seed=0
    )
    method.prepare(model, total_steps=10)
    layers = theseus_layers(model)
    for choice in ([True] * 4, [True, False, True, False]):
        layers.force(choice)
        model.eval()  # dropout off, so successor and predecessor compute the same
        layers.training = True  # ... on the mixed path
        method.loss(model, _labelled(tiny_batch()))
        assert method.module_loss_value == pytest.approx(0.0, abs=1e-10)
    layers.training = False


@pytest.mark.parametrize("model_type", ["bert", "mpnet", "deberta-v2"])
def test_module_loss_trains_each_active_successor_and_nothing_frozen(model_type):
    from bert_theseus.methods.theseus import TheseusMethod

    model = tiny_model(model_type, layers=4)
    method = TheseusMethod(
        TheseusConfig(successor_layers=2, module_loss=1.0, successor_init="bottom"), seed=0
    )
    method.prepare(model, total_steps=10)
    layers = theseus_layers(model)
    layers.force([True, False])
    model.train()
    state = torch.get_rng_state()
    loss = method.loss(model, _labelled(tiny_batch()))
    assert torch.equal(torch.get_rng_state(), state)  # the targets draw no random numbers
    assert method.module_loss_value > 1e-7  # successor 0 is layer 0, its module layers 0-1
    task = model(**_labelled(tiny_batch())).loss
    assert loss.item() == pytest.approx(task.item() + method.module_loss_value, rel=1e-5)
    method.matching.terms = []
    loss.backward()
    assert all(p.grad is not None for p in layers.successor[0].parameters())
    assert all(p.grad is None for p in layers.successor[1].parameters())  # not on the path
    assert all(p.grad is None for p in layers.predecessor.parameters())
    merged = method.finalize(model)
    assert not any(layer._forward_hooks for layer in theseus_layers_of(merged))


def theseus_layers_of(model):
    from bert_theseus.arch import find_layers_path

    return model.get_submodule(find_layers_path(model))


@pytest.mark.parametrize(
    "init, sources", [("last-of-group", (1, 3, 5)), ("bottom-last-top", (0, 1, 5))]
)
def test_successors_start_from_the_layers_their_init_names(init, sources):
    predecessor, model = prepared("bert", layers=6, n=3, successor_init=init)
    layers = theseus_layers(model)
    for successor, source in zip(layers.successor, sources, strict=True):
        ours, theirs = successor.state_dict(), predecessor.bert.encoder.layer[source].state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_module_loss_must_not_be_negative():
    with pytest.raises(TheseusConfigError, match="module_loss -1"):
        TheseusConfig(successor_layers=2, module_loss=-1).validate()


def test_a_recipe_fills_only_the_settings_not_given():
    from bert_theseus.methods.theseus.config import RECIPES

    paper = TheseusConfig(successor_layers=2, recipe="paper")
    assert (paper.successor_init, paper.module_loss) == ("bottom", 0.0)
    mine = TheseusConfig(successor_layers=2, recipe="paper", module_loss=0.5)
    assert (mine.successor_init, mine.module_loss) == ("bottom", 0.5)
    default = TheseusConfig(successor_layers=2)
    assert default.recipe == "default"
    assert default.successor_init == "auto"
    assert default.train_parts == ["head", "embeddings"]
    assert paper.train_parts == [] and paper.train_parts is not RECIPES["paper"]["train_parts"]
    assert {k: getattr(default, k) for k in RECIPES["default"]} == RECIPES["default"]
    # What a run records reproduces the same settings, whatever the recipe table says later.
    assert TheseusConfig(**vars(mine)) == mine
    with pytest.raises(TheseusConfigError, match="unknown recipe 'fast': use one of paper"):
        TheseusConfig(successor_layers=2, recipe="fast")


def cls_batches(count: int = 4):
    """A loader of batches of 8 whose first token is one fixed token, as a tokenizer's [CLS].
    A DataLoader, as in training: iterating one draws from the global generator."""
    rows = []
    for seed in range(count):
        batch = tiny_batch(batch=8, seed=seed)
        batch["input_ids"][:, 0] = 2
        rows += [{k: v[i] for k, v in batch.items()} | {"labels": 0} for i in range(8)]
    return torch.utils.data.DataLoader(rows, batch_size=8)


def test_auto_init_keeps_the_paper_start_unless_its_cls_is_a_constant():
    from bert_theseus.methods.theseus.init import COLLAPSED_SHARE, EXAMPLES, choose_successor_init

    config = TheseusConfig(successor_layers=2)
    informative = choose_successor_init(tiny_model("bert", layers=4), config, cls_batches())
    assert informative.successor_init == "bottom"
    assert informative.share > COLLAPSED_SHARE
    collapsed_model = collapsed_bottom().train()
    rng = torch.get_rng_state()
    collapsed = choose_successor_init(collapsed_model, config, cls_batches())
    assert torch.equal(torch.get_rng_state(), rng)  # the run that follows draws the same
    assert collapsed.successor_init == "bottom-last-top"
    assert collapsed.bottom_cls_spread == 0.0 < collapsed.top_cls_spread
    assert collapsed_model.training  # left in the mode it was given in
    # It measures the first EXAMPLES inputs only: more batches change nothing, fewer do.
    model = tiny_model("bert", layers=4)
    first = choose_successor_init(model, config, cls_batches(count=EXAMPLES // 8))
    more = choose_successor_init(model, config, cls_batches(count=2 * EXAMPLES // 8))
    fewer = choose_successor_init(model, config, cls_batches(count=EXAMPLES // 16))
    assert more.top_cls_spread == first.top_cls_spread != fewer.top_cls_spread
    # Nothing to replace: the paper's start, whatever the spread.
    whole = TheseusConfig(successor_layers=4)
    assert choose_successor_init(collapsed_model, whole, cls_batches()).successor_init == "bottom"
    with pytest.raises(ValueError, match="successor_init 'auto' is chosen by measuring"):
        apply_theseus(tiny_model("bert", layers=4), config)
