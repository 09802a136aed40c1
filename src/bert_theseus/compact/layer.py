"""The modules a compact model puts into its layers: narrower linears and low-rank factors."""

from __future__ import annotations

import torch
from torch import nn

# Share of the mean eigenvalue of E[x xᵀ] added to every eigenvalue (a ridge: the weights'
# own error, at 1% of the weight an average input direction gets).
MOMENT_FLOOR = 1e-2


def svd_factors(
    weight: torch.Tensor, rank: int, moments: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best rank-`rank` factors of an m x n matrix (truncated SVD): left = U sqrt(S)
    (m x rank) and right = sqrt(S) Vᵀ (rank x n), so left @ right approximates it. The
    singular values are split evenly, so both factors are scaled alike.

    With `moments`, the n x n second moment C = E[x xᵀ] of the inputs the matrix multiplies,
    the factors are the best for those inputs instead: they minimise E|(W - left @ right) x|²
    plus the ridge MOMENT_FLOOR x mean eigenvalue x |W - left @ right|_F² (the SVD of
    W (C + ridge)^½, mapped back by its inverse; activation-aware or whitened SVD, as in ASVD
    and SVD-LLM). The plain SVD minimises |W - left @ right|_F, so it spends rank alike on
    directions the inputs never use and on the few they use most.
    """
    if moments is not None and not bool((moments.diagonal() > 0).any()):
        moments = None  # inputs that were all zero: no direction to prefer
    if moments is None:
        u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
        root = s[:rank].sqrt()
        return u[:, :rank] * root[None, :], root[:, None] * vh[:rank]
    values, vectors = torch.linalg.eigh(moments.double())
    # A floor at a small share of the mean input energy keeps C^-½ bounded where the inputs
    # have (numerically) no variance; there the weights' own error counts instead.
    values = values.clamp_min(0.0) + MOMENT_FLOOR * values.clamp_min(0.0).mean()
    scale = (vectors * values.sqrt()) @ vectors.T
    unscale = (vectors / values.sqrt()) @ vectors.T
    u, s, vh = torch.linalg.svd(weight.double() @ scale, full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root[None, :]).float(), (root[:, None] * (vh[:rank] @ unscale)).float()


class LowRankLinear(nn.Module):
    """A linear layer as the product of two thinner ones: in -> rank (no bias) -> out.

    Takes in * rank + rank * out weights instead of in * out. `from_linear` builds it from
    the truncated SVD of a linear's weight (exact when rank is the weight's full rank):

    >>> low = LowRankLinear.from_linear(layer.intermediate.dense, rank=64)
    >>> low(hidden).shape == layer.intermediate.dense(hidden).shape
    True
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, rank: int, moments: torch.Tensor | None = None
    ) -> LowRankLinear:
        """The best rank-`rank` approximation of `linear` (truncated SVD; for inputs with
        second moment `moments`, if given), bias kept."""
        weight = linear.weight.detach()
        left, right = svd_factors(weight, rank, moments)
        low = cls(linear.in_features, linear.out_features, rank, linear.bias is not None)
        low.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            low.down.weight.copy_(right)
            low.up.weight.copy_(left)
            if linear.bias is not None:
                low.up.bias.copy_(linear.bias)
        return low

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class LowRankEmbedding(nn.Module):
    """A word-embedding table as a thinner table times a projection: each token's vector is
    `up(table[token])`, vocab * rank + rank * dim weights instead of vocab * dim.

    >>> low = LowRankEmbedding.from_embedding(bert.embeddings.word_embeddings, rank=64)
    >>> low(input_ids).shape  # (batch, length, hidden): what the full table gives
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, rank: int, padding_idx=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.rank = num_embeddings, embedding_dim, rank
        self.padding_idx = padding_idx
        self.table = nn.Embedding(num_embeddings, rank, padding_idx=padding_idx)
        self.up = nn.Linear(rank, embedding_dim, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.up(self.table(input_ids))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, rank: int) -> LowRankEmbedding:
        """The best rank-`rank` approximation of `embedding`'s table (truncated SVD)."""
        weight = embedding.weight.detach()
        left, right = svd_factors(weight, rank)
        low = cls(embedding.num_embeddings, embedding.embedding_dim, rank, embedding.padding_idx)
        low.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            low.table.weight.copy_(left)
            low.up.weight.copy_(right.T)
        return low

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}"


def sized_like(linear: nn.Module, in_features: int, out_features: int) -> nn.Linear:
    """A fresh nn.Linear of the given size, with `linear`'s bias setting, device and dtype."""
    if isinstance(linear, LowRankLinear):
        has_bias, weight = linear.up.bias is not None, linear.up.weight
    else:
        has_bias, weight = linear.bias is not None, linear.weight
    return nn.Linear(
        in_features, out_features, bias=has_bias, device=weight.device, dtype=weight.dtype
    )


def take_rows(linear: nn.Module, index: list[int]) -> dict[str, torch.Tensor]:
    """State dict of `linear` keeping only the output features in `index` (bias too)."""
    out = "up." if isinstance(linear, LowRankLinear) else ""
    state = {k: v.detach().clone() for k, v in linear.state_dict().items()}
    state[f"{out}weight"] = state[f"{out}weight"][index]
    if f"{out}bias" in state:
        state[f"{out}bias"] = state[f"{out}bias"][index]
    return state


def take_columns(linear: nn.Module, index: list[int]) -> dict[str, torch.Tensor]:
    """State dict of `linear` keeping only the input features in `index` (bias unchanged)."""
    into = "down." if isinstance(linear, LowRankLinear) else ""
    state = {k: v.detach().clone() for k, v in linear.state_dict().items()}
    state[f"{into}weight"] = state[f"{into}weight"][:, index]
    return state
