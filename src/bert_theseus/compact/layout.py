"""Where each architecture keeps the linears whose sizes a compact model changes.

Keyed on `config.model_type`, like peft's target-module table. Paths are relative to one
Transformer layer, except `layers`, which is relative to the base model (`model.base_model`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch import ArchitectureError


@dataclass(frozen=True)
class Layout:
    """One architecture's layer anatomy.

    >>> LAYOUTS["bert"].query
    'attention.self.query'
    """

    layers: str  # the encoder's nn.ModuleList of layers
    query: str
    key: str
    value: str
    attention_output: str
    ffn_in: str
    ffn_out: str
    attention: str  # the module whose forward reads the head-count attributes below
    head_count: tuple[str, ...]  # attributes of `attention` that hold its number of heads
    head_width: tuple[str, ...] = ()  # ... and those that hold heads * head size
    ffn_width: str = "intermediate_size"  # the base config's FFN width
    # A per-head tensor that all layers share (MPNet's relative position bias), passed to
    # `attention`'s forward as (keyword, position); each layer must pick its kept heads from it.
    shared_head_input: tuple[str, int] | None = None
    word_embeddings: str = "embeddings.word_embeddings"  # relative to the base model

    def head_linears(self) -> tuple[str, str, str]:
        return (self.query, self.key, self.value)

    def linears(self) -> tuple[str, ...]:
        """The six weight matrices of a layer: Q, K, V, attention output, FFN in and out."""
        return (*self.head_linears(), self.attention_output, self.ffn_in, self.ffn_out)


_BERT_LIKE = Layout(
    layers="encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attention_output="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention="attention.self",
    head_count=("num_attention_heads",),
    head_width=("all_head_size",),
)

LAYOUTS: dict[str, Layout] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "mpnet": Layout(
        layers="encoder.layer",
        query="attention.attn.q",
        key="attention.attn.k",
        value="attention.attn.v",
        attention_output="attention.attn.o",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        attention="attention.attn",
        head_count=("num_attention_heads",),
        head_width=("all_head_size",),  # its forward reshapes the context to all_head_size
        shared_head_input=("position_bias", 2),
    ),
    "distilbert": Layout(
        layers="transformer.layer",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        attention_output="attention.out_lin",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        attention="attention",
        head_count=("n_heads",),
        ffn_width="hidden_dim",
    ),
}

# Known misfits, with the reason, so the error says more than "unsupported".
WHY_NOT: dict[str, str] = {
    "deberta": "its attention keeps Q, K and V in one in_proj linear with separate q_bias and "
    "v_bias parameters, which this table does not describe",
    "deberta-v2": "its disentangled attention also projects relative positions per head "
    "(pos_key_proj, pos_query_proj), which this table does not describe yet",
    "albert": "all depths share one layer, so layers cannot differ in size",
}


class UnsupportedArchitectureError(ArchitectureError):
    """The architecture has no entry in the compact-model table."""


def layout_for(model_type: str) -> Layout:
    """The table entry for `model_type`, or UnsupportedArchitectureError naming those supported."""
    if model_type in LAYOUTS:
        return LAYOUTS[model_type]
    why = f" ({WHY_NOT[model_type]})" if model_type in WHY_NOT else ""
    raise UnsupportedArchitectureError(
        f"compact models do not support '{model_type}'{why}: supported architectures are "
        f"{', '.join(LAYOUTS)}"
    )
