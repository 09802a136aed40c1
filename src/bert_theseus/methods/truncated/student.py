"""Students for the baselines: the predecessor truncated to its bottom layers, and PKD's
layer maps between student and teacher depths."""

from __future__ import annotations

import copy

from torch import nn
from transformers import PreTrainedModel

from ..arch import find_layers_path, replace_submodule
from .config import DistillConfig, DistillConfigError


def truncate(
    model: PreTrainedModel, layers: int, layers_path: str | None = None
) -> PreTrainedModel:
    """A copy of `model` keeping its embeddings, head and its bottom `layers` layers.

    This is the student of every baseline, and it starts where a Theseus successor
    starts (successor i = predecessor layer i), so the methods differ only in training.

    >>> student = truncate(predecessor, 3)   # a plain 3-layer model of the same class
    """
    path = find_layers_path(model, layers_path)
    depth = len(model.get_submodule(path))
    if not 1 <= layers <= depth:
        raise DistillConfigError(
            f"a student of {layers} layers cannot be cut from a {depth}-layer predecessor: "
            f"pass --successor-layers between 1 and {depth}"
        )
    student = copy.deepcopy(model)
    kept = nn.ModuleList(list(student.get_submodule(path))[:layers])
    replace_submodule(student, path, kept)
    student.config.num_hidden_layers = layers
    return student


def pkd_layer_map(
    teacher_layers: int, student_layers: int, config: DistillConfig
) -> list[tuple[int, int]]:
    """[(student layer, teacher layer)] pairs, counted from 1 (hidden_states indices).

    The top student layer is left out: its [CLS] state feeds the classifier, which the
    soft-target loss already ties to the teacher's (as in BERT-PKD).

    PKD-Skip for 12 -> 6 maps student 1..5 to teacher 2, 4, 6, 8, 10; PKD-Last maps them
    to teacher 7..11.

    >>> pkd_layer_map(6, 3, DistillConfig())
    [(1, 2), (2, 4)]
    """
    if config.layer_map is not None:
        pairs = [(int(s), int(t)) for s, t in config.layer_map]
        for student, teacher in pairs:
            if not (0 <= student <= student_layers and 0 <= teacher <= teacher_layers):
                raise DistillConfigError(
                    f"layer_map pair [{student}, {teacher}] is out of range: student layers "
                    f"are 0..{student_layers} and teacher layers 0..{teacher_layers} "
                    "(0 is the embeddings)"
                )
        return pairs
    if config.pkd_strategy == "last":
        first = teacher_layers - student_layers + 1
        return [(j, first + j - 1) for j in range(1, student_layers)]
    if teacher_layers % student_layers:
        raise DistillConfigError(
            f"PKD-Skip needs the student depth {student_layers} to divide the teacher depth "
            f"{teacher_layers}: pass --pkd-strategy last or an explicit --layer-map"
        )
    step = teacher_layers // student_layers
    return [(j, j * step) for j in range(1, student_layers)]
