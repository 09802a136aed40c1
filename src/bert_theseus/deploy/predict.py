"""`theseus predict`: let a saved model answer, from a PyTorch folder or an ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runtime import DeployError, chosen_variant, is_onnx_folder, load_variant, torch_logits


def read_texts(
    texts: list[str] | None, pairs: list[str] | None, file: str | None
) -> tuple[list[str], list[str] | None]:
    """Texts (and second texts of pairs) from flags or a file: one example per line, a
    tab between the two texts of a pair."""
    if file:
        path = Path(file)
        if not path.is_file():
            raise DeployError(f"--file {file} does not exist: pass a text file, one per line")
        rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
        if not rows:
            raise DeployError(f"--file {file} holds no text: write one example per line")
        if len({len(r) for r in rows}) != 1 or len(rows[0]) > 2:
            raise DeployError(
                f"--file {file}: every line must hold one text, or two separated by a tab"
            )
        texts = [r[0] for r in rows]
        pairs = [r[1] for r in rows] if len(rows[0]) == 2 else None
    if not texts:
        raise DeployError("nothing to predict: pass --text 'some text' or --file FILE")
    if pairs is not None and len(pairs) != len(texts):
        raise DeployError(
            f"{len(texts)} --text but {len(pairs)} --text-pair: give one pair text per text"
        )
    return texts, pairs


def predict_texts(
    model: str,
    texts: list[str],
    pairs: list[str] | None = None,
    int8: bool = False,
    max_length: int = 128,
    batch_size: int = 32,
    trust_remote_code: bool = False,
    variant: str | None = None,
) -> list[dict]:
    """Label and score (or regression value) of each text, from either format.

    >>> predict_texts("exports/successor", ["a fine film"], int8=True)
    [{'text': 'a fine film', 'label': 'positive', 'score': 0.97}]
    """
    from transformers import AutoConfig

    from ..models import check_tokenizer, load_tokenizer

    if is_onnx_folder(model):
        onnx = load_variant(model, variant or ("onnx-int8" if int8 else chosen_variant(model)))
        config = AutoConfig.from_pretrained(model)
        tokenizer = load_tokenizer(model)
        check_tokenizer(tokenizer, None, model)  # an export copied without its tokenizer

        def run(batch):
            return onnx.logits(batch)
    else:
        if int8 or variant:
            raise DeployError(
                f"{model} is a PyTorch folder; --int8 and --variant need an export "
                "('theseus export --int8', or --backend auto)"
            )
        from ..models import load_model

        classifier, tokenizer = load_model(model, trust_remote_code)
        config = classifier.config

        def run(batch):
            return torch_logits(classifier, batch)

    regression = config.problem_type == "regression" or config.num_labels == 1
    answers = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        second = pairs[start : start + batch_size] if pairs else None
        batch = tokenizer(
            chunk, second, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        logits = run(dict(batch))
        for index, row in enumerate(logits):
            answer = {"text": chunk[index]}
            if second:
                answer["text_pair"] = second[index]
            if regression:
                answer["value"] = round(float(row[0]), 4)
            else:
                probabilities = np.exp(row - row.max())
                probabilities /= probabilities.sum()
                best = int(probabilities.argmax())
                answer["label"] = config.id2label[best]
                answer["score"] = round(float(probabilities[best]), 4)
            answers.append(answer)
    return answers
