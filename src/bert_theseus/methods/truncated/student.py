"""The baselines' student: the predecessor (or a pre-trained model) cut to its bottom layers."""

from __future__ import annotations

import copy

from accelerate.utils import set_seed
from torch import nn
from transformers import PreTrainedModel

from ...arch import find_layers_path, replace_submodule
from ...models import ModelError, load_model
from ..registry import MethodConfigError


def truncate(
    model: PreTrainedModel,
    layers: int,
    layers_path: str | None = None,
    keep: list[int] | None = None,
) -> PreTrainedModel:
    """A copy of `model` keeping its embeddings, head and its bottom `layers` layers (or
    the layers `keep` names).

    This is the student of every baseline, and it starts where a Theseus successor
    starts (successor i = predecessor layer i), so the methods differ only in training.

    >>> student = truncate(predecessor, 3)   # a plain 3-layer model of the same class
    >>> student = truncate(predecessor, 4, keep=[1, 4, 7, 10])
    """
    path = find_layers_path(model, layers_path)
    depth = len(model.get_submodule(path))
    if not 1 <= layers <= depth:
        raise MethodConfigError(
            f"a student of {layers} layers cannot be cut from a {depth}-layer predecessor: "
            f"pass --successor-layers between 1 and {depth}"
        )
    student = copy.deepcopy(model)
    every = list(student.get_submodule(path))
    kept = nn.ModuleList(every[i] for i in keep) if keep else nn.ModuleList(every[:layers])
    for index, layer in enumerate(kept):  # a layer's cache index follows its new position
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    replace_submodule(student, path, kept)
    student.config.num_hidden_layers = layers
    return student


def pretrained_student(
    name: str, predecessor: PreTrainedModel, seed: int, trust_remote_code: bool = False
) -> PreTrainedModel:
    """`name` (a pre-trained encoder) with a new head, seeded and labelled like the
    predecessor: where the paper's baselines start (Sun et al., 2019), before truncation.
    """
    config = predecessor.config
    set_seed(seed)  # the new head is drawn while loading
    model, _ = load_model(
        name,
        trust_remote_code,
        with_tokenizer=False,
        num_labels=config.num_labels,
        id2label=config.id2label,
        label2id=config.label2id,
        problem_type=config.problem_type,
        ignore_mismatched_sizes=True,
    )
    keys = ("model_type", "vocab_size", "hidden_size")
    theirs = {key: getattr(model.config, key, None) for key in keys}
    ours = {key: getattr(config, key, None) for key in keys}
    if theirs != ours:
        raise ModelError(
            f"--student-from {name} ({_describe(theirs)}) does not match the predecessor "
            f"({_describe(ours)}): the student reads the predecessor's tokenizer, so pass "
            "the pre-trained checkpoint the predecessor was fine-tuned from"
        )
    return model


def _describe(values: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in values.items())
