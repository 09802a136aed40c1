"""Loading classifiers from a folder or the Hub, with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel


class ModelError(ValueError):
    """The model cannot be loaded or does not fit the task."""


def load_model(
    name: str, trust_remote_code: bool = False, with_tokenizer: bool = True, **kwargs
) -> tuple[PreTrainedModel, object]:
    """Load a sequence classifier and its tokenizer (None if not `with_tokenizer`) from a
    folder or a Hub id.

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
        # The model first: a folder with custom code is refused here, with that reason.
        model = AutoModelForSequenceClassification.from_pretrained(
            name, trust_remote_code=trust_remote_code, **kwargs
        )
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
