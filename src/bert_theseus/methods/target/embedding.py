"""The target method on a sentence-transformers predecessor (`compress --embedding`).

Route kd-sliced trains it as it trains a classifier, from the last layer of each run of
consecutive layers (`--layers auto`; a classifier's are its bottom layers), their
heads and FFN neurons ranked by DynaBERT's importance and sliced to the width, distilled
from the predecessor (its sentence embedding, a `SentenceEncoder`'s `logits`, by MSE, and
the matched hidden states). Only the transformer is cut; pooling, dense layers and
normalisation are kept as they are. The importance is the gradient of the dev pairs' loss
(sentence-transformers' CoSENT): held-out sentences have no such loss, since their MSE to
the predecessor's own embeddings is zero at the predecessor, and so is its gradient.

The other routes are refused: theseus-width reloads its first stage's model as a classifier,
and dynabert-cell rewires and extracts classifiers. The shape is planned and met on PyTorch:
a sentence-transformers student's ONNX and OpenVINO files are `theseus export`'s (in the
layout its backends load), which the target report's export does not write.
"""

from __future__ import annotations

from collections.abc import Callable

from ..registry import MethodConfigError

ROUTE = "kd-sliced"
RUNTIMES = ("torch-fp32", "torch-bf16")


def is_sentence_encoder(model) -> bool:
    from ...embedding.model import SentenceEncoder

    return isinstance(model, SentenceEncoder)


def check_embedding(config, context) -> None:
    """Refuse, before anything is read, what the target cannot do with a sentence encoder;
    its runtime "auto" is torch-fp32."""
    from ...embedding.data import PAIRS

    if config.route != ROUTE:
        raise MethodConfigError(
            f"route '{config.route}' does not train sentence-embedding models: with "
            f"--embedding use --route {ROUTE}"
        )
    if context.task is not None and context.task is not PAIRS:
        raise MethodConfigError(
            "the width cut ranks heads by the gradient of the dev pairs' loss, which held-out "
            "sentences lack (their MSE to the predecessor's own embeddings is zero at the "
            "predecessor): pass a --dev-file of scored pairs"
        )
    if config.runtime == "auto":
        config.runtime = RUNTIMES[0]
    # The loss is the MSE to an embedding pooled from the last layer's states: a student
    # without that layer learns its output space from scratch (docs/results.md, 16).
    if config.layers == "auto":
        config.layers = "last-of-group"
    for flag, value in (("--runtime", config.runtime), ("--baseline", config.baseline)):
        if value not in RUNTIMES:
            raise MethodConfigError(
                f"{flag} {value}: with --embedding the target is timed on PyTorch (pass "
                f"{' or '.join(RUNTIMES)}); 'theseus export' writes the student's ONNX and "
                "OpenVINO files where sentence-transformers loads them"
            )


def cut_transformer(model, cut: Callable):
    """`cut(model)`; for a sentence encoder, a copy of it whose transformer is cut."""
    if is_sentence_encoder(model):
        return model.with_backbone(cut(model.backbone))
    return cut(model)
