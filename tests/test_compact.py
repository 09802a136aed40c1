"""Compact models: per-layer heads, FFN widths and low-rank linears, saved as their own family.

Table-driven over the supported architectures with tiny models (hidden 32, 4 heads of size
8, FFN 48, 4 layers, dropout 0), so forward passes are exact.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from tiny import ARCHITECTURES, VOCAB, tiny_batch, tiny_model
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    BertTokenizerFast,
    pipeline,
)

from bert_theseus.compact import (
    LAYOUTS,
    CompactConfig,
    CompactConfigError,
    CompactForSequenceClassification,
    CompactModel,
    LowRankEmbedding,
    LowRankLinear,
    UnsupportedArchitectureError,
    compact_from,
    factorize,
    in_source_order,
    layout_for,
    to_stock_if_possible,
)

SUPPORTED = [a for a in ARCHITECTURES if a in LAYOUTS]
HEAD_SIZE = 8
# Layer i keeps these heads (non-contiguous) and FFN neurons: heads [4, 2, 3, 1], widths
# [48, 10, 30, 7].
HEADS = [[0, 1, 2, 3], [1, 3], [0, 2, 3], [2]]
NEURONS = [
    list(range(48)),
    [0, 5, 7, 11, 13, 20, 30, 31, 40, 47],
    list(range(1, 48, 2)) + [0, 2, 10, 20, 30, 46],
    [3, 9, 17, 22, 29, 38, 44],
]
# Parameters removed: per head, Q/K/V rows with bias (3 * (8 * 32 + 8)) and attention-output
# columns (32 * 8); per neuron, an FFN-in row with bias (32 + 1) and an FFN-out column (32).
REMOVED = 6 * (3 * (8 * 32 + 8) + 32 * 8) + 97 * (32 + 1 + 32)


def model_of(arch: str):
    """A tiny classifier whose weights, biases and LayerNorms are all random and of order 0.2.

    The default init has zero biases and logits near 0.01, so a wrong slice (a bias left
    whole, MPNet's position bias taken from the wrong heads) would hide under atol 1e-5;
    with these weights a different choice of heads moves the logits by about 1.
    """
    model = tiny_model(arch)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=generator)
                if isinstance(module, torch.nn.LayerNorm):
                    p.copy_((1.0 if name == "weight" else 0.0) + 0.1 * noise)
                else:
                    p.copy_(0.2 * noise)
    return model


def logits(model, batch=None) -> torch.Tensor:
    with torch.no_grad():
        return model(**(batch or tiny_batch())).logits


def zeroed(model, heads, neurons):
    """The original model with dropped heads' attention-output columns and dropped neurons'
    FFN-out columns zeroed: what removing them means."""
    model = copy.deepcopy(model)
    layout = layout_for(model.config.model_type)
    with torch.no_grad():
        for i, layer in enumerate(model.base_model.get_submodule(layout.layers)):
            output = layer.get_submodule(layout.attention_output).weight
            for head in set(range(4)) - set(heads[i]):
                output[:, head * HEAD_SIZE : (head + 1) * HEAD_SIZE] = 0
            dropped = sorted(set(range(48)) - set(neurons[i]))
            layer.get_submodule(layout.ffn_out).weight[:, dropped] = 0
    return model


def save(model, folder, tokenizer_dir=None):
    model.save_pretrained(folder)
    if tokenizer_dir is not None:
        BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("arch", SUPPORTED)
def test_sliced_layers_equal_the_original_with_dropped_columns_zeroed(arch):
    original = model_of(arch)
    compact = compact_from(original, HEADS, NEURONS)
    assert compact.config.layer_heads == [4, 2, 3, 1]
    assert compact.config.layer_intermediate_sizes == [48, 10, 30, 7]
    assert compact.config.layer_head_indices == HEADS
    torch.testing.assert_close(
        logits(compact), logits(zeroed(original, HEADS, NEURONS)), atol=1e-5, rtol=0
    )
    assert original.num_parameters() - compact.num_parameters() == REMOVED
    assert sum(p.numel() for p in compact.parameters()) == compact.num_parameters()


@pytest.mark.parametrize("arch", SUPPORTED)
def test_keeping_everything_equals_the_original_with_the_same_keys(arch):
    original = model_of(arch)
    compact = compact_from(original)
    assert isinstance(compact, CompactForSequenceClassification)
    assert list(compact.state_dict()) == list(original.state_dict())
    torch.testing.assert_close(logits(compact), logits(original), atol=1e-5, rtol=0)


def test_a_cut_in_source_order_keeps_the_heads_as_the_source_held_them():
    """MPNet's layers share one per-head position bias: a layer whose heads are out of its
    order gathers its own copy at every forward; all heads in order is the stock class."""
    original = model_of("mpnet")
    rewired = compact_from(original, [[2, 0, 3, 1], [3, 2], [1, 0, 2], [0]])
    assert in_source_order(rewired, [range(4), [1, 0], [2, 0], [0]]) == [
        [1, 3, 0, 2], [1, 0], [0, 2], [0]
    ]  # fmt: skip
    assert in_source_order(original, [[3, 1], [2, 0, 1]]) == [[1, 3], [0, 1, 2]]
    whole = compact_from(rewired, in_source_order(rewired, [range(4), range(2), range(3), [0]]))
    assert whole.config.layer_head_indices == [[0, 1, 2, 3], [2, 3], [0, 1, 2], [0]]
    torch.testing.assert_close(logits(whole), logits(rewired), atol=1e-5, rtol=0)
    every = [range(4), range(2), range(3), range(1)]
    unmoved = compact_from(rewired, in_source_order(rewired, every), layers=[0])
    assert type(to_stock_if_possible(unmoved)) is type(original)


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_slicing_a_compact_model_again_composes_head_indices(arch):
    original = model_of(arch)
    twice = compact_from(compact_from(original, HEADS), [[1, 3], [1], [0, 2], [0]])
    assert twice.config.layer_head_indices == [[1, 3], [3], [0, 3], [2]]
    once = compact_from(original, [[1, 3], [3], [0, 3], [2]])
    torch.testing.assert_close(logits(twice), logits(once), atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", SUPPORTED)
def test_a_permutation_reorders_a_layer_without_changing_its_function(arch, tmp_path):
    original = model_of(arch)
    heads = [[3, 1, 0, 2], [0, 1, 2, 3], [2, 3, 1, 0], [1, 0, 3, 2]]
    neurons = [
        list(reversed(range(48))),
        list(range(48)),
        list(range(1, 48)) + [0],
        list(range(48)),
    ]
    shuffled = to_stock_if_possible(compact_from(original, heads, neurons))
    torch.testing.assert_close(logits(shuffled), logits(original), atol=1e-5, rtol=0)
    layer = shuffled.base_model.get_submodule(layout_for(arch).layers)[0]
    expected = original.base_model.get_submodule(layout_for(arch).layers)[0]
    ffn_in = layout_for(arch).ffn_in
    assert torch.equal(
        layer.get_submodule(ffn_in).weight[0], expected.get_submodule(ffn_in).weight[47]
    )
    # Where layers share a per-head table (MPNet), re-ordered heads need the compact class.
    assert isinstance(shuffled, CompactForSequenceClassification) == (arch == "mpnet")
    reloaded = AutoModelForSequenceClassification.from_pretrained(save(shuffled, tmp_path / "s"))
    torch.testing.assert_close(logits(reloaded), logits(original), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["bert", "mpnet", "distilbert"])
def test_kept_layers_are_renumbered_and_compute_the_shallower_model(arch):
    original = model_of(arch)
    small = to_stock_if_possible(compact_from(original, HEADS, NEURONS, layers=[0, 2]))
    assert small.config.num_hidden_layers == 2
    assert small.config.layer_heads == [4, 3] and small.config.layer_head_indices == [
        HEADS[0],
        HEADS[2],
    ]
    reference = zeroed(original, HEADS, NEURONS)
    layers = reference.base_model.get_submodule(layout_for(arch).layers)
    del layers[3], layers[1]
    torch.testing.assert_close(logits(small), logits(reference), atol=1e-5, rtol=0)
    whole_layers = to_stock_if_possible(compact_from(original, layers=[1, 3]))
    assert type(whole_layers) is type(original)  # a depth-only cut is the stock class
    with pytest.raises(CompactConfigError, match="ascending, distinct layer indices"):
        compact_from(original, layers=[2, 0])


@pytest.mark.parametrize("arch", SUPPORTED)
def test_save_and_reload_with_auto_class(arch, tmp_path):
    compact = compact_from(model_of(arch), HEADS, NEURONS)
    folder = save(compact, tmp_path / "compact")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert-theseus-compact"
    assert config["base_model_type"] == arch
    assert config["layer_heads"] == [4, 2, 3, 1]
    assert config["layer_intermediate_sizes"] == [48, 10, 30, 7]
    assert config["layer_ranks"] == [{}, {}, {}, {}]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(reloaded) is CompactForSequenceClassification
    torch.testing.assert_close(logits(reloaded), logits(compact), atol=1e-5, rtol=0)


def test_bare_encoder_loads_with_auto_model(tmp_path):
    compact = compact_from(model_of("bert"), HEADS, NEURONS)
    encoder = AutoModel.from_pretrained(save(compact, tmp_path / "compact"))
    assert type(encoder) is CompactModel
    with torch.no_grad():
        expected = compact.base_model(**tiny_batch()).last_hidden_state
        torch.testing.assert_close(encoder(**tiny_batch()).last_hidden_state, expected)


def test_labels_give_the_base_loss():
    compact = compact_from(model_of("bert"), HEADS, NEURONS)
    labels = torch.tensor([0, 1, 1])
    with torch.no_grad():
        output = compact(**tiny_batch(), labels=labels)
    torch.testing.assert_close(
        output.loss, torch.nn.functional.cross_entropy(output.logits, labels)
    )


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_attention_implementation_passes_to_the_base(arch, tmp_path):
    folder = save(compact_from(model_of(arch), HEADS, NEURONS), tmp_path / "compact")
    eager = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager")
    sdpa = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="sdpa")
    layout = layout_for(arch)
    first = eager.base_model.get_submodule(layout.layers)[0].get_submodule(layout.attention)
    assert (eager.config._attn_implementation, first.config._attn_implementation) == (
        "eager",
        "eager",
    )
    assert sdpa.base_model.config._attn_implementation == "sdpa"
    torch.testing.assert_close(logits(eager), logits(sdpa), atol=1e-5, rtol=0)


def test_full_rank_low_rank_linear_reproduces_the_linear():
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 48)
    low = LowRankLinear.from_linear(linear, rank=32)
    x = torch.randn(5, 32)
    with torch.no_grad():
        torch.testing.assert_close(low(x), linear(x), atol=1e-5, rtol=0)
    assert (low.down.weight.shape, low.up.weight.shape, low.down.bias) == ((32, 32), (48, 32), None)
    assert (
        sum(p.numel() for p in LowRankLinear(32, 48, rank=4).parameters()) == 32 * 4 + 4 * 48 + 48
    )


@pytest.mark.parametrize("arch", SUPPORTED)
def test_factorised_layers_save_and_reload(arch, tmp_path):
    layout = layout_for(arch)
    compact = compact_from(model_of(arch), HEADS, NEURONS)
    # Full rank: min(in, out) of each linear, so the factors reproduce it.
    ranks = [{layout.ffn_in: 32}, {layout.query: 16, layout.ffn_out: 10}, {}, {layout.value: 8}]
    low = factorize(compact, ranks)
    torch.testing.assert_close(logits(low), logits(compact), atol=1e-5, rtol=0)
    layer = low.base_model.get_submodule(layout.layers)[1]
    assert isinstance(layer.get_submodule(layout.query), LowRankLinear)
    folder = save(low, tmp_path / "low")
    assert json.loads((folder / "config.json").read_text())["layer_ranks"] == ranks
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder)
    torch.testing.assert_close(logits(reloaded), logits(low), atol=1e-5, rtol=0)
    assert reloaded.num_parameters() == low.num_parameters()
    # Rank 4 instead of 32 on one FFN input: 32 * 48 weights become 32 * 4 + 4 * 48.
    smaller = factorize(compact, [{layout.ffn_in: 4}, {}, {}, {}])
    assert compact.num_parameters() - smaller.num_parameters() == 32 * 48 - (32 * 4 + 4 * 48)


@pytest.mark.parametrize("arch", SUPPORTED)
def test_factorised_word_embeddings_save_reload_and_slice(arch, tmp_path):
    original = model_of(arch)
    table = original.base_model.get_submodule(layout_for(arch).word_embeddings)
    dim = table.embedding_dim
    full = factorize(original, [{}] * 4, embedding_rank=dim)  # full rank: the same function
    torch.testing.assert_close(logits(full), logits(original), atol=1e-5, rtol=0)
    low = factorize(original, [{}] * 4, embedding_rank=3)
    factors = low.base_model.get_submodule(layout_for(arch).word_embeddings)
    assert isinstance(factors, LowRankEmbedding)
    assert original.num_parameters() - low.num_parameters() == VOCAB * dim - (VOCAB * 3 + 3 * dim)
    folder = save(low, tmp_path / "low")
    assert json.loads((folder / "config.json").read_text())["embedding_rank"] == 3
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder)
    torch.testing.assert_close(logits(reloaded), logits(low), atol=1e-5, rtol=0)
    # Slicing heads keeps the factorised table; such a model has no stock class.
    sliced = compact_from(low, heads=HEADS)
    assert sliced.config.embedding_rank == 3 and to_stock_if_possible(sliced) is sliced
    with pytest.raises(CompactConfigError, match="factorised already"):
        factorize(low, [{}] * 4, embedding_rank=2)


def test_low_rank_embedding_error_is_the_dropped_singular_values():
    torch.manual_seed(0)
    table = torch.nn.Embedding(40, 12, padding_idx=0)
    low = LowRankEmbedding.from_embedding(table, rank=5)
    approx = low(torch.arange(40)).detach()
    dropped = torch.linalg.svdvals(table.weight.detach())[5:]
    error = (table.weight.detach() - approx).pow(2).sum()
    torch.testing.assert_close(error, dropped.pow(2).sum(), rtol=1e-4, atol=1e-5)
    assert low.table.padding_idx == 0


@pytest.mark.parametrize("arch", SUPPORTED)
def test_to_stock_if_possible(arch):
    original = model_of(arch)
    narrower = compact_from(original, neurons=[list(range(0, 48, 2))] * 4)  # all heads, FFN 24
    stock = to_stock_if_possible(narrower)
    assert type(stock) is type(original)
    assert getattr(stock.config, layout_for(arch).ffn_width) == 24
    torch.testing.assert_close(logits(stock), logits(narrower), atol=1e-5, rtol=0)
    fewer_heads = compact_from(original, heads=[[0, 1]] * 4)
    uneven = compact_from(original, neurons=NEURONS)
    low_rank = factorize(compact_from(original), [{layout_for(arch).ffn_in: 8}, {}, {}, {}])
    for misfit in (fewer_heads, uneven, low_rank):
        assert to_stock_if_possible(misfit) is misfit
    assert to_stock_if_possible(original) is original


def test_unsupported_architecture_is_a_clear_error():
    with pytest.raises(UnsupportedArchitectureError, match="'deberta-v2'.*bert, roberta"):
        compact_from(tiny_model("deberta-v2"))
    assert issubclass(UnsupportedArchitectureError, ValueError)


def test_every_layer_keeps_a_head_and_a_neuron():
    model = model_of("bert")
    with pytest.raises(CompactConfigError, match="layer 1 keeps no heads"):
        compact_from(model, heads=[[0], [], [0], [0]])
    with pytest.raises(CompactConfigError, match="layer 2 keeps no neurons"):
        compact_from(model, neurons=[[0], [1], [], [2]])
    with pytest.raises(CompactConfigError, match=r"distinct indices in \[0, 4\)"):
        compact_from(model, heads=[[0, 4], [0], [0], [0]])
    with pytest.raises(CompactConfigError, match="at least 1 of each"):
        CompactConfig(layer_heads=[2, 0], layer_intermediate_sizes=[8, 8])


def test_pipeline_answers_from_a_saved_compact_bert(tmp_path, tokenizer_dir):
    compact = compact_from(model_of("bert"), HEADS, NEURONS)
    compact.config.id2label = {0: "negative", 1: "positive"}
    compact.config.label2id = {"negative": 0, "positive": 1}
    folder = save(compact, tmp_path / "compact", tokenizer_dir)
    classify = pipeline("text-classification", model=str(folder), tokenizer=str(folder))
    answers = classify(["w1 w2 good", "bad w3"])
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    for text, answer in zip(["w1 w2 good", "bad w3"], answers, strict=True):
        probabilities = logits(compact, tokenizer([text], return_tensors="pt")).softmax(-1)[0]
        assert answer["label"] == compact.config.id2label[int(probabilities.argmax())]
        assert answer["score"] == pytest.approx(float(probabilities.max()), abs=1e-6)


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_onnx_export_through_the_cli_verifies(arch, tmp_path, tokenizer_dir):
    from bert_theseus.cli import main

    ranks = [{}, {layout_for(arch).ffn_in: 4}, {}, {}]  # a low-rank layer exports too
    compact = factorize(compact_from(model_of(arch), HEADS, NEURONS), ranks)
    folder = save(compact, tmp_path / "compact", tokenizer_dir)
    output = tmp_path / "onnx"
    assert main(["export", str(folder), "--onnx", "--int8", "--output", str(output)]) == 0
    report = json.loads((output / "export.json").read_text())
    assert report["fp32"]["max_abs_logit_diff"] < 1e-5  # tolerance 1e-3, checked by export
    assert report["int8"]["examples_compared"] == 4
    assert sorted(report["files"]) == ["model.int8.onnx", "model.onnx"]
    # The base's own inputs: MPNet takes no token_type_ids.
    expected = ["input_ids", "token_type_ids", "attention_mask"]
    assert report["inputs"] == (expected if arch == "bert" else expected[::2])


def test_evaluate_predict_and_benchmark_accept_a_compact_folder(
    tmp_path, tokenizer_dir, sst2_dir, capsys
):
    from bert_theseus.cli import main

    compact = compact_from(model_of("bert"), HEADS, NEURONS)
    compact.config.id2label = {0: "negative", 1: "positive"}
    compact.config.label2id = {"negative": 0, "positive": 1}
    folder = save(compact, tmp_path / "compact", tokenizer_dir)
    scores = tmp_path / "scores.json"
    data = ["--task", "sst2", "--data-dir", str(sst2_dir)]
    assert main(["evaluate", "--model", str(folder), *data, "--output", str(scores)]) == 0
    assert 0.0 <= json.loads(scores.read_text())["dev"]["accuracy"] <= 1.0
    capsys.readouterr()
    assert main(["predict", str(folder), "--text", "w1 good"]) == 0
    label = capsys.readouterr().out.split("\t")[0]
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    expected = logits(compact, tokenizer(["w1 good"], return_tensors="pt")).argmax(-1)
    assert label == compact.config.id2label[int(expected)]
    bench = tmp_path / "bench.json"
    args = ["benchmark", str(folder), "--lengths", "8", "--output", str(bench)]
    args += ["--latency-repeats", "2", "--throughput-repeats", "1", "--warmup", "1"]
    assert main([*args, "--throughput-batch-size", "2"]) == 0
    rows = json.loads(bench.read_text())["results"]
    assert [row["variant"] for row in rows] == [
        "torch-fp32",
        "torch-bf16",
        "onnx-fp32",
        "onnx-int8",
    ]
    assert rows[0]["parameters"] == sum(p.numel() for p in compact.parameters())


def test_depth_methods_refuse_a_compact_predecessor():
    from bert_theseus import KDConfig
    from bert_theseus.methods import MethodConfigError, MethodContext, get_method

    small = compact_from(model_of("bert"), HEADS, NEURONS)
    for name in ("theseus", "kd"):
        with pytest.raises(MethodConfigError, match="compact model"):
            get_method(name).check(KDConfig(successor_layers=2), MethodContext(small))


@pytest.mark.parametrize("arch", SUPPORTED)
def test_a_forward_rebound_to_the_compact_model_runs(arch):
    """Accelerate's mixed precision re-binds `forward.__func__` to the model it prepares:
    the base's code then runs with `self` being the compact model (which once lacked
    num_labels, and every bf16 LadaBERT or MPNet DynaBERT run crashed on its labels)."""
    from types import MethodType

    compact = compact_from(model_of(arch), HEADS, NEURONS)
    expected = compact(**tiny_batch(), labels=torch.tensor([0, 1, 1])).loss
    compact.forward = MethodType(compact.forward.__func__, compact)
    loss = compact(**tiny_batch(), labels=torch.tensor([0, 1, 1])).loss
    torch.testing.assert_close(loss, expected)
