"""Tiny models of every supported architecture, built in code (no downloads)."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

VOCAB = 128

# model_type -> config overrides that make it tiny; dropout 0 so forward passes are exact.
TINY: dict[str, dict] = {
    "bert": {},
    "roberta": {"pad_token_id": 1},
    "xlm-roberta": {"pad_token_id": 1},
    "camembert": {"pad_token_id": 1},
    "electra": {"embedding_size": 16},
    "mpnet": {"pad_token_id": 1},
    "deberta-v2": {
        "relative_attention": True,
        "position_biased_input": False,
        "pos_att_type": ["p2c", "c2p"],
        "max_relative_positions": -1,
        "position_buckets": 16,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
    },
    "deberta": {"relative_attention": True, "pos_att_type": ["p2c", "c2p"]},
    "distilbert": {},
}
ARCHITECTURES = list(TINY)


def tiny_config(model_type: str, layers: int = 4, num_labels: int = 2, dropout: float = 0.0):
    common = {
        "vocab_size": VOCAB,
        "num_labels": num_labels,
        "max_position_embeddings": 64,
    }
    if model_type == "distilbert":
        sizes = {
            "dim": 32,
            "hidden_dim": 48,
            "n_layers": layers,
            "n_heads": 4,
            "dropout": dropout,
            "attention_dropout": dropout,
            "seq_classif_dropout": dropout,
        }
    else:
        sizes = {
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "hidden_dropout_prob": dropout,
            "attention_probs_dropout_prob": dropout,
        }
    return AutoConfig.for_model(model_type, **common, **sizes, **TINY[model_type])


def tiny_model(model_type: str, seed: int = 0, **kwargs) -> PreTrainedModel:
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(tiny_config(model_type, **kwargs))
    return model.eval()


def tiny_batch(batch: int = 3, length: int = 9, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, -3:] = 0  # one padded row, so masks matter
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def collapsed_bottom(layers: int = 4, bottom: int = 2, dropout: float = 0.0):
    """A tiny BERT whose bottom layers add nothing to their input, so the first token's state
    after them is its embedding: the same for every input, as in all-MiniLM-L6-v2's [CLS]."""
    model = tiny_model("bert", layers=layers, dropout=dropout)
    with torch.no_grad():
        for layer in model.bert.encoder.layer[:bottom]:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
    return model


def decisive(model: PreTrainedModel, batch: dict[str, torch.Tensor], margin: float):
    """`model` with the output layer's bias of its label on `batch` raised so that its top
    logit leads the next by `margin` (to float rounding) where it led by less: the same
    labels, decided by more than a quantised variant's error.

    A random tiny model's logits are about 0.01 and its top two can lie closer than int8
    resolves: the 2-layer RoBERTa's by 5e-4 on export's sample texts, which OpenVINO's int8
    kernels shift by 1.25e-3 on a CPU without VNNI (docs/results.md), so whether int8 keeps
    its labels was the CPU's draw. The bias is added after int8's matrix products, so the
    variants' logit errors stay what they were. One bias moves every input alike, so every
    input of `batch` must get the same label.
    """
    with torch.no_grad():
        logits = model(**batch).logits
    labels = logits.argmax(-1)
    if not bool((labels == labels[0]).all()):
        raise ValueError(f"the inputs get different labels ({labels.tolist()}): one bias cannot")
    # The output layer: no hidden size of these models equals their label count.
    labels_out = [m for m in model.modules() if isinstance(m, torch.nn.Linear)
                  and m.out_features == logits.shape[-1]]  # fmt: skip
    (output,) = labels_out
    with torch.no_grad():
        output.bias[labels[0]] += max(0.0, margin - _lead(logits))
        assert _lead(model(**batch).logits) >= 0.999 * margin, type(model).__name__
    return model


def _lead(logits: torch.Tensor) -> float:
    """The smallest lead of a row's top logit over its next."""
    top = logits.topk(2, dim=-1).values
    return float((top[:, 0] - top[:, 1]).min())
