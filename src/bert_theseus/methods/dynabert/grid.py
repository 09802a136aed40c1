"""The grid of a trained DynaBERT model: every (width, depth) cell's score, size and speed.

Scores are those of the selected checkpoint's evaluation (the loop scores every sub-network
at every evaluation); parameters and latency are of each cell's extracted model, timed side
by side with the predecessor in one process, interleaved.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from transformers import PreTrainedModel

from ...runs import save_figure, write_atomic
from ...speed import count_parameters, measure_latency
from .adaptive import cell_name, extract, kept_layers, trained_rule

REPEATS = 5  # timed rounds per model; a grid times 13 models, so fewer than a compress's 10
COLUMNS = ("width", "depth", "layers", "score", "retention_percent", "parameters", "latency_ms",
           "speedup", "one_answer")  # fmt: skip
# What grid.md says of a cell that answers one class (or one value) for every dev example:
# its retention is a constant predictor's, not a kept score.
ONE_ANSWER = "one answer for every example"


def grid(
    model: PreTrainedModel,
    predecessor: PreTrainedModel,
    cells: list[tuple[float, float]],
    dev: dict,
    before: dict,
    seq_length: int = 128,
    bf16: bool = False,
    repeats: int = REPEATS,
    constant: list[str] = (),
) -> list[dict]:
    """One row per cell: dev score (a fraction, as in metrics.json), retention, parameters,
    latency and speed-up, and whether the cell's view ("split@cell") is in `constant` (the
    loop's detector: it gives one answer for every example).

    `dev` is the run's best dev metrics (with "split@cell" entries), `before` the
    predecessor's dev metrics; the first split is reported.
    """
    split = next(iter(before))
    reference = before[split]["score"]
    rule, depth_of = trained_rule(model), model.config.num_hidden_layers
    models = {"predecessor": predecessor}
    models.update({cell_name(w, d): extract(model, w, d) for w, d in cells})
    times = measure_latency(models, 32, seq_length, repeats=repeats, warmup=1, bf16=bf16)
    rows = []
    for width, depth in cells:
        name = cell_name(width, depth)
        score = dev[f"{split}@{name}"]["score"]
        rows.append(
            {
                "width": width,
                "depth": depth,
                # which layers the cell keeps (0-based), as the depth rule it trained with
                "layers": " ".join(map(str, kept_layers(depth, depth_of, rule))),
                "score": round(score, 4),
                "retention_percent": round(100 * score / reference, 2) if reference else None,
                "parameters": count_parameters(models[name]),
                "latency_ms": round(1000 * times[name], 1),
                "speedup": round(times["predecessor"] / times[name], 2),
                "one_answer": f"{split}@{name}" in constant,
            }
        )
    return rows


def speed_setting(seq_length: int, bf16: bool, repeats: int = REPEATS) -> str:
    """How `grid` times the cells, in words, for grid.md."""
    precision = "bf16 autocast" if bf16 else "fp32"
    return f"batch 32 x {seq_length} tokens, {precision}, median of {repeats}, interleaved"


def write_grid(folder: Path, rows: list[dict], setting: str, task: str) -> None:
    """grid.csv, grid.md and grid.png in `folder`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(folder / "grid.csv", buffer.getvalue())
    lines = [
        f"# DynaBERT sub-networks on {task}",
        "",
        f"Dev score of each (width, depth) at the selected checkpoint; speed: {setting}.",
        "Trained without TinyBERT data augmentation (the paper's numbers use it).",
        f"A cell marked '{ONE_ANSWER}' ignores its input: its retention is a constant's.",
        "",
        "| width | depth | layers kept | score | retention | parameters | latency ms | speed-up "
        "| note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['width']:g} | {r['depth']:g} | {r['layers']} | {r['score']:.4f} "
            f"| {r['retention_percent']}% "
            f"| {r['parameters'] / 1e6:.1f}M | {r['latency_ms']:.1f} | {r['speedup']:.2f}x "
            f"| {ONE_ANSWER if r.get('one_answer') else ''} |"
        )
    write_atomic(folder / "grid.md", "\n".join(lines) + "\n")
    _plot(rows, folder / "grid.png", task)


def _plot(rows: list[dict], path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4.2))
    for depth in sorted({r["depth"] for r in rows}, reverse=True):
        cells = [r for r in rows if r["depth"] == depth]
        axis.plot([r["speedup"] for r in cells], [r["score"] for r in cells], "o-",
                  label=f"depth {depth:g}")  # fmt: skip
        for r in cells:
            axis.annotate(f"w{r['width']:g}", (r["speedup"], r["score"]), fontsize=7,
                          xytext=(3, 3), textcoords="offset points")  # fmt: skip
    constant = [r for r in rows if r.get("one_answer")]
    if constant:
        axis.plot([r["speedup"] for r in constant], [r["score"] for r in constant], "kx",
                  markersize=9, label=ONE_ANSWER)  # fmt: skip
    axis.set_xlabel("speed-up over the predecessor")
    axis.set_ylabel("dev score")
    axis.set_title(f"DynaBERT sub-networks, {task}")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    save_figure(figure, path)
