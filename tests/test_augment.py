"""--augment N: TinyBERT's data augmentation, deterministic by seed, label- and pair-keeping,
never a copy nor an empty text, cached, batched in masked-LM mode; bad input is one line."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from conftest import SPECIALS, WORDS, sentence
from tiny import tiny_model
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from bert_theseus.cli import main
from bert_theseus.data import augment as augmentation
from bert_theseus.data.augment import (
    CANDIDATES,
    MLM_BATCH,
    WORD,
    augment_training,
    single_ids,
    whole_words,
)

FAST = ["--batch-size", "8", "--learning-rate", "2e-3", "--mixed-precision", "no"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("BERT_THESEUS_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def tokenizer():
    vocab = {token: i for i, token in enumerate(SPECIALS + WORDS + ["##s"])}
    return BertTokenizerFast(vocab=vocab)


@pytest.fixture(scope="module")
def predecessor(tokenizer):
    return tiny_model("bert", seed=3, layers=2)


def _singles(count=30, seed=0):
    rng = random.Random(seed)
    return [((sentence(rng, i % 2),), i % 2) for i in range(count)]


def _pairs(count=20, seed=1):
    rng = random.Random(seed)
    return [((sentence(rng, i % 2), sentence(rng, 1) + "."), float(i % 5)) for i in range(count)]


def _replaceable(text: str, tokenizer) -> int:
    return sum(i is not None for i in single_ids(tokenizer, WORD.findall(text)))


def test_the_set_is_deterministic_by_seed(tokenizer, predecessor, cache):
    examples = _singles()
    first = augment_training(examples, 3, None, predecessor, tokenizer, seed=7)
    for path in cache.rglob("*.jsonl"):
        path.unlink()  # drawn anew, not read back
    again = augment_training(examples, 3, None, predecessor, tokenizer, seed=7)
    other = augment_training(examples, 3, None, predecessor, tokenizer, seed=8)
    assert not again.reused and again.examples == first.examples
    assert other.examples != first.examples and len(other.examples) == len(first.examples)


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_labels_and_pairs_are_kept_and_no_text_is_a_copy_or_empty(kind, tokenizer, predecessor):
    examples = _singles() if kind == "single" else _pairs()
    examples.append((("[UNK]",) * len(examples[0][0]), examples[0][1]))  # nothing to replace
    count = 4
    augmented = augment_training(examples, count, None, predecessor, tokenizer, seed=1)
    assert augmented.skipped == 1 and len(augmented.examples) == count * (len(examples) - 1)
    for index, (texts, label) in enumerate(augmented.examples):
        source_texts, source_label = examples[index // count]  # N per example, in order
        assert label == source_label and len(texts) == len(source_texts)
        for new, old in zip(texts, source_texts, strict=True):
            assert new.strip() and new != old  # every side had a word to replace
            assert len(WORD.findall(new)) == len(WORD.findall(old))  # words swapped, not cut
            assert WORD.sub("", new) == WORD.sub("", old)  # the text between them kept


def test_each_word_is_replaced_with_probability_p_t(tokenizer, predecessor):
    rng = random.Random(2)
    long = [((" ".join(rng.choice(WORDS) for _ in range(20)),), 0) for _ in range(40)]
    augmented = augment_training(long, 5, None, predecessor, tokenizer, seed=3)
    changed = total = 0
    for index, (texts, _) in enumerate(augmented.examples):
        old = WORD.findall(long[index // 5][0][0])
        new = WORD.findall(texts[0])
        changed += sum(a != b for a, b in zip(old, new, strict=True))
        total += len(old)
    assert abs(changed / total - 0.4) < 0.03, changed / total  # 4,000 words drawn


def test_candidates_are_whole_words_and_their_nearest_neighbours(tokenizer, predecessor):
    words = whole_words(tokenizer)
    assert set(words.values()) == set(WORDS)  # no [CLS], [MASK]..., no "##s"
    embeddings = predecessor.bert.embeddings.word_embeddings.weight
    candidates = augmentation.neighbour_candidates([(("good",), 1)], embeddings, tokenizer)
    found = candidates(0, 0, 0, "good")
    matrix = torch.nn.functional.normalize(embeddings, dim=-1)
    good = tokenizer.convert_tokens_to_ids("good")
    ids = sorted(words)
    similarity = matrix[ids] @ matrix[good]
    nearest = [words[ids[i]] for i in similarity.argsort(descending=True).tolist()]
    assert found == [w for w in nearest if w != "good"][:CANDIDATES]
    assert candidates(0, 0, 0, "unknownword") == []  # [UNK]: several pieces, kept as it is


@pytest.fixture(scope="module")
def masked_lm_dir(tmp_path_factory, tokenizer):
    """A tiny BertForMaskedLM built in code, saved with its tokenizer."""
    folder = tmp_path_factory.mktemp("masked-lm")
    torch.manual_seed(4)
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 48, "max_position_embeddings": 64}  # fmt: skip
    config = BertConfig(vocab_size=len(tokenizer), **sizes)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_masked_lm_mode_takes_the_models_top_words_in_batches(
    masked_lm_dir, tokenizer, predecessor, monkeypatch
):
    examples = _singles(count=20)
    calls = []
    real = augmentation.load_masked_lm

    def counting(name, trust_remote_code=False):
        model, loaded = real(name, trust_remote_code)
        model.register_forward_hook(lambda module, args, out: calls.append(len(out.logits)))
        return model, loaded

    monkeypatch.setattr(augmentation, "load_masked_lm", counting)
    augmented = augment_training(examples, 2, str(masked_lm_dir), predecessor, tokenizer, seed=1)
    masked = {
        text[:m.start()] + "[MASK]" + text[m.end():]
        for (texts, _) in examples for text in texts for m in WORD.finditer(text)
    }  # fmt: skip
    assert sum(calls) == len(masked) and len(calls) == math.ceil(len(masked) / MLM_BATCH)
    assert "masked language model" in augmented.mode and len(augmented.examples) == 40
    # The first example's first replaced word is one of the model's top words there.
    model, _ = real(str(masked_lm_dir))
    old, new = examples[0][0][0], augmented.examples[0][0][0]
    position = next(i for i, (a, b) in enumerate(zip(WORD.findall(old), WORD.findall(new),
                                                     strict=True)) if a != b)  # fmt: skip
    match = list(WORD.finditer(old))[position]
    inputs = tokenizer(old[: match.start()] + "[MASK]" + old[match.end() :], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, inputs["input_ids"][0] == tokenizer.mask_token_id][0]
    allowed = sorted(whole_words(tokenizer))
    ranked = [tokenizer.convert_ids_to_tokens(allowed[i]) for i in logits[allowed].argsort(
        descending=True).tolist()]  # fmt: skip
    top = [w for w in ranked if w != match.group()][:CANDIDATES]
    assert WORD.findall(new)[position] in top


def test_the_set_is_kept_and_read_back_without_a_model(
    masked_lm_dir, tokenizer, predecessor, cache, monkeypatch
):
    examples = _pairs()
    first = augment_training(examples, 2, str(masked_lm_dir), predecessor, tokenizer, seed=1)
    (stored,) = cache.glob("augmented/*.jsonl")
    assert not first.reused and stored == first.path and not list(cache.rglob("*.partial"))

    def no_model(*args, **kwargs):
        raise AssertionError("the cached set must be read back, not drawn")

    monkeypatch.setattr(augmentation, "load_masked_lm", no_model)
    monkeypatch.setattr(augmentation, "neighbour_candidates", no_model)
    again = augment_training(examples, 2, str(masked_lm_dir), predecessor, tokenizer, seed=1)
    assert again.reused and again.examples == first.examples
    assert again.seconds == first.seconds  # the build time, as recorded


def test_a_build_killed_while_writing_leaves_nothing_to_read_back(
    tokenizer, predecessor, cache, monkeypatch
):
    """SIGKILL during augmentation: only a .partial file (never read) can be left behind,
    and the next run draws the same set anew."""
    examples = _singles()
    expected = augment_training(examples, 2, None, predecessor, tokenizer, seed=5)
    expected.path.rename(expected.path.with_name(f".{expected.path.name}.999.partial"))
    partial = next(cache.rglob("*.partial"))
    partial.write_text(partial.read_text()[:100])  # cut where the kill landed
    again = augment_training(examples, 2, None, predecessor, tokenizer, seed=5)
    assert not again.reused and again.examples == expected.examples


# --- runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_bert_dir, sst2_dir):
    out = tmp_path_factory.mktemp("augment-teacher") / "teacher"
    args = ["finetune", "--model", str(tiny_bert_dir), "--task", "sst2"]
    args += ["--data-dir", str(sst2_dir), "--output", str(out), "--max-steps", "20", *FAST]
    assert main(args) == 0
    return out


def _compress(model, sst2_dir, out, *more):
    return ["compress", "--model", str(model), "--task", "sst2", "--data-dir", str(sst2_dir),
            "--output", str(out), "--successor-layers", "2", "--method", "kd", *FAST,
            *more]  # fmt: skip


def test_kd_trains_on_the_augmented_set_and_a_second_run_reads_it_back(
    teacher, sst2_dir, tmp_path, capsys
):
    first = tmp_path / "first"
    assert main([*_compress(teacher, sst2_dir, first, "--augment", "2"), "--max-steps", "4"]) == 0
    printed = capsys.readouterr()
    said = printed.err + printed.out
    assert "augment: 128 texts (2 per training example, candidates: nearest words" in said
    assert "kept in" in said and "built in" in said and "MiB" in said
    assert "data: 64 labelled training examples and 128 augmented (teacher term only)" in said
    metrics = json.loads((first / "metrics.json").read_text())
    assert metrics["training_examples"] == {"labelled": 64, "unlabelled": 0, "augmented": 128}
    assert "0 unlabelled and 128 augmented" in (first / "README.md").read_text()
    recorded = json.loads((first / "run_config.json").read_text())["unlabelled"]
    assert recorded["augment"] == 2 and recorded["augment_model"] is None

    second = tmp_path / "second"
    assert main([*_compress(teacher, sst2_dir, second, "--augment", "2"), "--max-steps", "4"]) == 0
    assert "read back from" in capsys.readouterr().err


# --- refusals -------------------------------------------------------------------------------


def _refused(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("theseus: error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (["--augment", "-1"], "--augment -1 must be 0 or more"),
        (["--augment-model", "MODEL"], "teacher needs --augment N"),
        (["--augment", "0", "--augment-model", "MODEL"], "needs --augment N"),
        (["--augment", "2", "--augment-model", "CLASSIFIER"], "is not a masked language model"),
        (["--augment", "2", "--augment-model", "MISSING"], "cannot be loaded as a masked"),
        (["--augment", "2", "--method", "theseus"], "method 'theseus' has no teacher term"),
    ],
)
def test_bad_augmentation_settings_are_one_line_and_nothing_written(
    more, message, teacher, sst2_dir, tmp_path, cache, capsys
):
    out = tmp_path / "out"
    names = {"MODEL": str(teacher), "CLASSIFIER": str(teacher), "MISSING": str(tmp_path / "no")}
    more = [names.get(item, item) for item in more]
    line = _refused([*_compress(teacher, sst2_dir, out), *more], capsys)
    assert message in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert not list(cache.rglob("*.jsonl"))  # no augmented set either
