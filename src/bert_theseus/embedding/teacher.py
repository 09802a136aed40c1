"""The teacher's sentence embeddings: the training targets, computed once and kept.

They depend only on the predecessor, the sentences and the token limit, so they are
computed once (fp32, the teacher in eval mode) and stored in fp16 in the cache folder
(`BERT_THESEUS_CACHE`), keyed by those three: every epoch, every resume and every
`compare` run on the same data reads them back instead of running the teacher again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..cache import cache_root
from .model import SentenceEncoder

BATCH = 64
FORMAT = 1  # bumped when what is stored changes


@dataclass
class Targets:
    embeddings: torch.Tensor  # (sentences, dimension), fp16
    path: Path
    reused: bool
    seconds: float

    def describe(self) -> str:
        rows, width = self.embeddings.shape
        size = self.embeddings.numel() * self.embeddings.element_size() / 2**20
        how = "read back from" if self.reused else f"computed in {self.seconds:.0f} s, kept in"
        return f"teacher embeddings: {rows} x {width}, fp16, {size:.1f} MiB, {how} {self.path}"


def teacher_embeddings(
    teacher: SentenceEncoder, sentences: list[str], tokenizer, max_length: int
) -> Targets:
    """The teacher's embedding of each sentence, from the cache when it holds them."""
    path = cache_root() / "embeddings" / f"{cache_key(teacher, sentences, max_length)}.safetensors"
    if path.is_file():
        return Targets(load_file(path)["embeddings"], path, True, 0.0)
    start = time.perf_counter()
    embeddings = embed(teacher, sentences, tokenizer, max_length).half()
    _save_atomic(embeddings, path)
    return Targets(embeddings, path, False, time.perf_counter() - start)


@torch.no_grad()
def embed(encoder: SentenceEncoder, sentences: list[str], tokenizer, max_length: int):
    """Embeddings of `sentences` in fp32, the encoder in eval mode, in their order."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    # Batched by length, so a batch pads its short sentences to a near length (a random
    # order pads most of them to its longest); padding is masked, so an embedding changes
    # by float rounding at most.
    lengths = [len(ids) for ids in tokenizer(sentences, truncation=True,
                                             max_length=max_length)["input_ids"]]  # fmt: skip
    order = sorted(range(len(sentences)), key=lengths.__getitem__)
    embeddings = None
    try:
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            batch = tokenizer([sentences[i] for i in rows], truncation=True,
                              max_length=max_length, padding=True, return_tensors="pt")  # fmt: skip
            inputs = {k: v.to(device) for k, v in batch.items()}
            out = encoder(**inputs).logits.float().cpu()
            if embeddings is None:
                embeddings = torch.empty(len(sentences), out.shape[1])
            embeddings[torch.tensor(rows)] = out
    finally:
        encoder.train(was_training)
    return embeddings


def cache_key(teacher: SentenceEncoder, sentences: list[str], max_length: int) -> str:
    """A hash of the teacher's weights and modules, the sentences and the token limit."""
    digest = hashlib.sha256()
    head = [type(module).__name__ for module in teacher.head]
    digest.update(json.dumps([FORMAT, max_length, head]).encode())
    for name, tensor in sorted(teacher.state_dict().items()):
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    for sentence in sentences:
        digest.update(sentence.encode() + b"\0")
    return digest.hexdigest()[:24]


def _save_atomic(embeddings: torch.Tensor, path: Path) -> None:
    """Written aside and renamed into place: a reader finds all of them or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        save_file({"embeddings": embeddings.contiguous()}, partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
