"""RefBERT's references (reconstructed): for each input, the most similar other training
example, and the predecessor's last-layer states of every training example, stored once.

Similarity is TF-IDF cosine over the model tokenizer's tokens (special tokens left out; a
pair's two texts are one sequence), fitted by scikit-learn on the training set. Working on
token ids rather than words lets the model retrieve from what it is given, `input_ids`, so
evaluation, `predict` and `benchmark` need nothing new. An input never gets itself, nor any
training example identical to it after tokenisation, as its reference: on the training set
that would hand the student its own label, and dev inputs follow the same rule.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .config import STATES_KINDS

FOLDER = "references"
FILES = ("meta.json", "states.npy", "offsets.npy", "labels.npy", "tfidf.npz", "idf.npy",
         "hashes.npy")  # fmt: skip


class ReferenceIndex:
    """TF-IDF vectors of the training examples, and a hash of each one's token sequence.

    >>> index = ReferenceIndex.build([[5, 6, 7], [5, 8]], vocab_size=10, ignore_ids=[0])
    >>> index.nearest([[5, 6, 7]])  # (indices, cosine): never an identical sequence
    """

    def __init__(self, matrix: sp.csr_matrix, idf: np.ndarray, hashes: np.ndarray,
                 ignore_ids: list[int]):  # fmt: skip
        self.matrix, self.idf, self.hashes = matrix.tocsr(), idf, hashes
        self.ignore_ids = sorted(set(int(i) for i in ignore_ids))
        self._ignore = np.asarray(self.ignore_ids, dtype=np.int64)

    @classmethod
    def build(cls, sequences: list[list[int]], vocab_size: int, ignore_ids: Iterable[int]):
        # Here, not at the top: scikit-learn takes a second to import, and loading a saved
        # RefBERT model (transformers registers its class) does not need it.
        from sklearn.feature_extraction.text import TfidfTransformer

        index = cls(sp.csr_matrix((0, vocab_size)), np.ones(vocab_size), np.zeros(0, np.int64),
                    list(ignore_ids))  # fmt: skip
        kept = [index._strip(s) for s in sequences]
        tfidf = TfidfTransformer(smooth_idf=True)  # cosine: rows are L2-normalised
        matrix = tfidf.fit_transform(_counts(kept, vocab_size))
        return cls(matrix, tfidf.idf_, _hashes(kept), index.ignore_ids)

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def _strip(self, sequence) -> np.ndarray:
        """The sequence without special tokens (and ids past the vocabulary, which no
        training example holds)."""
        ids = np.asarray(sequence, dtype=np.int64)
        return ids[~np.isin(ids, self._ignore) & (ids < len(self.idf))]

    def similarities(self, sequences: list[list[int]]) -> np.ndarray:
        """Cosine of each sequence to every training example ([queries, examples]), with
        -inf where the training example is identical to the query."""
        from sklearn.preprocessing import normalize

        kept = [self._strip(s) for s in sequences]
        vectors = normalize(_counts(kept, len(self.idf)).multiply(self.idf).tocsr())
        scores = (vectors @ self.matrix.T).toarray()
        scores[_hashes(kept)[:, None] == self.hashes[None, :]] = -np.inf
        return scores

    def nearest(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The most similar non-identical training example of each sequence (ties: the
        first), and its cosine; index -1 where every training example is identical."""
        scores = self.similarities(sequences)
        best = scores.argmax(axis=1)
        similarity = scores[np.arange(len(best)), best]
        best[np.isneginf(similarity)] = -1
        return best, similarity

    def random(self, sequences: list[list[int]]) -> np.ndarray:
        """A training example drawn from a hash of each sequence (the same input always gets
        the same one), never an identical one; -1 where all are identical."""
        kept = [self._strip(s) for s in sequences]
        picks = []
        for digest in _hashes(kept):
            start = int(digest) % len(self)  # Python's % of a negative int is >= 0
            pick = -1
            for step in range(len(self)):  # the next non-identical one after the draw
                candidate = (start + step) % len(self)
                if self.hashes[candidate] != digest:
                    pick = candidate
                    break
            picks.append(pick)
        return np.asarray(picks, dtype=np.int64)

    def nbytes(self) -> int:
        parts = (self.matrix.data, self.matrix.indices, self.matrix.indptr, self.idf, self.hashes)
        return sum(part.nbytes for part in parts)


def _counts(sequences: list[np.ndarray], vocab_size: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    columns = np.concatenate(sequences) if sequences else np.zeros(0, np.int64)
    data = np.ones(len(columns), dtype=np.float64)
    return sp.csr_matrix((data, (rows, columns)), shape=(len(sequences), vocab_size))


def _hashes(sequences: list[np.ndarray]) -> np.ndarray:
    """A stable 64-bit hash of each token sequence (Python's hash() changes per process)."""
    digests = [hashlib.blake2b(s.astype("<i8").tobytes(), digest_size=8).digest()
               for s in sequences]  # fmt: skip
    return np.frombuffer(b"".join(digests), dtype="<i8").copy() if digests else np.zeros(0, "<i8")


class References:
    """The index and the stored states: what a RefBERT model carries besides its weights.

    `states` holds every training example's predecessor states back to back ([tokens, width],
    fp16; one row each for "cls"), example i at rows offsets[i]:offsets[i + 1].
    """

    def __init__(self, index: ReferenceIndex, states: np.ndarray, offsets: np.ndarray,
                 labels: np.ndarray, kind: str):  # fmt: skip
        self.index, self.states, self.offsets, self.labels, self.kind = (
            index, states, offsets, labels, kind)  # fmt: skip

    @property
    def width(self) -> int:
        return self.states.shape[1]

    @classmethod
    @torch.no_grad()
    def build(cls, teacher, batches: Iterable[dict], kind: str, ignore_ids: Iterable[int],
              device="cpu") -> References:  # fmt: skip
        """Run the frozen predecessor over the training set once (in order) and keep its
        last-layer states: every real token's ("tokens") or the first token's ("cls")."""
        if kind not in STATES_KINDS:
            raise ValueError(f"reference states '{kind}': use one of {', '.join(STATES_KINDS)}")
        teacher = teacher.eval().to(device)
        sequences, chunks, lengths, labels = [], [], [], []
        for batch in batches:
            mask = batch["attention_mask"]
            inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            last = teacher(**inputs, output_hidden_states=True).hidden_states[-1].float().cpu()
            for row, ids, keep in zip(last, batch["input_ids"], mask, strict=True):
                real = keep.bool()
                sequences.append(ids[real].tolist())
                kept = row[real] if kind == "tokens" else row[:1]
                chunks.append(kept.half().numpy())
                lengths.append(len(kept))
            labels.append(batch["labels"].float().numpy())
        vocab = teacher.config.vocab_size
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        states = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float16)
        index = ReferenceIndex.build(sequences, vocab, ignore_ids)
        return cls(index, states, offsets, np.concatenate(labels), kind)

    def gather(self, picks: np.ndarray, device=None, dtype=torch.float32):
        """Stored states of the picked examples, padded: ([batch, m, width], mask [batch, m]);
        a pick of -1 gets no reference (an all-zero mask)."""
        spans = [(self.offsets[i], self.offsets[i + 1]) if i >= 0 else (0, 0) for i in picks]
        longest = max([end - start for start, end in spans] + [1])
        states = np.zeros((len(picks), longest, self.width), dtype=np.float16)
        mask = np.zeros((len(picks), longest), dtype=np.int64)
        for row, (start, end) in enumerate(spans):
            states[row, : end - start] = self.states[start:end]
            mask[row, : end - start] = 1
        return (torch.from_numpy(states).to(device=device, dtype=dtype),
                torch.from_numpy(mask).to(device))  # fmt: skip

    def nbytes(self) -> dict[str, int]:
        return {"states": int(self.states.nbytes) + int(self.offsets.nbytes),
                "index": int(self.index.nbytes())}  # fmt: skip

    def save(self, folder: Path) -> None:
        """Write the files under `folder`/references. Each is written beside its target and
        then moved over it: the states may be memory-mapped from the very file they replace
        (a loaded model saved back into its own folder)."""
        folder = Path(folder) / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "ignore_ids": self.index.ignore_ids,
                "examples": len(self.index)}  # fmt: skip
        writers = {
            "meta.json": lambda f: f.write(json.dumps(meta, indent=2).encode() + b"\n"),
            "states.npy": lambda f: np.save(f, np.ascontiguousarray(self.states)),
            "offsets.npy": lambda f: np.save(f, self.offsets),
            "labels.npy": lambda f: np.save(f, self.labels),
            "tfidf.npz": lambda f: sp.save_npz(f, self.index.matrix),
            "idf.npy": lambda f: np.save(f, self.index.idf),
            "hashes.npy": lambda f: np.save(f, self.index.hashes),
        }
        for name, write in writers.items():
            partial = folder / f".{name}.partial"
            with open(partial, "wb") as handle:
                write(handle)
            os.replace(partial, folder / name)

    @classmethod
    def load(cls, paths: dict[str, Path]) -> References:
        """From the saved files (name -> path); the states are memory-mapped, not read."""
        meta = json.loads(Path(paths["meta.json"]).read_text())
        index = ReferenceIndex(sp.load_npz(paths["tfidf.npz"]), np.load(paths["idf.npy"]),
                               np.load(paths["hashes.npy"]), meta["ignore_ids"])  # fmt: skip
        states = np.load(paths["states.npy"], mmap_mode="r")
        return cls(index, states, np.load(paths["offsets.npy"]), np.load(paths["labels.npy"]),
                   meta["kind"])  # fmt: skip
