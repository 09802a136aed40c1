"""Inputs a model's exported graph takes besides the tokens, and who computes them.

A method whose model takes more than tokens computes those inputs outside the graph (it
exports them with the model's `export_inputs` and `export_files`), so whoever runs the
export must compute them the same way. The method registers that here, once, at its
registration; deployment (`theseus predict`, `benchmark`, `export`'s checks) asks this
table and so runs such an export without knowing the method. This module imports nothing
of the package: a method's registration must stay light (`theseus --help` loads no torch),
so `load` and `model_step` import the heavy parts when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Fill = Callable[[dict], dict]  # a batch -> its extra inputs, by graph input name


@dataclass(frozen=True)
class ExtraInputs:
    """How the extra inputs `inputs` of an export are computed.

    `load(folder)` returns the function that fills a batch's extra inputs from what the
    export folder holds; `model_step(model)` returns the same step for a PyTorch model that
    has it (None for one that has not), which `benchmark` times apart from the model given
    its inputs. `step` names that timed step's row, `given` the model's row given them.
    """

    inputs: tuple[str, ...]
    load: Callable[[Path], Fill]
    model_step: Callable[[Any], Fill | None]
    step: str
    given: str


_PROVIDERS: dict[tuple[str, ...], ExtraInputs] = {}


def register_extra_inputs(provider: ExtraInputs) -> None:
    """Make deployment compute `provider.inputs` wherever an export takes them (registered
    again, as a re-imported method is, it replaces its earlier self)."""
    others = {name for key in _PROVIDERS if key != provider.inputs for name in key}
    clash = sorted(others & set(provider.inputs))
    if clash:
        raise ValueError(f"extra inputs {', '.join(clash)} are already provided for")
    _PROVIDERS[provider.inputs] = provider


def for_export(input_names: Iterable[str]) -> ExtraInputs | None:
    """The provider of an export whose graph takes `input_names`, or None (tokens only)."""
    names = set(input_names)
    return next((p for p in _PROVIDERS.values() if names & set(p.inputs)), None)


def for_model(model) -> tuple[ExtraInputs, Fill] | None:
    """The provider whose step a PyTorch model has, with that step, or None."""
    for provider in _PROVIDERS.values():
        step = provider.model_step(model)
        if step is not None:
            return provider, step
    return None
