"""Sentence-embedding students (`compress --embedding`): a sentence-transformers model is
the predecessor, its sentence embedding the target, unlabelled sentences the data.

The methods that support it (`MethodSpec.embedding`) train a `SentenceEncoder` (the
transformer and sentence-transformers' own pooling, dense and normalisation modules) on
the MSE to the teacher's embeddings, which are computed once and cached; runs are scored
by the Spearman correlation of cosine similarities on pair files, or by the cosine to the
teacher on held-out sentences, and saved as folders `SentenceTransformer` loads.
"""

from ..lazy import lazy_exports
from .config import EmbeddingConfig, EmbeddingError

__all__ = ["EmbeddingConfig", "EmbeddingError", "SentenceEncoder", "load_encoder"]

# Loaded on first use (torch, sentence-transformers): the CLI reads the config alone.
__getattr__ = lazy_exports(__name__, {"SentenceEncoder": ".model", "load_encoder": ".model"})
