"""Loading classifiers from a folder or the Hub, with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)


class ModelError(ValueError):
    """The model cannot be loaded or does not fit the task."""


def load_model(
    name: str,
    trust_remote_code: bool = False,
    with_tokenizer: bool = True,
    head: dict | None = None,
    **kwargs,
) -> tuple[PreTrainedModel, object]:
    """Load a sequence classifier and its tokenizer (None if not `with_tokenizer`) from a
    folder or a Hub id. `head` (num_labels, id2label, label2id, problem_type) sets the
    classification head of a new task: a model fine-tuned on another task (an
    intermediate-task successor) gets a fresh head of the new size.

    Code shipped with a model runs only with `trust_remote_code=True`; it is passed as
    False otherwise, so transformers neither runs it nor stops to ask.

    >>> model, tokenizer = load_model("runs/teacher")
    """
    if name.startswith("~"):
        name = str(Path(name).expanduser())
    local = Path(name)
    if not local.exists() and _looks_local(name):
        raise ModelError(f"no such folder: {name} (a Hub id is 'owner/name'): check the path")
    if local.exists() and not (local / "config.json").is_file():
        raise ModelError(
            f"{name} is not a model folder (no config.json): pass a folder written by "
            "'theseus finetune' or save_pretrained, or a Hub id"
        )
    try:
        other_task = False
        if head is not None:
            kwargs["config"], other_task = _new_head(name, trust_remote_code, head)
        # The model first: a folder with custom code is refused here, with that reason.
        model = AutoModelForSequenceClassification.from_pretrained(
            name, trust_remote_code=trust_remote_code, **kwargs
        )
        if other_task:
            _fresh_head(model)
        tokenizer = None
        if with_tokenizer:
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        if "custom code" in str(error):
            raise ModelError(
                f"model '{name}' ships its own code, which runs only if you pass "
                "--trust-remote-code (read that code first)"
            ) from None
        raise ModelError(
            f"cannot load model '{name}': {first_line(error)} (check the path, or the Hub id "
            "and network)"
        ) from None
    return model, tokenizer


def _new_head(name: str, trust_remote_code: bool, head: dict):
    """The model's config with the new task's head, and whether the model is a classifier
    of another task (other labels), whose head must then be drawn anew even where its size
    fits: SST-2's negative/positive weights mean nothing for RTE's two classes."""
    config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    classifier = any("ForSequenceClassification" in a for a in config.architectures or [])
    before = _labels(config.id2label), config.problem_type
    # The old task's problem type is checked against every new num_labels (a 2-class
    # classifier refuses num_labels=1): drop it first, and set the new one last.
    config.problem_type = None
    for key in ("num_labels", "id2label", "label2id", "problem_type"):
        if key in head:
            setattr(config, key, head[key])
    labels, problem = _labels(config.id2label), config.problem_type
    # Many saved classifiers record no problem type; only a different recorded one counts.
    other = labels != before[0] or before[1] not in (None, problem)
    return config, classifier and other


def _labels(id2label: dict) -> dict[int, str]:
    return {int(k): str(v) for k, v in (id2label or {}).items()}


def _fresh_head(model: PreTrainedModel) -> None:
    """Draw the classification head (everything outside the encoder) anew, as loading a
    pre-trained encoder into a classifier does: normal(0, initializer_range) weights, zero
    biases. (`_init_weights` would skip them: transformers marks loaded weights as done.)"""
    std = getattr(model.config, "initializer_range", 0.02)
    for child in model.children():
        if child is model.base_model:
            continue
        for module in child.modules():
            with torch.no_grad():
                if isinstance(module, nn.Linear):
                    module.weight.normal_(0.0, std)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, nn.LayerNorm):  # some have no bias, or no weights
                    if module.weight is not None:
                        module.weight.fill_(1.0)
                    if module.bias is not None:
                        module.bias.zero_()


# Architectures whose position ids start after the padding index (RoBERTa's scheme), so
# pad_token_id + 1 of their position embeddings never hold a token.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer")


def token_positions(config) -> int | None:
    """How many tokens the model can read at once; None where positions are only relative
    (DeBERTa without absolute position embeddings)."""
    from .arch import model_type_of

    if getattr(config, "position_biased_input", True) is False:
        return None
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    if model_type_of(config) in OFFSET_POSITIONS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    return positions


def fit_max_length(training, model: PreTrainedModel, name: str):
    """`training` with a max_length the model can read: the default (128) shrinks to the
    model's positions; a larger value given on purpose is refused (ModelError, exit 2)."""
    from dataclasses import fields, replace

    positions = token_positions(model.config)
    if positions is None or training.max_length <= positions:
        return training
    default = next(f.default for f in fields(training) if f.name == "max_length")
    if training.max_length == default:
        return replace(training, max_length=positions)
    raise ModelError(
        f"--max-length {training.max_length} is more than the {positions} token positions "
        f"of model '{name}': pass --max-length {positions} or less"
    )


def _looks_local(name: str) -> bool:
    """A path no Hub id can be: absolute, relative to . or ~, Windows-style, or deeper than
    owner/name."""
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
        or name.count("/") > 1
    )


def first_line(error: Exception) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
