"""Configuration of BERT-PKD: KD plus the patient loss on intermediate [CLS] states."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..kd.config import KDConfig
from ..registry import MethodConfigError
from .layers import pkd_layer_map

PKD_STRATEGIES = ("skip", "last")


@dataclass
class PKDConfig(KDConfig):
    """BERT-PKD (Sun et al., 2019); beta inside its grid {10, 100, 500, 1000}.

    >>> PKDConfig(successor_layers=3, beta=100)                       # PKD-Skip
    >>> PKDConfig(successor_layers=3, layer_map=[[1, 2], [2, 4]])     # explicit map
    """

    beta: float = field(
        default=100.0,
        metadata={"help": "PKD: weight of the MSE between normalised [CLS] states"},
    )
    pkd_strategy: str = field(
        default="skip",
        metadata={
            "help": "PKD layer map: skip (student layer j learns teacher layer j*c, the "
            "paper's PKD-Skip) or last (the teacher's last layers before the top)"
        },
    )
    layer_map: list[list[int]] | None = field(
        default=None,
        metadata={
            "help": "PKD: explicit [student layer, teacher layer] pairs, counted from 1 "
            "(0 is the embeddings), e.g. [[1,2],[2,4]]; overrides pkd_strategy",
            "shape": "a JSON list of [student, teacher] layer pairs, e.g. [[1,2],[2,4]]",
        },
    )

    def validate(self) -> None:
        super().validate()
        if self.beta < 0:
            raise MethodConfigError(f"beta {self.beta} must not be negative: pass e.g. 100")
        if self.pkd_strategy not in PKD_STRATEGIES:
            raise MethodConfigError(
                f"unknown pkd_strategy '{self.pkd_strategy}': use one of "
                f"{', '.join(PKD_STRATEGIES)}"
            )
        if self.layer_map is not None and any(len(pair) != 2 for pair in self.layer_map):
            raise MethodConfigError(
                f"layer_map {self.layer_map} must be a list of [student, teacher] pairs, "
                "e.g. [[1,2],[2,4]]"
            )

    def check(self, context) -> None:
        super().check(context)
        self.pairs(context.predecessor)

    def pairs(self, predecessor) -> list[tuple[int, int]]:
        """The (student layer, teacher layer) map for this predecessor."""
        return pkd_layer_map(self.layer_count(predecessor), self.depth(predecessor), self)
