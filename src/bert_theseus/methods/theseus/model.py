"""Apply module replacing to a Hugging Face encoder, and merge the result back."""

from __future__ import annotations

import copy

from torch import nn
from transformers import PreTrainedModel

from ...arch import find_layers_path, replace_submodule
from .config import TheseusConfig
from .layer import TheseusLayers


def apply_theseus(
    model: PreTrainedModel, config: TheseusConfig, successor_init: str | None = None
) -> PreTrainedModel:
    """Turn a fine-tuned predecessor into a predecessor-plus-successor model, in place.

    Successor layers start as copies of predecessor layers (`successor_init`, by default
    `config.successor_init`; "auto" is decided by `choose_successor_init` on data). All
    other parameters are frozen with `requires_grad=False`, so they get no weight gradients
    while gradients still flow through them to earlier successors.

    >>> model = AutoModelForSequenceClassification.from_pretrained("runs/teacher")
    >>> apply_theseus(model, TheseusConfig(successor_layers=6, recipe="paper"))
    >>> layers = theseus_layers(model)   # layers.sample(p) before each optimizer step
    """
    path = find_layers_path(model, config.layers_path)
    predecessor: nn.ModuleList = model.get_submodule(path)
    groups = config.modules(len(predecessor))
    successor_init = successor_init or config.successor_init
    if successor_init == "auto":
        raise ValueError(
            "successor_init 'auto' is chosen by measuring the predecessor on inputs: pass "
            "successor_init=choose_successor_init(model, config, batches).successor_init "
            "(from bert_theseus.methods.theseus), or choose a successor_init"
        )
    sources = source_layers(groups, successor_init)
    # deepcopy keeps the layer class (and any output-recording hooks already installed).
    successor = nn.ModuleList(copy.deepcopy(predecessor[i]) for i in sources)
    replace_submodule(model, path, TheseusLayers(predecessor, successor, groups))

    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in successor.parameters():
        parameter.requires_grad_(True)
    for part in config.train_parts:
        for parameter in _part(model, part).parameters():
            parameter.requires_grad_(True)

    model.theseus_config = config
    model.theseus_layers_path = path
    return model


def source_layers(groups: list[list[int]], successor_init: str) -> list[int]:
    """The predecessor layer each successor starts as, one per module (`groups`).

    >>> source_layers([[0, 1], [2, 3], [4, 5]], "bottom-last-top")
    [0, 1, 5]
    """
    return {
        "bottom": list(range(len(groups))),
        "first-of-group": [group[0] for group in groups],
        "last-of-group": [group[-1] for group in groups],
        "bottom-last-top": [*range(len(groups) - 1), groups[-1][-1]],
    }[successor_init]


def theseus_layers(model: PreTrainedModel) -> TheseusLayers:
    """The `TheseusLayers` of a model prepared by `apply_theseus`."""
    path = getattr(model, "theseus_layers_path", None)
    if path is None:
        raise ValueError("model has no Theseus layers: call apply_theseus(model, config) first")
    return model.get_submodule(path)


def merge_theseus(model: PreTrainedModel) -> PreTrainedModel:
    """Keep only the successors: a plain Hugging Face model of the successor depth, in place.

    The result is the class it was before `apply_theseus`, with `config.num_hidden_layers`
    set to the successor depth, so `save_pretrained` / `from_pretrained`, pipelines and
    exporters use it unchanged. Its eval logits equal the Theseus model's.
    """
    layers = theseus_layers(model)
    successor = layers.successor
    for index, layer in enumerate(successor):
        # Layers copied from deeper predecessor positions carry their old index (caches use it).
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    replace_submodule(model, model.theseus_layers_path, successor)
    model.config.num_hidden_layers = len(successor)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    del model.theseus_config, model.theseus_layers_path
    return model


def _part(model: PreTrainedModel, part: str) -> nn.Module:
    """The module holding a trainable non-encoder part ("embeddings" or "head")."""
    base = model.base_model
    if part == "embeddings":
        return base.embeddings
    # The head is every parameter outside the base model, plus a pooler if the base has one.
    head = nn.ModuleList(m for m in model.children() if m is not base)
    if getattr(base, "pooler", None) is not None:
        head.append(base.pooler)
    return head
