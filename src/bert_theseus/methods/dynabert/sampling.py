"""Which sub-networks a step trains: all of them (the paper), or the sandwich rule of
slimmable networks (Yu & Huang, ICCV 2019) that BigNAS and Once-for-All train supernets with:
the largest and the smallest every step, and `sampled` others drawn for that step."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

SUBNETWORKS = ("all", "sandwich")

Cell = tuple[float, float]


@dataclass(frozen=True)
class CellSampler:
    """The cells (width, depth) of step `step` of one stage.

    The draw depends only on the run's seed, the stage and the step, not on a generator's
    state: every process draws the same cells, and a resumed run the cells the uninterrupted
    one drew, with nothing to save in checkpoints.

    >>> sampler = CellSampler(cells, "sandwich", sampled=2, seed=42, stage="dynabert")
    >>> sampler.step_cells(0)  # [(1.0, 1.0), two others, (0.25, 0.5)], in `cells`' order
    """

    cells: tuple[Cell, ...]
    rule: str = "all"
    sampled: int = 2
    seed: int = 0
    stage: str = ""

    def step_cells(self, step: int) -> list[Cell]:
        # Here, not at the top: the CLI reads this module (via the config) without torch.
        import torch

        if self.rule == "all":
            return list(self.cells)
        ends = self.largest(), self.smallest()
        others = [cell for cell in self.cells if cell not in ends]
        generator = torch.Generator().manual_seed(self._step_seed(step))
        drawn = torch.randperm(len(others), generator=generator)[: self.sampled].tolist()
        chosen = set(ends) | {others[i] for i in drawn}
        return [cell for cell in self.cells if cell in chosen]

    def largest(self) -> Cell:
        return max(w for w, _ in self.cells), max(d for _, d in self.cells)

    def smallest(self) -> Cell:
        return min(w for w, _ in self.cells), min(d for _, d in self.cells)

    def _step_seed(self, step: int) -> int:
        # crc32, not hash(): Python salts str hashes per process.
        return zlib.crc32(f"{self.seed}:{self.stage}:{step}".encode())

    def settings(self) -> dict:
        if self.rule == "all":
            return {}
        return {"subnetworks": self.rule, "sampled": self.sampled}
