"""LadaBERT's parameter budget: the SVD ranks that keep P_svd, and Eq. 7 per parameter group."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from ...arch import model_type_of
from ...compact import layout_for

GROUPS = ("embeddings", "encoder", "head")


def svd_rank(rows: int, cols: int, p_svd: float) -> int | None:
    """The rank r whose factors keep P_svd of an m x n matrix: (m + n) r / (m n) = P_svd
    (Eq. 4), rounded; None for P_svd = 1 (factors of the same size save nothing).

    >>> svd_rank(768, 768, 0.5), svd_rank(768, 3072, 0.4)
    (192, 246)
    """
    if p_svd >= 1.0:
        return None
    return max(1, round(rows * cols * p_svd / (rows + cols)))


def encoder_ranks(model: PreTrainedModel, p_svd: float) -> list[dict[str, int]]:
    """Per layer, the rank of each of its six weight matrices (Q, K, V, attention output,
    FFN in and out) at P_svd; empty dicts for P_svd = 1."""
    layout = layout_for(model_type_of(model.config))
    paths = layout.linears()
    ranks = []
    for layer in model.base_model.get_submodule(layout.layers):
        sizes = {path: layer.get_submodule(path) for path in paths}
        ranks.append({
            path: rank
            for path, linear in sizes.items()
            if (rank := svd_rank(linear.out_features, linear.in_features, p_svd)) is not None
        })  # fmt: skip
    return ranks


def embedding_rank(model: PreTrainedModel, p_embd: float) -> int | None:
    table = model.base_model.get_submodule(layout_for(model_type_of(model.config)).word_embeddings)
    return svd_rank(table.num_embeddings, table.embedding_dim, p_embd)


def group_of(model: PreTrainedModel) -> dict[str, str]:
    """Parameter name -> its group: embeddings (with ELECTRA's projection to the hidden size),
    encoder (the module holding the layers, with MPNet's shared position bias) or head (the
    rest: pooler and classifier)."""
    layout = layout_for(model_type_of(model.config))
    base = model.base_model
    encoder = layout.layers.rpartition(".")[0] or layout.layers
    modules = {"embeddings": [base.embeddings], "encoder": [base.get_submodule(encoder)]}
    if hasattr(base, "embeddings_project"):
        modules["embeddings"].append(base.embeddings_project)
    owner = {id(p): group for group, ms in modules.items() for m in ms for p in m.parameters()}
    return {name: owner.get(id(p), "head") for name, p in model.named_parameters()}


def count(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per group: parameters stored and non-zero."""
    counts = {group: {"stored": 0, "nonzero": 0} for group in GROUPS}
    groups = group_of(model)
    for name, parameter in model.named_parameters():
        entry = counts[groups[name]]
        entry["stored"] += parameter.numel()
        entry["nonzero"] += int((parameter != 0).sum())
    return counts


def budget_table(
    predecessor: PreTrainedModel, student: PreTrainedModel, kept: tuple[float, float, float]
) -> list[dict]:
    """One row per group and a total: the predecessor's parameters, Eq. 7's target
    (P_embd |θ_embd|, P_svd P_weight |θ_encd|, |θ_cls|), and what the student stores and
    keeps non-zero. Biases, LayerNorms and position tables are never compressed, so the
    achieved counts sit a little above the target."""
    p_embd, p_svd, p_weight = kept
    share = {"embeddings": p_embd, "encoder": p_svd * p_weight, "head": 1.0}
    before, after = count(predecessor), count(student)
    rows = []
    for group in GROUPS:
        original = before[group]["stored"]
        rows.append({
            "group": group,
            "parameters": original,
            "target": round(share[group] * original),
            "stored": after[group]["stored"],
            "nonzero": after[group]["nonzero"],
        })  # fmt: skip
    total = {key: sum(row[key] for row in rows) for key in ("parameters", "target", "stored",
                                                              "nonzero")}  # fmt: skip
    rows.append({"group": "total", **total})
    for row in rows:
        row["target_kept"] = round(row["target"] / row["parameters"], 4)
        row["kept"] = round(row["nonzero"] / row["parameters"], 4)
    return rows


def format_budget(rows: list[dict]) -> str:
    """The budget table as Markdown, with the compression factor x = parameters / non-zero."""
    lines = [
        "| group | parameters | target (Eq. 7) | stored | non-zero | kept | factor |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        factor = row["parameters"] / max(row["nonzero"], 1)
        lines.append(
            f"| {row['group']} | {row['parameters']:,} | {row['target']:,} "
            f"({row['target_kept']:.1%}) | {row['stored']:,} | {row['nonzero']:,} | "
            f"{row['kept']:.1%} | x{factor:.2f} |"
        )
    return "\n".join(lines)
