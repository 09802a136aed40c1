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


def check_route(config, predecessor) -> None:
    """Let the route's own methods refuse, before any data is read, a predecessor or shape
    they cannot start from: module replacing and DynaBERT need whole layers of one size,
    and DynaBERT at least one head per layer at the width."""
    from ..registry import MethodContext

    layers = predecessor.config.num_hidden_layers
    context = MethodContext(predecessor)
    if config.route == "theseus-width" and config.depth < layers:
        from ..theseus import TheseusConfig

        TheseusConfig(grouping=groups(layers, config.depth)).check(context)
    if config.route == "dynabert-cell":
        from ..dynabert.config import DynaBERTConfig, check_predecessor

        widths, depths = sorted({1.0, config.width}), sorted({1.0, config.depth / layers})
        check_predecessor(predecessor, DynaBERTConfig(widths=widths, depths=depths))


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
    FFN neurons (DynaBERT's importance on `batches`), and to `layers`. The kept heads stay
    in the predecessor's order (`compact.in_source_order`), so a full-width MPNet cut is
    the stock model the plan timed. Each layer keeps the plan's share of its own heads and
    neurons, so a compact model whose layers differ is cut as the plan timed it. A sentence
    encoder has its transformer cut (`embedding.cut_transformer`)."""
    from ...compact import compact_from, in_source_order, to_stock_if_possible
    from ...plan.shapes import kept_heads, kept_neurons
    from ..dynabert.importance import importance, importance_order
    from .embedding import cut_transformer

    heads, neurons = importance(model, batches)
    kept_h, kept_n = [], []
    for head_order, neuron_order in zip(importance_order(heads), importance_order(neurons),
                                        strict=True):  # fmt: skip
        count = kept_heads(width, len(head_order))
        kept_h.append(head_order[:count])
        kept_n.append(neuron_order[: kept_neurons(count, len(head_order), len(neuron_order))])

    def cut(encoder):
        heads = in_source_order(encoder, kept_h)
        return to_stock_if_possible(
            compact_from(encoder, heads=heads, neurons=kept_n, layers=layers)
        )

    return cut_transformer(model, cut)


def kd_layers(layers: int, depth: int, choice: str) -> tuple[list[int], list[int]]:
    """The predecessor layers kd-sliced keeps, and the predecessor state each student state
    learns. The bottom layers learn evenly spaced states (`uniform_match`); a layer kept
    from each run of consecutive layers learns the state at the end of its run.

    >>> kd_layers(12, 3, "last-of-group")
    ([3, 7, 11], [0, 4, 8, 12])
    """
    from ..theseus.model import source_layers

    if choice == "bottom":
        return list(range(depth)), uniform_match(depth, layers)
    runs = groups(layers, depth)
    return source_layers(runs, choice), [0] + [run[-1] + 1 for run in runs]


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
    # auto is still auto only for a classifier (a sentence encoder's is resolved in check).
    choice = "bottom" if config.layers == "auto" else config.layers
    kept, match = kd_layers(layers, config.depth, choice)

    def start(predecessor):
        student = sliced(predecessor, config.width, kept, _dev(context))
        return _distil(context, config, student, match, "kd-sliced")

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
