"""A measured plan: one row per (shape, runtime), the choice of a shape for a target, and
the files `theseus plan` writes (plan.json, plan.csv, plan.md, plan.png)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..runs import save_figure, write_atomic, written_by
from .config import PlanError

COLUMNS = ("depth", "width", "runtime", "parameters", "capacity", "seconds", "latency_ms",
           "speedup", "layer_heads", "layer_intermediate_sizes", "engine")  # fmt: skip


@dataclass
class Plan:
    """Measured speed-ups of every shape on every runtime of the plan, over the baseline.

    `rows`: one dict per (shape, runtime) with depth, width, runtime, layer_heads,
    layer_intermediate_sizes, parameters, capacity (parameters inside the encoder layers),
    seconds (median per batch), latency_ms, speedup (baseline seconds / seconds) and engine
    (what ran it). `predecessor`: the predecessor's own rows on the plan's runtimes (the
    baseline among them); `baseline`: its row on the baseline runtime.

    >>> plan = make_plan("runs/teacher", PlanConfig(runtime=["onnx-int8"]))
    >>> plan.choose(target_speedup=8)["depth"], plan.choose(target_speedup=8)["width"]
    """

    rows: list[dict]
    predecessor: list[dict]
    baseline: dict
    settings: dict
    measured: str  # when, ISO 8601

    @property
    def runtimes(self) -> list[str]:
        return list(self.settings["runtimes"])

    def where(self) -> str:
        """The timing setting in words: "torch-fp32 at batch 32 x 128"."""
        s = self.settings
        return f"{self.baseline['runtime']} at batch {s['batch_size']} x {s['length']}"

    def choose(
        self,
        target_speedup: float | None = None,
        target_latency_ms: float | None = None,
        runtime: str | None = None,
    ) -> dict:
        """The row with the most capacity (ties: the faster) among those that meet the
        target (speed-up >= `target_speedup` and/or latency_ms <= `target_latency_ms`) on
        `runtime` (None: any runtime of the plan). None meets it: PlanError naming the
        fastest shape and its measured speed-up."""
        if target_speedup is None and target_latency_ms is None:
            raise PlanError("give a target: a speed-up or a latency")
        if runtime is not None and runtime not in self.runtimes:
            raise PlanError(
                f"runtime {runtime} is not in the plan ({', '.join(self.runtimes)}): plan it "
                f"with --runtime {runtime}"
            )
        rows = [r for r in self.rows if runtime is None or r["runtime"] == runtime]
        meeting = [
            r
            for r in rows
            if (target_speedup is None or r["speedup"] >= target_speedup)
            and (target_latency_ms is None or r["latency_ms"] <= target_latency_ms)
        ]
        if meeting:
            return max(meeting, key=lambda r: (r["capacity"], r["speedup"]))
        raise PlanError(self._unreachable(rows, target_speedup, target_latency_ms))

    def _unreachable(self, rows: list[dict], speedup: float | None, latency: float | None) -> str:
        fastest = max(rows, key=lambda r: r["speedup"])
        s = self.settings
        at = f"at batch {s['batch_size']} x {s['length']}"
        if speedup is not None:
            goal = f"no shape reaches {speedup:g}x over {self.baseline['runtime']} {at}"
        else:
            goal = f"no shape runs a batch within {latency:g} ms {at}"
        if latency is not None and speedup is not None:
            goal += f" within {latency:g} ms"
        measured = f"{fastest['speedup']:.1f}x, {fastest['latency_ms']:.1f} ms"
        fix = "lower the target"
        narrower = min(s["widths"]) / 2
        if min(fastest["layer_heads"]) > 1:
            fix += f" or add --widths {narrower:g}"
        return (
            f"{goal}: the fastest, depth {fastest['depth']} width {fastest['width']:g} on "
            f"{fastest['runtime']}, measured {measured}; {fix}"
        )

    def frontier(self, runtime: str) -> list[dict]:
        """The rows of `runtime` that no other row of it beats in both capacity and
        speed-up, fastest first."""
        rows = [r for r in self.rows if r["runtime"] == runtime]
        kept = [
            r
            for r in rows
            if not any(
                o["capacity"] >= r["capacity"]
                and o["speedup"] >= r["speedup"]
                and (o["capacity"], o["speedup"]) != (r["capacity"], r["speedup"])
                for o in rows
            )
        ]
        return sorted(kept, key=lambda r: -r["speedup"])

    def table(self, runtime: str) -> str:
        """Speed-ups of `runtime` as Markdown: depth rows x width columns; the predecessor's
        own cell (all layers, width 1) marked."""
        cells = {(r["depth"], r["width"]): f"{r['speedup']:.2f}x" for r in self.rows
                 if r["runtime"] == runtime}  # fmt: skip
        own = next((r for r in self.predecessor if r["runtime"] == runtime), None)
        if own is not None:
            cells[(own["depth"], 1.0)] = f"{own['speedup']:.2f}x (predecessor)"
        depths = sorted({d for d, _ in cells}, reverse=True)
        widths = sorted({w for _, w in cells}, reverse=True)
        lines = [
            f"{runtime}: speed-up over {self.where()}",
            "",
            "| depth | " + " | ".join(f"width {w:g}" for w in widths) + " |",
            "|---|" + "---|" * len(widths),
        ]
        for depth in depths:
            row = [cells.get((depth, w), "–") for w in widths]
            lines.append(f"| {depth} | " + " | ".join(row) + " |")
        return "\n".join(lines)

    def markdown(self) -> str:
        """plan.md: the settings, a table per runtime and each runtime's frontier."""
        s, base = self.settings, self.baseline
        parts = [
            "# Plan: measured speed-up of each successor shape",
            "",
            f"Baseline: the predecessor ({base['depth']} layers, "
            f"{base['parameters'] / 1e6:.1f}M parameters) on {base['runtime']}, "
            f"{base['latency_ms']:.1f} ms per batch of {s['batch_size']} x {s['length']} "
            f"tokens. Measured {self.measured} on {s['cpu']} with {s['threads']} threads, "
            f"{s['repeats']} interleaved rounds (median) after {s['warmup']} warm-up; "
            "each shape built from the predecessor's own weights (the first heads and FFN "
            "neurons of its bottom layers).",
        ]
        for runtime in self.runtimes:
            parts += ["", "## " + runtime, "", self.table(runtime), "", "Frontier (no shape is "
                      "both larger and faster):", ""]  # fmt: skip
            parts += [f"- depth {r['depth']} width {r['width']:g}: {r['speedup']:.2f}x, "
                      f"{r['latency_ms']:.1f} ms, capacity {r['capacity'] / 1e6:.2f}M"
                      for r in self.frontier(runtime)]  # fmt: skip
        return "\n".join(parts) + "\n"

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        lists = ("layer_heads", "layer_intermediate_sizes")
        for row in self.rows:
            writer.writerow({**row, **{k: " ".join(map(str, row[k])) for k in lists}})
        return out.getvalue()

    def save(self, folder: str | Path) -> Path:
        """Write plan.json (everything; `Plan.load` reads it back), plan.csv, plan.md and
        plan.png to `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        record = {"written_by": written_by(), **asdict(self)}
        write_atomic(folder / "plan.json", json.dumps(record, indent=2) + "\n")
        write_atomic(folder / "plan.csv", self.csv())
        write_atomic(folder / "plan.md", self.markdown())
        self.plot(folder / "plan.png")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Plan:
        record = json.loads((Path(folder) / "plan.json").read_text())
        record.pop("written_by", None)
        return cls(**record)

    def plot(self, path: Path) -> None:
        """Speed-up against capacity, a colour per runtime, its frontier joined."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(7, 4.5))
        for runtime in self.runtimes:
            rows = [r for r in self.rows if r["runtime"] == runtime]
            points = axis.scatter([r["capacity"] / 1e6 for r in rows],
                                  [r["speedup"] for r in rows], s=14, label=runtime)  # fmt: skip
            edge = sorted(self.frontier(runtime), key=lambda r: r["capacity"])
            axis.plot([r["capacity"] / 1e6 for r in edge], [r["speedup"] for r in edge],
                      color=points.get_facecolor()[0])  # fmt: skip
        axis.axhline(1.0, color="grey", linewidth=0.8)
        axis.set_yscale("log")
        axis.set_xlabel("capacity (million parameters in the encoder layers)")
        axis.set_ylabel(f"speed-up over {self.where()}")
        axis.legend(fontsize=8)
        save_figure(figure, path)
