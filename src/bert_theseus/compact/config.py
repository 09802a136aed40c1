"""The configuration of a compact model: its base architecture plus per-layer sizes."""

from __future__ import annotations

from dataclasses import field

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PretrainedConfig

MODEL_TYPE = "bert-theseus-compact"

# Our own fields; everything else in a CompactConfig is an attribute of the base config.
OWN_FIELDS = (
    "base_model_type",
    "layer_heads",
    "layer_intermediate_sizes",
    "layer_ranks",
    "layer_head_indices",
    "embedding_rank",
)
# Set anew whenever a config is built or saved: never forwarded to the base config.
NOT_FORWARDED = ("model_type", "architectures", "transformers_version", "auto_map")


class CompactConfigError(ValueError):
    """Per-layer sizes that no model can be built from; the message names the fix."""


@strict(accept_kwargs=True)
class CompactConfig(PretrainedConfig):
    """A base architecture's config with per-layer head counts, FFN widths and low ranks.

    The base config's own attributes (vocab_size, hidden_size, num_attention_heads, pad_token_id,
    id2label, ...) are kept as they are, so its embeddings, tokenizer settings and
    classification head are unchanged; `num_attention_heads` stays the base's, because head size
    is hidden_size / num_attention_heads of the base. Build one with `from_base`:

    >>> config = CompactConfig.from_base(bert.config, layer_heads=[12, 6],
    ...                                  layer_intermediate_sizes=[3072, 1024])
    >>> config.base_config()  # the BertConfig the layers are built from
    """

    model_type = MODEL_TYPE

    base_model_type: str = field(
        default="bert",
        metadata={"help": "model_type of the architecture the layers come from (bert, mpnet, ...)"},
    )
    layer_heads: list[int] = field(
        default_factory=list,
        metadata={"help": "attention heads kept in each layer (head size stays the base's)"},
    )
    layer_intermediate_sizes: list[int] = field(
        default_factory=list, metadata={"help": "FFN width of each layer"}
    )
    layer_ranks: list[dict[str, int]] = field(
        default_factory=list,
        metadata={
            "help": "per layer: dotted name of a linear inside the layer -> rank of its low-rank "
            "factorisation (e.g. {'intermediate.dense': 64}); empty: no factors"
        },
    )
    layer_head_indices: list[list[int]] | None = field(
        default=None,
        metadata={
            "help": "which of the base's heads each layer kept, in the layer's order; needed "
            "where layers share a per-head table (MPNet's relative attention bias). None: the "
            "first layer_heads[i] heads"
        },
    )

    embedding_rank: int | None = field(
        default=None,
        metadata={
            "help": "rank of the word-embedding table's factorisation (vocab x rank, then "
            "rank -> embedding size); None: the base's full table"
        },
    )

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        layers = len(self.layer_heads)
        if not self.layer_ranks:
            self.layer_ranks = [{} for _ in range(layers)]
        if layers:  # the default config (compared with on save) has no layers yet
            self.num_hidden_layers = layers
        self.check()

    def check(self) -> None:
        """Raise CompactConfigError unless every layer has a consistent, buildable size."""
        layers = len(self.layer_heads)
        lists = {
            "layer_intermediate_sizes": self.layer_intermediate_sizes,
            "layer_ranks": self.layer_ranks,
            "layer_head_indices": self.layer_head_indices,
        }
        for name, values in lists.items():
            if values is not None and len(values) != layers:
                raise CompactConfigError(
                    f"{name} has {len(values)} entries for {layers} layers: give one per layer"
                )
        for i, (heads, width) in enumerate(
            zip(self.layer_heads, self.layer_intermediate_sizes, strict=True)
        ):
            if heads < 1 or width < 1:
                raise CompactConfigError(
                    f"layer {i} keeps {heads} heads and {width} FFN neurons: every layer needs at "
                    "least 1 of each (to drop a whole layer, use fewer layers)"
                )
            if self.layer_head_indices is not None:
                kept = self.layer_head_indices[i]
                if len(kept) != heads or len(set(kept)) != len(kept):
                    raise CompactConfigError(
                        f"layer {i}: layer_head_indices {kept} must be {heads} distinct head "
                        "indices"
                    )
            for name, rank in self.layer_ranks[i].items():
                if rank < 1:
                    raise CompactConfigError(f"layer {i}: rank {rank} of '{name}' must be >= 1")
        if self.embedding_rank is not None and self.embedding_rank < 1:
            raise CompactConfigError(f"embedding_rank {self.embedding_rank} must be >= 1 or None")

    @classmethod
    def from_base(cls, base: PretrainedConfig, **sizes) -> CompactConfig:
        """A compact config that keeps every attribute of `base` and adds the per-layer sizes."""
        attributes = {k: v for k, v in base.to_dict().items() if k not in NOT_FORWARDED}
        for name in OWN_FIELDS:
            attributes.pop(name, None)
        return cls(**attributes, base_model_type=base.model_type, **sizes)

    def base_config(self, **overrides) -> PretrainedConfig:
        """The base architecture's own config (full-size layers), rebuilt from the attributes."""
        attributes = {
            k: v for k, v in self.to_dict().items() if k not in OWN_FIELDS + NOT_FORWARDED
        }
        attributes.pop("num_hidden_layers", None)  # DistilBERT calls it n_layers
        base = AutoConfig.for_model(self.base_model_type, **{**attributes, **overrides})
        base.num_hidden_layers = len(self.layer_heads)
        return base
