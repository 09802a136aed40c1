"""Sentence-embedding students (`compress --embedding`) on tiny sentence-transformers folders
built in code: what they save, what they train on, how they are scored and resumed."""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import WORDS
from safetensors.torch import load_file
from test_resume import interrupt, records
from tiny import tiny_config
from torch import nn
from transformers import AutoModel, BertTokenizerFast

from bert_theseus.cli import main
from bert_theseus.data.config import DataConfig
from bert_theseus.embedding import EmbeddingConfig
from bert_theseus.embedding.data import read_pairs, read_sentence_data
from bert_theseus.embedding.model import load_encoder
from bert_theseus.embedding.report import pair_scores
from bert_theseus.embedding.teacher import cache_key, embed
from bert_theseus.methods import embedding_methods
from bert_theseus.methods.theseus.config import TheseusConfig
from bert_theseus.methods.theseus.method import TheseusMethod
from bert_theseus.methods.theseus.model import apply_theseus, theseus_layers

METHODS = ["truncated", "kd", "theseus"]
FAST = ["--batch-size", "8", "--learning-rate", "1e-3", "--mixed-precision", "no", "--seed", "7"]
MAX_SEQ_LENGTH = 32


def build_st(folder: Path, tokenizer_dir: Path, pooling="mean", normalize=True, dense=False,
             dropout=0.0, model_type="bert") -> Path:  # fmt: skip
    """A tiny sentence-transformers model (4-layer `model_type`, `pooling`, optional Dense
    and Normalize) saved at `folder`, as `SentenceTransformer.save` writes one."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    torch.manual_seed(0)
    config = tiny_config(model_type, layers=4, dropout=dropout)
    hf = folder.with_name(folder.name + "-hf")
    AutoModel.from_config(config).save_pretrained(hf)
    BertTokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(hf)
    modules = [Transformer(str(hf), max_seq_length=MAX_SEQ_LENGTH)]
    modules.append(Pooling(config.hidden_size, pooling))
    if dense:
        modules.append(Dense(config.hidden_size, 16, activation_function=nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder


VARIANTS = {
    "mean-normalize": {"pooling": "mean", "normalize": True},
    "mean": {"pooling": "mean", "normalize": False},
    "cls-normalize": {"pooling": "cls", "normalize": True},
    "cls": {"pooling": "cls", "normalize": False},
    "mean-dense-normalize": {"pooling": "mean", "normalize": True, "dense": True},
}


@pytest.fixture(scope="session")
def st_dirs(tmp_path_factory, tokenizer_dir) -> Callable[[str], Path]:
    """The tiny sentence-transformers folder of a variant (of VARIANTS, or "dropout": mean
    pooling, Normalize, dropout 0.1, to resume), built once on first use."""
    root = tmp_path_factory.mktemp("st")
    built: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in built:
            settings = VARIANTS[variant] if variant != "dropout" else {"dropout": 0.1}
            built[variant] = build_st(root / variant, tokenizer_dir, **settings)
        return built[variant]

    return get


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(count)]


def write_pairs(path: Path, count: int, seed: int) -> Path:
    rng = random.Random(seed)
    first, second = sentences(count, seed), sentences(count, seed + 100)
    rows = [f"{a}\t{b}\t{rng.uniform(0, 5):.2f}" for a, b in zip(first, second, strict=True)]
    path.write_text("\n".join(["sentence1\tsentence2\tscore", *rows]) + "\n")
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """train.txt (24 sentences), other.txt (24 others), dev.tsv and test.tsv (STS pairs)."""
    folder = tmp_path_factory.mktemp("sentences")
    (folder / "train.txt").write_text("\n".join(sentences(24)) + "\n")
    (folder / "other.txt").write_text("\n".join(sentences(24, seed=1)) + "\n")
    write_pairs(folder / "dev.tsv", 16, seed=2)
    write_pairs(folder / "test.tsv", 16, seed=3)
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache folder of this test's own: no run writes to ~/.cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BERT_THESEUS_CACHE", str(folder))
    return folder


def compress(model: Path, train: Path, output: Path, method="theseus", *extra, depth=2) -> list:
    size = ["--successor-layers", str(depth)] if depth else []
    return ["compress", "--embedding", "--model", str(model), "--train-file", str(train),
            "--output", str(output), "--method", method, *size, *FAST, *extra]  # fmt: skip


def metrics_of(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_the_tested_methods_are_the_supported_ones():
    # target (its kd-sliced route, a width cut): tests/test_embedding_width.py
    assert sorted(embedding_methods()) == sorted([*METHODS, "target"])


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("method", METHODS)
def test_every_method_saves_a_sentence_transformer_that_encodes_as_the_model_computes(
    method, variant, st_dirs, data_dir, cache, tmp_path
):
    from sentence_transformers import SentenceTransformer

    predecessor, output = st_dirs(variant), tmp_path / "student"
    args = compress(predecessor, data_dir / "train.txt", output, method, "--epochs", "1")
    assert main([*args, "--held-out", "4"]) == 0

    assert json.loads((output / "config.json").read_text())["num_hidden_layers"] == 2
    # The predecessor's modules, in order, with their settings (pooling, normalisation).
    assert (output / "modules.json").read_text() == (predecessor / "modules.json").read_text()
    pooling = "1_Pooling/config.json"
    assert (output / pooling).read_text() == (predecessor / pooling).read_text()
    header = (output / "README.md").read_text().split("---")[1]
    assert "library_name: sentence-transformers" in header
    assert "pipeline_tag: sentence-similarity" in header

    texts = ["good w1 w2", "bad", "w3 w4 w5 w6 w7 w8 w9 w10 w11", "w12 good w13 bad"]
    encoded = SentenceTransformer(str(output), device="cpu").encode(texts, convert_to_tensor=True)
    student = load_encoder(str(output)).eval()
    assert len(student.backbone.encoder.layer) == 2
    batch = student.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        computed = student(**batch).logits
    assert computed.dtype == encoded.dtype == torch.float32
    torch.testing.assert_close(encoded, computed, rtol=0, atol=1e-5)
    norms = computed.norm(dim=-1)
    normalized = torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert normalized == VARIANTS[variant]["normalize"]
    assert computed.shape[-1] == (16 if VARIANTS[variant].get("dense") else 32)
    # One epoch: 24 sentences, 4 held out, in batches of 8.
    assert metrics_of(output)["steps"] == 3


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_theseus_loss_is_zero_where_every_successor_copies_its_one_layer_module(
    pooling, st_dirs, data_dir
):
    model = load_encoder(str(st_dirs(f"{pooling}-normalize")))
    texts = (data_dir / "train.txt").read_text().splitlines()[:12]
    tokenizer = model.tokenizer
    labels = embed(model, texts, tokenizer, MAX_SEQ_LENGTH)  # the predecessor's own, fp32
    assert labels.dtype == torch.float32
    batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH,
                      return_tensors="pt")  # fmt: skip
    # One layer per module: each successor starts as a copy of the layer it stands in for.
    # (`compress` refuses this grouping, which compresses nothing; apply_theseus takes it.)
    config = TheseusConfig(grouping=[[0], [1], [2], [3]], successor_init="bottom")
    apply_theseus(model, config)
    layers = theseus_layers(model)
    generator = torch.Generator().manual_seed(0)
    replaced_counts = []
    for train in (False, True):  # eval runs the successors; training, the drawn path
        model.train(train)
        for p in (0.0, 0.5, 1.0, 0.5, 0.5):
            replaced_counts.append(layers.sample(p, generator))
            with torch.no_grad():
                loss = model(**batch, labels=labels).loss
            assert loss.item() == 0.0, (train, p, layers.use_successor)
    assert {0, 4} < set(replaced_counts), "the draws mixed successors and predecessor layers"
    # The loss sees the successors: one changed, a path through it has a loss, one around not.
    with torch.no_grad():
        layers.successor[2].output.dense.bias += 0.1
        layers.force([False, False, True, False])
        assert model(**batch, labels=labels).loss.item() > 0
        layers.force([True, True, False, True])
        assert model(**batch, labels=labels).loss.item() == 0.0


def test_auto_init_starts_an_embedding_student_s_top_successor_from_the_last_layer(
    st_dirs, data_dir
):
    """A sentence embedding is pooled from the last layer's states, so `auto` keeps the
    last layer as the top successor even where [CLS] after the bottom layers is
    informative; the same transformer read as a plain encoder keeps the paper's start."""
    from bert_theseus.methods.theseus.init import COLLAPSED_SHARE, choose_successor_init

    encoder = load_encoder(str(st_dirs("mean-normalize")))
    texts = (data_dir / "train.txt").read_text().splitlines()
    batch = encoder.tokenizer(texts, padding=True, return_tensors="pt")
    config = TheseusConfig(successor_layers=2)
    pooled = choose_successor_init(encoder, config, [dict(batch)])
    plain = choose_successor_init(encoder.backbone, config, [dict(batch)])
    assert plain.share == pooled.share > COLLAPSED_SHARE  # the same [CLS], informative
    assert (plain.successor_init, plain.pooled) == ("bottom", False)
    assert (pooled.successor_init, pooled.pooled) == ("bottom-last-top", True)
    assert "pooled from the states the last layer writes" in pooled.describe()
    model = load_encoder(str(st_dirs("mean-normalize")))
    TheseusMethod(config, init=pooled).prepare(model, total_steps=10)
    top = theseus_layers(model).successor[-1]
    last = encoder.backbone.encoder.layer[-1]
    assert all(
        torch.equal(a, b)
        for a, b in zip(top.state_dict().values(), last.state_dict().values(), strict=True)
    )
    # Nothing to replace: the paper's start, as for a classifier.
    whole = TheseusConfig(successor_layers=4)
    assert choose_successor_init(encoder, whole, [dict(batch)]).successor_init == "bottom"


def test_teacher_embeddings_come_back_in_the_sentences_order(st_dirs):
    from bert_theseus.embedding.teacher import embed

    encoder = load_encoder(str(st_dirs("mean")))
    rng = random.Random(3)
    # Lengths in no order, more sentences than one batch: batching by length must not
    # reorder what comes back.
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20))) for _ in range(150)]
    together = embed(encoder, sentences, encoder.tokenizer, 32)
    for index in (0, 7, 64, 149):
        alone = embed(encoder, [sentences[index]], encoder.tokenizer, 32)[0]
        assert torch.allclose(together[index], alone, atol=1e-5)


def test_teacher_cache_equals_recomputation_and_is_read_back(
    st_dirs, data_dir, cache, tmp_path, capsys
):
    predecessor = st_dirs("mean-normalize")
    train = data_dir / "train.txt"
    pairs = ["--dev-file", str(data_dir / "dev.tsv"), "--max-steps", "2", "--max-length", "16"]
    assert main(compress(predecessor, train, tmp_path / "first", "truncated", *pairs)) == 0
    (stored,) = (cache / "embeddings").iterdir()
    stored_bytes = stored.read_bytes()

    teacher = load_encoder(str(predecessor))
    texts = train.read_text().splitlines()
    assert stored.name == f"{cache_key(teacher, texts, 16)}.safetensors"
    cached = load_file(stored)["embeddings"]
    recomputed = embed(teacher, texts, teacher.tokenizer, 16).half()
    assert cached.dtype == torch.float16 and cached.shape == (24, 32)
    assert torch.equal(cached, recomputed)
    assert "computed in" in capsys.readouterr().err

    # The same sentences again (another method): read back, the file left as it was.
    assert main(compress(predecessor, train, tmp_path / "second", "kd", *pairs)) == 0
    assert f"read back from {stored}" in capsys.readouterr().err
    assert list((cache / "embeddings").iterdir()) == [stored]
    assert stored.read_bytes() == stored_bytes

    # Other sentences: a file of their own.
    other = data_dir / "other.txt"
    assert main(compress(predecessor, other, tmp_path / "third", "truncated", *pairs)) == 0
    assert "read back from" not in capsys.readouterr().err
    files = sorted((cache / "embeddings").iterdir())
    assert len(files) == 2 and stored in files
    (new,) = (f for f in files if f != stored)
    texts = other.read_text().splitlines()
    assert torch.equal(
        load_file(new)["embeddings"], embed(teacher, texts, teacher.tokenizer, 16).half()
    )


def snapshot(*roots: Path) -> dict[Path, bytes]:
    files = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*"))]
    return {p: p.read_bytes() for p in files if p.is_file()}


@pytest.mark.parametrize(
    "case",
    [
        "no-text-column",
        "empty-file",
        "not-sentence-transformers",
        "dynabert",
        "task",
        "one-pair-column",
    ],  # fmt: skip
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case, st_dirs, tiny_bert_dir, sst2_dir, cache, tmp_path, capsys
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    train = inputs / "train.txt"
    train.write_text("w1 w2 w3\nw4 w5\ngood w6\n")
    model, method, extra, says = st_dirs("mean-normalize"), "theseus", [], ""
    if case == "no-text-column":
        train = inputs / "train.csv"
        train.write_text("title,label\nw1 w2,1\nw3 w4,0\n")
        says = "has no text column (text or sentence); its columns are 'title', 'label'"
    elif case == "empty-file":
        train = inputs / "empty.txt"
        train.write_bytes(b"")
        says = "no sentences to train on"
    elif case == "not-sentence-transformers":
        model, says = tiny_bert_dir, "is not a sentence-transformers model (no modules.json)"
    elif case == "dynabert":
        method, says = "dynabert", "method 'dynabert' does not train sentence-embedding models"
    elif case == "task":
        extra, says = ["--task", "sst2", "--data-dir", str(sst2_dir)], "instead of --task/--data"
    else:
        extra = ["--dev-file", str(write_pairs(inputs / "dev.tsv", 4, 0)), "--pair-columns", "a"]
        says = "--pair-columns takes two column names, not 1"
    before = snapshot(inputs, model, sst2_dir)
    output = tmp_path / "out" / "student"
    output.parent.mkdir()
    capsys.readouterr()

    depth = None if method == "dynabert" else 2
    code = main([*compress(model, train, output, method, "--max-steps", "2", depth=depth), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("theseus: error:") and err.count("\n") == 1, err
    assert says in err, err
    assert list(output.parent.iterdir()) == []  # no output, no partial folder
    assert snapshot(inputs, model, sst2_dir) == before
    assert not cache.exists() or not any(cache.rglob("*.safetensors"))


STEPS = 30


def test_killed_theseus_embedding_run_resumes_to_identical_weights(
    st_dirs, data_dir, cache, tmp_path, monkeypatch
):
    model = st_dirs("dropout")
    assert json.loads((model / "config.json").read_text())["hidden_dropout_prob"] == 0.1

    def args(output: Path) -> list[str]:
        return [*compress(model, data_dir / "train.txt", output, "theseus"),
                "--dev-file", str(data_dir / "dev.tsv"), "--batch-size", "4",
                "--max-steps", str(STEPS), "--eval-steps", "10", "--save-steps", "3"]  # fmt: skip

    straight = tmp_path / "straight"
    assert main(args(straight)) == 0
    output = tmp_path / "student"
    kill_after = random.randint(3, STEPS // 2)  # a checkpoint step; the kill lands after it
    interrupt(args(output), tmp_path / ".student.partial", kill_after, signal.SIGKILL)
    assert not output.exists(), "an interrupted run must not look finished"

    steps = []  # the steps the resumed run takes: those after its checkpoint only
    draw = TheseusMethod.before_step
    monkeypatch.setattr(
        TheseusMethod,
        "before_step",
        lambda self, model, step: steps.append(step) or draw(self, model, step),
    )
    assert main([*args(output), "--resume", "auto"]) == 0
    assert steps[0] >= kill_after and steps == list(range(steps[0], steps[0] + len(steps)))
    assert steps[-1] in (STEPS - 1, STEPS)
    assert_same_run(straight, output, kill_after)


def assert_same_run(straight: Path, output: Path, kill_after: int) -> None:
    """The resumed run's folder holds the uninterrupted run's weights, bit for bit, and
    its training log; no checkpoint is left."""
    weights = sorted(p.relative_to(straight) for p in straight.rglob("*.safetensors"))
    assert weights and weights == sorted(
        p.relative_to(output) for p in output.rglob("*.safetensors")
    )
    for name in weights:
        expected, resumed = load_file(straight / name), load_file(output / name)
        assert expected.keys() == resumed.keys()
        for key, tensor in expected.items():
            assert torch.equal(tensor, resumed[key]), f"{name}:{key} (killed after {kill_after})"
    assert records(output) == records(straight)
    assert not (output / "checkpoints").exists()


def test_in_loop_pair_score_is_sentence_transformers_evaluator(st_dirs, data_dir, cache, tmp_path):
    output = tmp_path / "student"
    args = compress(st_dirs("mean"), data_dir / "train.txt", output, "theseus", "--max-steps", "4")
    args += ["--dev-file", str(data_dir / "dev.tsv"), "--test-file", str(data_dir / "test.tsv")]
    assert main(args) == 0
    metrics = metrics_of(output)
    assert metrics["task"] == "sts-pairs"
    st = metrics["sentence_transformers"]
    assert set(st) == {"test"}  # sentence-transformers' evaluator scores the reported pairs
    for key in ("spearman_cosine", "pearson_cosine"):
        assert metrics["test"][key] == pytest.approx(st["test"]["student"][key], abs=1e-6)
        before = metrics["predecessor_dev"]["test"][key]
        assert before == pytest.approx(st["test"]["predecessor"][key], abs=1e-6)
    assert metrics["dev"]["dev"]["spearman_cosine"] != metrics["predecessor_dev"]["dev"]["score"]
    card = (output / "README.md").read_text()
    student = 100 * st["test"]["student"]["spearman_cosine"]
    assert f"EmbeddingSimilarityEvaluator on the test pairs: Spearman {student:.2f}" in card
    # The saved folder scores the dev pairs as the run's own evaluation did.
    saved = load_encoder(str(output))
    pairs = read_pairs(data_dir / "dev.tsv", ("sentence1", "sentence2"), "score")
    in_loop = {k: metrics["dev"]["dev"][k] for k in ("spearman_cosine", "pearson_cosine")}
    assert pair_scores(saved, "dev", pairs) == pytest.approx(in_loop, abs=1e-6)


def test_held_out_sentences_select_and_test_pairs_are_reported_apart(
    st_dirs, data_dir, cache, tmp_path
):
    output = tmp_path / "student"
    args = compress(st_dirs("cls"), data_dir / "train.txt", output, "truncated", "--max-steps", "3")
    assert main([*args, "--held-out", "5", "--test-file", str(data_dir / "test.tsv")]) == 0
    metrics = metrics_of(output)
    assert metrics["task"] == "held-out"
    (dev,) = metrics["dev"].values()
    assert 0 < dev["cosine"] <= 1 and dev["score"] == dev["cosine"] and dev["mse"] >= 0
    assert "spearman_cosine" not in dev and "test" not in metrics
    assert set(metrics["sentence_transformers"]) == {"test"}
    assert metrics["data"]["dev"] == "5 held-out training sentences"


def test_txt_counts_blank_lines_and_duplicates_exactly(st_dirs, data_dir, cache, tmp_path, capsys):
    train = tmp_path / "messy.txt"
    lines = ["w1 w2 w3", "", "w4 w5", "  ", "w1 w2 w3", "w6 w7 ", "w4 w5", "\t", "w8 w9", ""]
    # CRLF line ends, an unmarked last line; "w6 w7 " and "w6 w7" are one sentence.
    train.write_bytes("\r\n".join(lines[:-1]).encode() + b"\r\nw6 w7")
    data = DataConfig(train_file=str(train), dev_file=str(data_dir / "dev.tsv"))
    read = read_sentence_data(data, EmbeddingConfig(embedding=True))
    assert read.train == ["w1 w2 w3", "w4 w5", "w6 w7", "w8 w9"]
    assert read.dropped == {"empty": 3, "duplicate": 3}

    args = compress(st_dirs("mean-normalize"), train, tmp_path / "student", "truncated")
    assert main([*args, "--max-steps", "1", "--dev-file", str(data_dir / "dev.tsv")]) == 0
    err = capsys.readouterr().err
    assert "training sentences: 4 (3 empty, 3 duplicate dropped);" in err


def test_the_sentence_line_counts_held_out_and_unused_sentences(st_dirs, cache, tmp_path, capsys):
    train = tmp_path / "sentences.txt"
    train.write_text("".join(f"w{i} w{i + 1}\n" for i in range(30)))
    args = compress(st_dirs("mean"), train, tmp_path / "student", "truncated")
    assert main([*args, "--max-steps", "1", "--held-out", "4", "--max-train-samples", "20"]) == 0
    err = capsys.readouterr().err
    assert "training sentences: 20; 4 held out to score; 6 beyond --max-train-samples;" in err


def test_lone_carriage_returns_end_lines(tmp_path):
    train = tmp_path / "mac.txt"
    train.write_bytes(b"w1 w2\rw3\r\rw1 w2\r")
    read = read_sentence_data(DataConfig(train_file=str(train), dev_file=None),
                              EmbeddingConfig(embedding=True, held_out=1))  # fmt: skip
    assert sorted(read.train + read.dev["dev"]) == ["w1 w2", "w3"]
    assert read.dropped == {"empty": 1, "duplicate": 1}


def test_jsonl_text_column_and_two_tsv_text_columns(data_dir, tmp_path):
    dev = str(data_dir / "dev.tsv")
    jsonl = tmp_path / "train.jsonl"
    rows = [{"id": 1, "text": "w1 w2"}, {"id": 2, "text": " w3 "}, {"id": 3, "text": "w1 w2"}]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    read = read_sentence_data(DataConfig(train_file=str(jsonl), dev_file=dev),
                              EmbeddingConfig(embedding=True))  # fmt: skip
    assert read.train == ["w1 w2", "w3"] and read.dropped == {"empty": 0, "duplicate": 1}

    tsv = tmp_path / "train.tsv"
    tsv.write_text("question\tanswer\tlabel\nw1 w2\tw3 w4\t1\nw5\tw6 w7\t0\n")
    data = DataConfig(train_file=str(tsv), dev_file=dev, text_columns=["question", "answer"])
    read = read_sentence_data(data, EmbeddingConfig(embedding=True))
    assert read.train == ["w1 w2", "w3 w4", "w5", "w6 w7"]
