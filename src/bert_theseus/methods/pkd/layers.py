"""BERT-PKD's layer maps: which teacher layer's [CLS] state each student layer learns."""

from __future__ import annotations

from typing import Protocol

from ..registry import MethodConfigError


class LayerChoice(Protocol):
    """What a map reads of its settings (a `PKDConfig`, which imports this module)."""

    layer_map: list[list[int]] | None
    pkd_strategy: str


def pkd_layer_map(
    teacher_layers: int, student_layers: int, config: LayerChoice
) -> list[tuple[int, int]]:
    """[(student layer, teacher layer)] pairs, counted from 1 (hidden_states indices).

    The top student layer is left out: its [CLS] state feeds the classifier, which the
    soft-target loss already ties to the teacher's (as in BERT-PKD).

    PKD-Skip for 12 -> 6 maps student 1..5 to teacher 2, 4, 6, 8, 10; PKD-Last maps them
    to teacher 7..11.

    >>> pkd_layer_map(6, 3, PKDConfig())
    [(1, 2), (2, 4)]
    """
    if config.layer_map is not None:
        pairs = [(int(s), int(t)) for s, t in config.layer_map]
        for student, teacher in pairs:
            if not (0 <= student <= student_layers and 0 <= teacher <= teacher_layers):
                raise MethodConfigError(
                    f"layer_map pair [{student}, {teacher}] is out of range: student layers "
                    f"are 0..{student_layers} and teacher layers 0..{teacher_layers} "
                    "(0 is the embeddings)"
                )
        return pairs
    if config.pkd_strategy == "last":
        first = teacher_layers - student_layers + 1
        return [(j, first + j - 1) for j in range(1, student_layers)]
    if teacher_layers % student_layers:
        raise MethodConfigError(
            f"PKD-Skip needs the student depth {student_layers} to divide the teacher depth "
            f"{teacher_layers}: pass --pkd-strategy last or an explicit --layer-map"
        )
    step = teacher_layers // student_layers
    return [(j, j * step) for j in range(1, student_layers)]
