"""Sentence-embedding students with a width cut (issue 41): the target method's kd-sliced
route on tiny sentence-transformers folders. Heads and FFN neurons are ranked on the dev
pairs' loss, the transformer is cut to the shape asked, the student distilled, and the
folder saved is one `SentenceTransformer` loads (after `import bert_theseus`, for a compact
transformer) and that encodes as the model computes; a killed run resumes bit for bit; what
the width cut cannot do is refused in one line."""

# ruff: noqa: F811  (test_embedding's fixtures, imported, are the tests' arguments)
from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest
import torch
from test_embedding import (  # noqa: F401  (fixtures: st_dirs, data_dir, cache)
    FAST,
    MAX_SEQ_LENGTH,
    VARIANTS,
    assert_same_run,
    build_st,
    cache,
    data_dir,
    metrics_of,
    snapshot,
    st_dirs,
)
from test_resume import interrupt
from test_target import fake_timer

import bert_theseus  # noqa: F401  (registers the compact family: SentenceTransformer loads it)
from bert_theseus.cli import main
from bert_theseus.data.loading import make_loader
from bert_theseus.embedding.data import read_pairs
from bert_theseus.embedding.model import load_encoder
from bert_theseus.embedding.prepare import encode_pairs
from bert_theseus.embedding.teacher import embed
from bert_theseus.methods.dynabert.importance import importance, importance_order
from bert_theseus.methods.target.routes import sliced
from bert_theseus.plan import make

TEXTS = ["good w1 w2", "bad", "w3 w4 w5 w6 w7 w8 w9 w10 w11", "w12 good w13 bad"]
EVAL_BATCH = 8
# The tiny predecessors: 4 layers of 4 heads and 48 FFN neurons; width 0.5 keeps 2 heads and
# 2 / 4 of the neurons in each layer.
SHAPE = ("--depth", "2", "--width", "0.5")
HEADS, NEURONS = [2, 2], [24, 24]


@pytest.fixture(scope="module")
def mpnet_st(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny MPNet sentence-transformers folder (mean pooling, Normalize): where layers
    share a per-head table, a compact transformer keeps each layer's chosen heads."""
    return build_st(tmp_path_factory.mktemp("st-mpnet") / "mpnet", tokenizer_dir,
                    model_type="mpnet")  # fmt: skip


def width_args(model: Path, data: Path, output: Path, *extra: str) -> list[str]:
    return ["compress", "--embedding", "--model", str(model), "--train-file",
            str(data / "train.txt"), "--dev-file", str(data / "dev.tsv"), "--output",
            str(output), "--method", "target", *SHAPE, "--plan-length", "16",
            "--plan-batch-size", "4", "--eval-batch-size", str(EVAL_BATCH), *FAST,
            *extra]  # fmt: skip


def dev_batches(encoder, data: Path):
    pairs = read_pairs(data / "dev.tsv", ("sentence1", "sentence2"), "score")
    features = encode_pairs(pairs, encoder.tokenizer, MAX_SEQ_LENGTH)
    return list(make_loader(features, encoder.tokenizer, EVAL_BATCH, False))


def own_embeddings(encoder) -> torch.Tensor:
    batch = encoder.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return encoder.eval()(**batch).logits


def layer_sizes(config: dict) -> tuple[list[int], list[int]]:
    if config["model_type"] == "bert-theseus-compact":
        return config["layer_heads"], config["layer_intermediate_sizes"]
    layers = config["num_hidden_layers"]
    return [config["num_attention_heads"]] * layers, [config["intermediate_size"]] * layers


@pytest.mark.parametrize("variant", ["mean-normalize", "mean", "cls-normalize", "cls", "mpnet"])
def test_width_cut_saves_a_sentence_transformer_that_encodes_as_the_model_computes(
    variant, st_dirs, mpnet_st, data_dir, cache, tmp_path, monkeypatch
):
    from sentence_transformers import SentenceTransformer

    monkeypatch.setattr(make, "measure", fake_timer)
    predecessor = mpnet_st if variant == "mpnet" else st_dirs(variant)
    output = tmp_path / "student"
    assert main([*width_args(predecessor, data_dir, output), "--max-steps", "3"]) == 0

    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == "bert-theseus-compact"
    assert layer_sizes(config) == (HEADS, NEURONS)
    # The layers kept are the last of each run (1 and 3 of 4: the embedding is pooled from
    # what the last layer writes), each keeping its two most important heads on the dev
    # pairs' loss (CoSENT), in the predecessor's order.
    teacher = load_encoder(str(predecessor))
    heads, _ = importance(teacher, dev_batches(teacher, data_dir))
    assert heads.abs().sum() > 0
    orders = importance_order(heads)
    assert config["layer_head_indices"] == [sorted(orders[1][:2]), sorted(orders[3][:2])]
    settings = json.loads((output / "run_config.json").read_text())["config"]
    assert settings["layers"] == "last-of-group"
    # The predecessor's modules, in order, with their settings (pooling, normalisation).
    assert (output / "modules.json").read_text() == (predecessor / "modules.json").read_text()
    pooling = "1_Pooling/config.json"
    assert (output / pooling).read_text() == (predecessor / pooling).read_text()

    encoded = SentenceTransformer(str(output), device="cpu").encode(TEXTS, convert_to_tensor=True)
    student = load_encoder(str(output))
    assert len(student.backbone.encoder.layer) == 2
    computed = own_embeddings(student)
    assert computed.dtype == encoded.dtype == torch.float32
    torch.testing.assert_close(encoded, computed, rtol=0, atol=1e-5)
    norms = computed.norm(dim=-1)
    normalize = VARIANTS.get(variant, {"normalize": True})["normalize"]
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5) == normalize

    metrics = metrics_of(output)
    assert metrics["method"] == "target" and metrics["task"] == "sts-pairs"
    target = metrics["target"]
    assert (target["depth"], target["width"], target["route"]) == (2, 0.5, "kd-sliced")
    assert target["runtime"] == "torch-fp32" and target["achieved_speedup"] > 0
    assert set(metrics["sentence_transformers"]) == {"dev"}
    assert metrics["steps"] == 3


@pytest.mark.parametrize("variant", ["mean-normalize", "cls", "mpnet"])
def test_a_cut_keeping_every_head_and_neuron_computes_the_predecessor_s_embeddings(
    variant, st_dirs, mpnet_st, data_dir
):
    folder = mpnet_st if variant == "mpnet" else st_dirs(variant)
    predecessor = load_encoder(str(folder))
    before = {k: v.clone() for k, v in predecessor.state_dict().items()}
    expected = own_embeddings(predecessor)
    # Width 1 and every layer: the heads and neurons are only put in importance order.
    whole = sliced(predecessor, 1.0, [0, 1, 2, 3], dev_batches(predecessor, data_dir))
    assert type(whole) is type(predecessor) and whole.backbone is not predecessor.backbone
    torch.testing.assert_close(own_embeddings(whole), expected, rtol=0, atol=1e-5)
    half = sliced(predecessor, 0.5, [0, 1], dev_batches(predecessor, data_dir))
    assert half.config.layer_heads == HEADS
    assert half.config.layer_intermediate_sizes == NEURONS
    # The predecessor is left as it was, its pooling and other modules not shared.
    assert all(torch.equal(v, before[k]) for k, v in predecessor.state_dict().items())
    assert not {id(m) for m in half.head} & {id(m) for m in predecessor.head}
    torch.testing.assert_close(own_embeddings(predecessor), expected, rtol=0, atol=0)


def test_pair_loss_is_sentence_transformers_cosent_and_held_out_sentences_rank_nothing(
    st_dirs, data_dir
):
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    encoder = load_encoder(str(st_dirs("mean-normalize"))).eval()
    (batch, *_) = dev_batches(encoder, data_dir)
    with torch.no_grad():
        loss = encoder(**batch).loss
        first = {k: v for k, v in batch.items() if not k.startswith("pair_") and k != "labels"}
        second = {k.removeprefix("pair_"): v for k, v in batch.items() if k.startswith("pair_")}
        theirs = CoSENTLoss(encoder.sentence_transformer)([first, second], batch["labels"])
        # Only the scores' order counts: scores of 0-5 and of 0-1 give one loss.
        rescaled = encoder(**{**batch, "labels": batch["labels"] / 5}).loss
    assert loss > 0 and torch.equal(loss, theirs) and torch.equal(loss, rescaled)

    # Held-out sentences' loss is the MSE to the predecessor's own embeddings: zero, and so
    # is every importance (the width cut refuses them).
    texts = (data_dir / "train.txt").read_text().splitlines()[:EVAL_BATCH]
    labels = embed(encoder, texts, encoder.tokenizer, MAX_SEQ_LENGTH)
    held_out = encoder.tokenizer(texts, padding=True, return_tensors="pt")
    heads, neurons = importance(encoder, [{**held_out, "labels": labels}])
    assert not heads.any() and not neurons.any()


STEPS = 12


def test_killed_width_run_resumes_to_identical_weights(st_dirs, data_dir, cache, tmp_path):
    model = st_dirs("dropout")

    def args(output: Path) -> list[str]:
        return [*width_args(model, data_dir, output), "--batch-size", "4", "--max-steps",
                str(STEPS), "--eval-steps", "6", "--save-steps", "2"]  # fmt: skip

    straight = tmp_path / "straight"
    assert main(args(straight)) == 0  # the plan is timed once and read back by the others
    output = tmp_path / "student"
    kill_after = random.randint(2, STEPS // 2)  # a checkpoint step; the kill lands after it
    interrupt(args(output), tmp_path / ".student.partial", kill_after, signal.SIGKILL)
    assert not output.exists(), "an interrupted run must not look finished"
    assert main([*args(output), "--resume", "auto"]) == 0

    assert_same_run(straight, output, kill_after)
    assert (output / "config.json").read_text() == (straight / "config.json").read_text()


REFUSED = {
    "theseus-width": (["--route", "theseus-width"], "route 'theseus-width' does not train "
                      "sentence-embedding models: with --embedding use --route kd-sliced"),
    "dynabert-cell": (["--route", "dynabert-cell"], "route 'dynabert-cell' does not train"),
    "held-out": ([], "held-out sentences lack"),
    "runtime": (["--runtime", "onnx-int8"], "--runtime onnx-int8: with --embedding the target "
                "is timed on PyTorch"),
    "baseline": (["--baseline", "openvino-fp32"], "--baseline openvino-fp32: with --embedding"),
    "dynabert": (["--method", "dynabert"], "method 'dynabert' does not train sentence-"),
    "ladabert": (["--method", "ladabert"], "method 'ladabert' does not train sentence-"),
    "pkd": (["--method", "pkd", "--successor-layers", "2"],
            "method 'pkd' does not train sentence-embedding models"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_width_cut_cannot_do_exits_2_with_one_line_and_writes_nothing(
    case, st_dirs, data_dir, cache, tmp_path, capsys
):
    model, output = st_dirs("mean-normalize"), tmp_path / "out" / "student"
    extra, says = REFUSED[case]
    args = width_args(model, data_dir, output, "--max-steps", "2", *extra)
    if case == "held-out":
        at = args.index("--dev-file")
        del args[at : at + 2]
    elif extra[0] == "--method":  # without the target's flags, which the others lack
        args = ["compress", "--embedding", "--model", str(model), "--train-file",
                str(data_dir / "train.txt"), "--dev-file", str(data_dir / "dev.tsv"),
                "--output", str(output), *extra, *FAST, "--max-steps", "2"]  # fmt: skip
    (tmp_path / "out").mkdir()
    before = snapshot(data_dir, model)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("theseus: error:") and err.count("\n") == 1, err
    assert says in err, err
    assert list((tmp_path / "out").iterdir()) == []
    assert snapshot(data_dir, model) == before
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
