"""Loading classifiers from a folder or the Hub, with errors a user can act on."""

from __future__ import annotations

import json
import struct
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
    if local.is_dir():
        check_weights(local)
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
            tokenizer = load_tokenizer(name, trust_remote_code)
            check_tokenizer(tokenizer, model, name)
    except ModelError:
        raise
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


def check_weights(folder: Path) -> None:
    """Refuse a truncated or corrupt safetensors file before loading it: what an interrupted
    copy or download leaves would otherwise end in a traceback from deep inside the loader.
    Reads only each file's header (an 8-byte little-endian length, then JSON that gives every
    tensor's byte range), so it costs nothing on large models."""
    for path in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            raise ModelError(
                f"{path} is {problem}: an interrupted copy or download leaves such a file; "
                "copy it again from where it came from"
            )


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with the safetensors file at `path`, or None if its header and size agree."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"truncated ({size} bytes, not even the 8-byte header length)"
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            return f"truncated (its header needs {8 + length} bytes, the file has {size})"
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "corrupt (its header is not valid JSON)"
    if not isinstance(header, dict):
        return "corrupt (its header is not a JSON object)"
    ends = []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            return f"corrupt (tensor {key!r} has no valid data offsets)"
        ends.append(offsets[1])
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        return f"truncated ({size} bytes of the {needed} its header describes)"
    if needed < size:
        return f"corrupt ({size - needed} bytes more than its header describes)"
    return None


# Words, digits and punctuation: every usable vocabulary knows some of them.
PROBE = "The film, 2 hours long, was good."


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The tokenizer of a folder or Hub id; a file it cannot read is a ModelError."""
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as error:  # tokenizers raises its own types for a broken file
        if "custom code" in str(error):
            raise
        raise ModelError(
            f"cannot load the tokenizer of '{name}' ({first_line(error)}): copy the tokenizer "
            "files of the model it was made from into it, or pass a folder that has them"
        ) from None


def check_tokenizer(tokenizer, model: PreTrainedModel | None, name: str) -> None:
    """Refuse a tokenizer that would read every word as unknown: without its files,
    transformers builds one of the special tokens alone, and a run trains (and saves) a model
    that sees nothing but [UNK]. Also refuse one whose ids lie beyond the model's embeddings
    (the files of another model)."""
    fix = (
        "copy the tokenizer files (tokenizer.json, or vocab.txt / vocab.json and merges.txt / "
        "*.model, with tokenizer_config.json) of the model it was made from into it, or pass "
        "a folder that has them"
    )
    specials = set(tokenizer.all_special_tokens)
    if not set(tokenizer.get_vocab()) - specials:
        raise ModelError(f"model folder '{name}' has no tokenizer vocabulary: {fix}")
    known = set(tokenizer(PROBE, add_special_tokens=False)["input_ids"])
    if not known - {tokenizer.unk_token_id}:
        raise ModelError(
            f"the tokenizer of '{name}' reads every word of {PROBE!r} as unknown "
            f"({tokenizer.unk_token}): {fix}"
        )
    try:
        rows = getattr(model.get_input_embeddings(), "num_embeddings", None)
    except (AttributeError, NotImplementedError):  # no model (an export), or one that won't say
        rows = None
    if rows is not None and tokenizer.vocab_size > rows:
        raise ModelError(
            f"the tokenizer of '{name}' has {tokenizer.vocab_size} tokens but the model reads "
            f"only {rows}: the tokenizer files belong to another model; {fix}"
        )


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
