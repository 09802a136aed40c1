"""LadaBERT's compression steps: the factorised student the first stage starts from, and
the input-feature scales a pruning step may rank entries by."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from transformers import PreTrainedModel

from ...compact import factorize
from ..registry import MethodError
from .budget import embedding_rank, encoder_ranks
from .calibration import input_moments, input_scales
from .config import LadaBERTConfig
from .pruning import prunable_modules


def factorised(
    predecessor: PreTrainedModel,
    config: LadaBERTConfig,
    batches: Callable[[], Iterable[dict]] | None = None,
) -> PreTrainedModel:
    """The student stage "factorise" starts from: a new model with every encoder matrix at
    the SVD rank that keeps P_svd and the word table at P_embd (a plain copy where both keep
    everything); the predecessor is unchanged. With `config.svd == "activation"`, each
    matrix's factors are fitted to its inputs on the first examples of `batches()`.

    >>> student = factorised(predecessor, LadaBERTConfig(preset="ladabert-1"), train_batches)
    >>> paper = factorised(predecessor, LadaBERTConfig(preset="ladabert-1", svd="weight"))
    """
    p_embd, p_svd, _ = config.kept()
    ranks, rank = encoder_ranks(predecessor, p_svd), embedding_rank(predecessor, p_embd)
    if not any(ranks) and rank is None:
        return copy.deepcopy(predecessor)
    moments = None
    if config.svd == "activation" and any(ranks):
        if batches is None:
            raise MethodError("--svd activation fits the factors to training inputs: pass the "
                              "training data (compress and compare do)")  # fmt: skip
        moments = input_moments(predecessor, batches(), ranks, config.calibration_examples)
    return factorize(predecessor, ranks, embedding_rank=rank, moments=moments)


def pruning_scales(
    student: PreTrainedModel,
    config: LadaBERTConfig,
    batches: Callable[[], Iterable[dict]] | None,
) -> dict[str, torch.Tensor] | None:
    """Each prunable weight's input-feature scales on the student as it is, for
    `config.pruning == "activation"`; None (rank by |w|) for the paper's pruning."""
    if config.pruning != "activation":
        return None
    if batches is None:
        raise MethodError("--pruning activation reads training inputs: pass the training data "
                          "(compress and compare do)")  # fmt: skip
    modules = prunable_modules(student)
    return input_scales(student, batches(), modules, config.calibration_examples)
