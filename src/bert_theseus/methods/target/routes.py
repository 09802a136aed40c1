"""The routes to a (depth, width) shape, each a list of stages of the shared loop built from
the other methods' parts: module replacing, DynaBERT's importance, rewiring and cells, and
distillation from the predecessor. Every route trains the run's epochs in all."""

from __future__ import annotations

from dataclasses import replace

from ..registry import MethodError
from .distil import SliceDistillMethod, uniform_match


def build_route(context, config) -> list:
    builders = {"theseus-width": _theseus_width, "dynabert-cell": _dynabert_cell,
                "kd-sliced": _kd_sliced}  # fmt: skip
    return builders[config.route](context, config)


def groups(layers: int, depth: int) -> list[list[int]]:
    """`layers` consecutive layers in `depth` runs whose lengths differ by at most one (the
    longer runs first), so module replacing reaches any depth, not only divisors.

    >>> groups(6, 4)
    [[0, 1], [2, 3], [4], [5]]
    """
    size, extra = divmod(layers, depth)
    runs, start = [], 0
    for i in range(depth):
        end = start + size + (1 if i < extra else 0)
        runs.append(list(range(start, end)))
        start = end
    return runs


def sliced(model, width: float, layers: list[int] | None, batches):
    """`model` cut to `width` in every layer, keeping each layer's most important heads and
    FFN neurons (DynaBERT's importance on `batches`, most important first), and to `layers`."""
    from ...compact import compact_from, to_stock_if_possible
    from ..dynabert.importance import importance, importance_order
    from ..dynabert.sizes import kept_heads, kept_neurons

    heads, neurons = importance(model, batches)
    total_heads, total_neurons = heads.shape[1], neurons.shape[1]
    h = kept_heads(width, total_heads)
    n = kept_neurons(width, total_heads, total_neurons)
    cut = compact_from(
        model,
        heads=[order[:h] for order in importance_order(heads)],
        neurons=[order[:n] for order in importance_order(neurons)],
        layers=layers,
    )
    return to_stock_if_possible(cut)


def _dev(context):
    if context.dev_batches is None:
        raise MethodError("importance is scored on dev: build the route through compress")
    return context.dev_batches()


def _distil(context, config, student, match, name):
    return student, SliceDistillMethod(
        context.predecessor, match, context.regression, config.hidden_weight,
        config.logit_weight, name,
    )  # fmt: skip


def _kd_sliced(context, config) -> list:
    from ...training.stages import Stage

    layers = context.predecessor.config.num_hidden_layers

    def start(predecessor):
        student = sliced(predecessor, config.width, list(range(config.depth)), _dev(context))
        return _distil(context, config, student, uniform_match(config.depth, layers), "kd-sliced")

    return [Stage("distil", start)]


def _theseus_width(context, config) -> list:
    from ...training.stages import Stage
    from ..theseus import TheseusConfig
    from ..theseus import build as build_theseus

    layers = context.predecessor.config.num_hidden_layers
    runs = groups(layers, config.depth)
    match = [0] + [run[-1] + 1 for run in runs]
    stages = []
    if config.depth < layers:
        stages += build_theseus(context, TheseusConfig(grouping=runs))
    if config.width < 1.0:

        def width(successor):
            student = sliced(successor, config.width, None, _dev(context))
            return _distil(context, config, student, match, "width")

        stages.append(Stage("width", width))
    return [replace(stage, share=1 / len(stages)) for stage in stages]


def _dynabert_cell(context, config) -> list:
    from ...training.stages import Stage
    from ..dynabert.depth_rule import choose_dropped_layer
    from ..dynabert.importance import importance, rewire
    from .cell import CellMethod

    layers = context.predecessor.config.num_hidden_layers
    depth = config.depth / layers

    def start(predecessor):
        rewired = rewire(predecessor, *importance(predecessor, _dev(context)))
        if context.train_batches is None:
            raise MethodError("the depth rule is measured on training inputs: use compress")
        rule = choose_dropped_layer(rewired, [depth], context.train_batches()).dropped_layer
        method = CellMethod(
            rewired, [(config.width, depth)], teacher=predecessor,
            regression=context.regression, hidden_weight=config.hidden_weight,
            logit_weight=config.logit_weight, output_mse=config.logit_weight,
            name="dynabert-cell", dropped=rule,
        )  # fmt: skip
        return rewired, method

    return [Stage("cell", start)]
