"""Where measurements reused across runs are kept: plans, teacher embeddings, augmented
sets. A leaf module, so that the data layer can reach the cache without the run layer."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "BERT_THESEUS_CACHE"


def cache_root() -> Path:
    """The folder BERT_THESEUS_CACHE names, by default ~/.cache/bert-theseus."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bert-theseus").expanduser()
