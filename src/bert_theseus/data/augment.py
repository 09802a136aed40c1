"""TinyBERT's data augmentation (Jiao et al., 2020, Algorithm 1; its official
data_augmentation.py): N new texts per training example, each word replaced with
probability p_t = 0.4 by one of its K = 15 candidates.

Candidates of a word, found on the original text as TinyBERT's code does (so one batched
pass finds them all): with a masked language model (`--augment-model`), a word that is one
piece of its vocabulary is masked and the model's top K whole words at that position are
its candidates; without one, they are the word's K nearest whole words (cosine) in the
predecessor's own input-embedding matrix. A word of several pieces stays as it is
(TinyBERT looks those up in GloVe). Candidates are whole-word vocabulary entries: no
special token, no word piece, never the word itself.

Each side of a pair is augmented. A side with a candidate always changes (at least one
replacement is forced), so no new text is a copy of its source, and none is empty; an
example with no replaceable word gives none. Augmented rows keep their source's label in
the stored set, but train like unlabelled rows (the teacher term alone): a swapped word can
flip a label ("good" -> "bad"), and TinyBERT distils on them from the teacher's outputs.

The set depends on the texts, N, the candidate source and the seed alone, so it is built
once and kept in the cache folder (`BERT_THESEUS_CACHE`/augmented/KEY.jsonl, written aside
and renamed into place): `compare`'s runs and resumes read it back.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_root
from .readers import DataError, Example

P_REPLACE = 0.4  # TinyBERT's p_t
CANDIDATES = 15  # TinyBERT's K
MLM_BATCH = 64  # masked sentences per forward pass of the masked language model
FORMAT = 1  # bumped when what is stored changes
WORD = re.compile(r"\w+")  # what may be replaced; the text between words is kept as it is


@dataclass
class Augmented:
    """The augmented examples (with their sources' labels) and where they are kept."""

    examples: list[Example]
    path: Path
    reused: bool
    seconds: float  # what building them took (when read back: what it took then)
    mode: str
    skipped: int  # training examples with no word to replace

    def describe(self, per_example: int) -> str:
        size = self.path.stat().st_size / 2**20
        how = "read back from" if self.reused else "kept in"
        plural = "s" if self.skipped != 1 else ""
        skipped = f"; {self.skipped:,} example{plural} had no word to replace" * bool(self.skipped)
        return (
            f"augment: {len(self.examples):,} texts ({per_example} per training example, "
            f"{self.mode}{skipped}), built in {self.seconds:.1f} s, {size:.1f} MiB, {how} "
            f"{self.path}"
        )


# --- the draw -------------------------------------------------------------------------------


def draw(
    examples: list[Example],
    candidates: Callable[[int, int, int, str], list[str]],
    count: int,
    seed: int,
) -> tuple[list[Example], int]:
    """`count` new examples per example, drawn from `random.Random(seed)` in order;
    `candidates(example, side, position, word)` lists the candidates of the word at that
    position of the example's side. Returns them and how many examples had no word to
    replace."""
    rng = random.Random(seed)
    augmented, skipped = [], 0
    for index, (texts, label) in enumerate(examples):
        spans = [[m.span() for m in WORD.finditer(text)] for text in texts]
        options = [
            [candidates(index, side, i, texts[side][s:e]) for i, (s, e) in enumerate(spans[side])]
            for side in range(len(texts))
        ]
        if not any(any(side) for side in options) or not all(t.strip() for t in texts):
            skipped += 1
            continue
        for _ in range(count):
            new = tuple(
                _draw_side(text, side_spans, side_options, rng)
                for text, side_spans, side_options in zip(texts, spans, options, strict=True)
            )
            augmented.append((new, label))
    return augmented, skipped


def _draw_side(text: str, spans, options: list[list[str]], rng: random.Random) -> str:
    """One new text: each word with candidates replaced with probability P_REPLACE, and
    one forced where the draw replaced none (a copy of its source teaches nothing new)."""
    choices = {i: rng.choice(o) for i, o in enumerate(options) if o and rng.random() < P_REPLACE}
    replaceable = [i for i, o in enumerate(options) if o]
    if replaceable and not choices:
        forced = rng.choice(replaceable)
        choices[forced] = rng.choice(options[forced])
    pieces, last = [], 0
    for i, (start, end) in enumerate(spans):
        if i in choices:
            pieces += [text[last:start], choices[i]]
            last = end
    return "".join(pieces) + text[last:]


# --- candidates -----------------------------------------------------------------------------


def single_ids(tokenizer, words: list[str]) -> list[int | None]:
    """Each word's vocabulary id where it is one piece (alone, or after a space as inside a
    sentence for byte-level BPE), else None; an unknown word ([UNK]) is no piece."""
    if not words:
        return []
    special = set(tokenizer.all_special_ids)
    plain = tokenizer(words, add_special_tokens=False)["input_ids"]
    spaced = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    found = [
        a[0] if len(a) == 1 else (b[0] if len(b) == 1 else None)
        for a, b in zip(plain, spaced, strict=True)
    ]
    return [None if i in special else i for i in found]


def whole_words(tokenizer) -> dict[int, str]:
    """The vocabulary entries that are whole words, by id: one piece that reads as a word
    (letters, digits), not a special token, not a word piece ("##ing")."""
    special = set(tokenizer.all_special_ids)
    ids = sorted(i for i in tokenizer.get_vocab().values() if i not in special)
    texts = [t.strip() for t in tokenizer.batch_decode([[i] for i in ids])]
    words = {i: t for i, t in zip(ids, texts, strict=True) if WORD.fullmatch(t)}
    own = single_ids(tokenizer, list(words.values()))
    return {i: t for (i, t), back in zip(words.items(), own, strict=True) if back == i}


def word_ids(examples: list[Example], tokenizer) -> dict[str, int | None]:
    """Every word of the examples' texts, with its id where it is one piece (`single_ids`)."""
    unique = sorted({m.group() for texts, _ in examples for t in texts for m in WORD.finditer(t)})
    return dict(zip(unique, single_ids(tokenizer, unique), strict=True))


def neighbour_candidates(examples: list[Example], embeddings, tokenizer) -> Callable:
    """Candidates from the input-embedding matrix `embeddings` (vocab x width): each
    single-piece word's CANDIDATES nearest whole words by cosine."""
    import torch
    import torch.nn.functional as F

    words, ids = whole_words(tokenizer), word_ids(examples, tokenizer)
    queries = sorted({i for i in ids.values() if i is not None})
    vocab = torch.tensor(sorted(words))
    matrix = embeddings.detach().float().cpu()
    normed = F.normalize(matrix[vocab], dim=-1)
    nearest: dict[int, list[str]] = {}
    for start in range(0, len(queries), 1024):
        chunk = torch.tensor(queries[start : start + 1024])
        similarity = F.normalize(matrix[chunk], dim=-1) @ normed.T
        similarity[vocab.unsqueeze(0) == chunk.unsqueeze(1)] = -float("inf")  # not itself
        top = similarity.topk(min(CANDIDATES + 1, len(vocab)), dim=-1).indices
        for query, row in zip(chunk.tolist(), top.tolist(), strict=True):
            nearest[query] = [words[int(vocab[j])] for j in row]

    def candidates(index: int, side: int, position: int, word: str) -> list[str]:
        found = ids.get(word)
        return _other(word, nearest.get(found, [])) if found is not None else []

    return candidates


def masked_lm_candidates(examples: list[Example], model, tokenizer) -> Callable:
    """Candidates from a masked language model: each single-piece word masked in its own
    text, the model's top whole words there; MLM_BATCH masked texts per forward pass."""
    import torch

    words, ids = whole_words(tokenizer), word_ids(examples, tokenizer)
    allowed = torch.zeros(len(tokenizer), dtype=torch.bool)
    allowed[torch.tensor(sorted(words))] = True
    masked: dict[str, int] = {}  # masked text -> its row of predictions
    where: dict[tuple[int, int, int], int] = {}
    for index, (texts, _) in enumerate(examples):
        for side, text in enumerate(texts):
            for word, match in enumerate(WORD.finditer(text)):
                if ids[match.group()] is not None:
                    key = text[: match.start()] + tokenizer.mask_token + text[match.end() :]
                    where[index, side, word] = masked.setdefault(key, len(masked))
    predicted = _predict(model, tokenizer, list(masked), allowed)

    def candidates(index: int, side: int, position: int, word: str) -> list[str]:
        row = where.get((index, side, position))
        if row is None or predicted[row] is None:
            return []
        return _other(word, [words[i] for i in predicted[row]])

    return candidates


def _predict(model, tokenizer, texts: list[str], allowed) -> list[list[int] | None]:
    """The top whole-word ids at the mask of each text (None where truncation cut it, or
    the text held a mask of its own), in batches of texts of near length."""
    import torch

    device = next(model.parameters()).device
    allowed = allowed.to(device)
    length = min(getattr(tokenizer, "model_max_length", 512) or 512, 512)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding
    top: list[list[int] | None] = [None] * len(texts)
    with torch.no_grad():
        for start in range(0, len(order), MLM_BATCH):
            rows = order[start : start + MLM_BATCH]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                              max_length=length, return_tensors="pt").to(device)  # fmt: skip
            found = batch["input_ids"] == tokenizer.mask_token_id
            logits = model(**batch).logits
            # Only the masked position's row of each text leaves the device.
            at_mask = logits[torch.arange(len(rows), device=device), found.int().argmax(dim=1)]
            scores = at_mask.float().masked_fill(~allowed[: at_mask.shape[-1]], -float("inf"))
            best = scores.topk(CANDIDATES + 1, dim=-1).indices.cpu().tolist()
            for row, count, ids in zip(rows, found.sum(dim=1).tolist(), best, strict=True):
                top[row] = ids if count == 1 else None
    return top


def _other(word: str, options: list[str]) -> list[str]:
    """Up to CANDIDATES of `options`, without the word itself (in any case)."""
    kept = [o for o in options if o.lower() != word.lower()]
    return list(dict.fromkeys(kept))[:CANDIDATES]


# --- the cache ------------------------------------------------------------------------------


def augmented_path(key: str) -> Path:
    return cache_root() / "augmented" / f"{key}.jsonl"


def cache_key(examples: list[Example], count: int, mode: list, seed: int) -> str:
    """A hash of all the set depends on: the texts and labels, N, the candidate source
    (`mode`: its name and what identifies its weights), the seed, p_t and K."""
    digest = hashlib.sha256()
    digest.update(json.dumps([FORMAT, count, mode, seed, P_REPLACE, CANDIDATES]).encode())
    for texts, label in examples:
        digest.update(json.dumps([list(texts), label]).encode() + b"\0")
    return digest.hexdigest()[:24]


def read_augmented(path: Path) -> tuple[list[Example], dict]:
    """The stored set and its header."""
    with path.open(encoding="utf-8") as handle:
        header = json.loads(handle.readline())
        rows = [json.loads(line) for line in handle]
    return [(tuple(row["texts"]), row["label"]) for row in rows], header


def write_augmented(path: Path, examples: list[Example], header: dict) -> None:
    """Written aside and renamed into place: a killed build leaves no file to read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(header) + "\n")
            for texts, label in examples:
                handle.write(json.dumps({"texts": list(texts), "label": label}) + "\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def augment(
    examples: list[Example],
    count: int,
    seed: int,
    mode: str,
    identity: list,
    source: Callable[[], Callable],
) -> Augmented:
    """The augmented set of `examples`: read back when the cache holds it, else drawn with
    the candidates `source()` builds (it loads or runs a model only then) and kept."""
    path = augmented_path(cache_key(examples, count, identity, seed))
    if path.is_file():
        stored, header = read_augmented(path)
        return Augmented(stored, path, True, header["seconds"], mode, header["skipped"])
    start = time.perf_counter()
    drawn, skipped = draw(examples, source(), count, seed)
    seconds = round(time.perf_counter() - start, 3)
    header = {"format": FORMAT, "count": count, "mode": mode, "seed": seed,
              "sources": len(examples), "skipped": skipped, "seconds": seconds}  # fmt: skip
    write_augmented(path, drawn, header)
    return Augmented(drawn, path, False, seconds, mode, skipped)


def augment_training(
    examples: list[Example],
    count: int,
    model: str | None,
    predecessor,
    tokenizer,
    seed: int,
    trust_remote_code: bool = False,
    device="cpu",
) -> Augmented:
    """TinyBERT's augmented set of the training `examples`: candidates from the masked
    language model `model` when given, else from the predecessor's input embeddings."""
    if model:
        identity = ["masked-lm", model, _files_digest(model)]
        mode = f"candidates from the masked language model {model}"

        def source():
            masked_lm, masked_tokenizer = load_masked_lm(model, trust_remote_code)
            return masked_lm_candidates(examples, masked_lm.to(device), masked_tokenizer)
    else:
        embeddings = predecessor.get_input_embeddings().weight
        identity = ["embedding", _tensor_digest(embeddings), _vocab_digest(tokenizer)]
        mode = "candidates: nearest words in the predecessor's input embeddings"

        def source():
            return neighbour_candidates(examples, embeddings, tokenizer)

    return augment(examples, count, seed, mode, identity, source)


def load_masked_lm(name: str, trust_remote_code: bool = False):
    """The masked language model `name` and its tokenizer; one line for a model that is not
    one (its masked-LM head would be drawn at random) or that cannot be loaded."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from ..models import ModelError, first_line

    fix = "pass a masked language model, e.g. bert-base-uncased for an uncased BERT"
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            name, trust_remote_code=trust_remote_code, output_loading_info=True
        )
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as error:  # a missing folder, an unknown id, a model of no such class
        raise ModelError(f"--augment-model {name} cannot be loaded as a masked language model "
                         f"({first_line(error)}): {fix}") from None  # fmt: skip
    missing = info.get("missing_keys") or []
    if missing or tokenizer.mask_token is None:
        what = f"it lacks {sorted(missing)[0]}" if missing else "its tokenizer has no mask token"
        raise ModelError(f"--augment-model {name} is not a masked language model ({what}): {fix}")
    return model.eval(), tokenizer


def _files_digest(name: str) -> str:
    """What identifies a local model folder's weights without reading them: its files'
    names, sizes and times (a Hub id is identified by its name)."""
    folder = Path(name)
    if not folder.is_dir():
        return ""
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]


def _tensor_digest(tensor) -> str:
    import torch

    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]


def _vocab_digest(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def check_count(count: int | None, model: str | None) -> None:
    """Refuse a negative --augment, and --augment-model without --augment N."""
    if count is not None and count < 0:
        raise DataError(f"--augment {count} must be 0 or more: the new texts per example")
    if model and not count:
        raise DataError(f"--augment-model {model} needs --augment N (new texts per example)")
