"""Where each encoder keeps its list of Transformer layers.

Module replacing only needs one thing from an architecture: the `nn.ModuleList` that its
encoder iterates over. The table maps `config.model_type` to that list's path below the
model's base model (`model.base_model`), so it works for `AutoModel` and for every
`AutoModelFor...` head alike. Anything else can be handled with an explicit `layers_path`.
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

# Paths relative to `model.base_model`.
LAYER_PATHS: dict[str, str] = {
    "bert": "encoder.layer",
    "roberta": "encoder.layer",
    "xlm-roberta": "encoder.layer",
    "camembert": "encoder.layer",
    "electra": "encoder.layer",
    "mpnet": "encoder.layer",
    "distilbert": "transformer.layer",
    "deberta-v2": "encoder.layer",
    "deberta": "encoder.layer",
}

# Architectures whose depth is not a list of distinct layers: replacing a module of a
# shared layer would replace every depth at once.
UNSUPPORTED: dict[str, str] = {
    "albert": "ALBERT reuses one shared layer at every depth, so there are no separate "
    "layers to replace; compress a BERT-like encoder (bert, roberta, electra, mpnet, ...)",
}


class ArchitectureError(ValueError):
    """The model's layer list cannot be found or cannot be compressed."""


def model_type_of(config) -> str:
    """The architecture a model's layers are built from: a compact model's base type
    (bert_theseus.compact), else the config's own model_type."""
    return getattr(config, "base_model_type", None) or config.model_type


def find_layers_path(model: PreTrainedModel, layers_path: str | None = None) -> str:
    """Return the dotted path (from `model`) of its encoder's layer list.

    >>> find_layers_path(bert_for_sequence_classification)
    'bert.encoder.layer'
    """
    model_type = model_type_of(model.config)  # a compact model keeps its base's layer list
    if layers_path is None:
        if model_type in UNSUPPORTED:
            raise ArchitectureError(
                f"unsupported architecture '{model_type}': {UNSUPPORTED[model_type]}"
            )
        if model_type not in LAYER_PATHS:
            raise ArchitectureError(
                f"unknown architecture '{model_type}': pass layers_path (--layers-path) with the "
                "dotted path of the encoder's nn.ModuleList of layers, e.g. 'bert.encoder.layer'"
            )
        base = model.base_model
        prefix = "" if base is model else f"{model.base_model_prefix}."
        layers_path = prefix + LAYER_PATHS[model_type]
    try:
        layers = model.get_submodule(layers_path)
    except AttributeError as error:
        raise ArchitectureError(
            f"layers_path '{layers_path}' does not exist in {type(model).__name__}"
        ) from error
    if not isinstance(layers, nn.ModuleList) or len(layers) < 2:
        raise ArchitectureError(
            f"layers_path '{layers_path}' must name an nn.ModuleList of at least 2 layers, "
            f"found {type(layers).__name__}"
        )
    return layers_path


def replace_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put `new` where `path` points (the get_submodule + setattr swap)."""
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, new)
