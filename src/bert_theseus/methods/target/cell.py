"""DynaBERT on one cell: the rewired model trained only at the chosen (width, depth), whose
sub-network is then cut out as the run's model."""

from __future__ import annotations

from collections.abc import Iterator

from transformers import PreTrainedModel

from ..dynabert.adaptive import extract
from ..dynabert.method import DynaBERTMethod


class CellMethod(DynaBERTMethod):
    """Training one cell touches only the weights its sub-network slices, so the model
    left behind is that sub-network: evaluated as it is at each step, and saved extracted.

    >>> CellMethod(rewired, [(0.5, 0.5)], teacher=predecessor, hidden_weight=1.0)
    """

    def views(self, model: PreTrainedModel) -> Iterator[None]:
        ((width, depth),) = self.cells
        with self.adaptive.sub_network(width, depth):
            yield None  # one view, scored as the run's own: it is the model that is saved

    def finalize(self, model: PreTrainedModel) -> PreTrainedModel:
        ((width, depth),) = self.cells
        return extract(super().finalize(model), width, depth)
