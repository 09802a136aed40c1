"""The student size of every depth-reducing method: how many layers, grouped how.

Module replacing and its baselines (truncated fine-tuning, KD, PKD) all make a student of
the successor's depth; they share these settings, and so one set of flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .registry import MethodConfigError, check_fields

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass
class DepthConfig:
    """How many layers the student keeps, or which predecessor layers form each module.

    >>> DepthConfig(successor_layers=6).modules(12)[:2]
    [[0, 1], [2, 3]]
    >>> DepthConfig(grouping=[[0, 1, 2], [3, 4], [5, 6], [7, 8], [9, 10, 11]])  # 12 -> 5
    """

    successor_layers: int | None = field(
        default=None,
        metadata={
            "help": "successor (student) depth n; fewer layers than the predecessor's, and "
            "a divisor of its depth (else use grouping)"
        },
    )
    grouping: list[list[int]] | None = field(
        default=None,
        metadata={
            "help": "explicit modules as lists of consecutive predecessor layers, e.g. "
            "[[0,1,2],[3,4],[5,6],[7,8],[9,10,11]] for 12 -> 5; overrides successor_layers",
            "shape": "a JSON list of lists of layer indices, e.g. [[0,1],[2,3]]",
        },
    )
    layers_path: str | None = field(
        default=None,
        metadata={"help": "dotted path of the encoder's layer list, for unknown architectures"},
    )

    def validate(self) -> None:
        check_fields(self)  # modules() validates too: a grouping of another shape stops here
        if self.successor_layers is None and self.grouping is None:
            raise MethodConfigError(
                "no successor size: pass successor_layers (--successor-layers 6) or a grouping"
            )
        if self.successor_layers is not None and self.successor_layers < 1:
            raise MethodConfigError(f"successor_layers {self.successor_layers} must be at least 1")

    def check(self, context) -> None:
        if hasattr(context.predecessor.config, "layer_heads"):
            # Its config lists sizes per layer; cutting layers would have to cut those lists.
            raise MethodConfigError(
                "the predecessor is a compact model (per-layer sizes): depth reduction of "
                "compact models is not supported yet; compress the full-size model instead"
            )
        layers = self.layer_count(context.predecessor)
        if self.depth(context.predecessor) == layers:
            raise MethodConfigError(
                f"the successor would keep all {layers} layers of the predecessor: nothing "
                f"compressed; {_fewer(layers)}"
            )

    def modules(self, predecessor_layers: int) -> list[list[int]]:
        """The predecessor layer indices of each module, checked against the depth."""
        self.validate()
        if self.grouping is not None:
            flat = [i for group in self.grouping for i in group]
            if flat != list(range(predecessor_layers)) or any(not g for g in self.grouping):
                raise MethodConfigError(
                    f"grouping {self.grouping} must split layers 0..{predecessor_layers - 1} into "
                    "non-empty runs of consecutive layers, in order, each layer once"
                )
            return [list(group) for group in self.grouping]
        n = self.successor_layers
        if n > predecessor_layers:
            raise MethodConfigError(
                f"successor depth {n} is more than the predecessor's {predecessor_layers} "
                f"layers: the successor must have fewer; {_fewer(predecessor_layers)}"
            )
        if predecessor_layers % n:
            raise MethodConfigError(
                f"successor depth {n} does not divide the predecessor depth {predecessor_layers}: "
                f"{_fewer(predecessor_layers)}, or pass an explicit grouping"
            )
        c = predecessor_layers // n
        return [list(range(i * c, (i + 1) * c)) for i in range(n)]

    def layer_count(self, predecessor: PreTrainedModel) -> int:
        from ..arch import find_layers_path  # torch: only once there is a model

        return len(predecessor.get_submodule(find_layers_path(predecessor, self.layers_path)))

    def depth(self, predecessor: PreTrainedModel) -> int:
        """The student's depth for this predecessor (raises if it does not fit)."""
        return len(self.modules(self.layer_count(predecessor)))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _fewer(layers: int) -> str:
    """How to ask for a successor that compresses a predecessor of `layers` layers."""
    smaller = [str(d) for d in _divisors(layers) if d < layers]
    if not smaller:
        return "a 1-layer model cannot lose layers: shrink its width instead (--method dynabert)"
    return f"pass --successor-layers {' or '.join(smaller)}"
