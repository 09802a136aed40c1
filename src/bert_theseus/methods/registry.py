"""The method registry: every compression method is one `register_method` call.

The CLI, `compress`, `compare`, run records and resumes read what is method-specific from
here (its config dataclass, its stages, its paper), so adding a method touches only its
own folder. Methods outside this package register the same way, from a module named in
the `BERT_THESEUS_PLUGINS` environment variable (comma-separated) or an entry point of the
group `bert_theseus.methods`; both are imported the first time the registry is read.

>>> @dataclass
... class HeadOnlyConfig:
...     def validate(self) -> None: ...
>>> register_method("head-only", HeadOnlyConfig, build=lambda context, config: [...],
...                 summary="train only the classifier", paper="a baseline")
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: registering a method must not load torch
    import torch
    from transformers import PreTrainedModel

    from ..data.tasks import Task
    from ..training.stages import Stage

PLUGINS_VARIABLE = "BERT_THESEUS_PLUGINS"
ENTRY_POINT_GROUP = "bert_theseus.methods"


class MethodError(ValueError):
    """An unknown method, a setting a method does not take, or a method that cannot be
    registered; the message says what to do instead."""


class MethodConfigError(MethodError):
    """A method's setting is invalid; the message says which and how to fix it."""


@dataclass
class MethodContext:
    """What a method is built from. `task` and `dev_batches` are None when only the settings
    are checked, before any data is read (a sentence-embedding run gives its task, which its
    flags decide). The predecessor is never changed by a method: it stays the
    reference for retention and speed-up, and may serve as the frozen teacher."""

    predecessor: PreTrainedModel
    seed: int = 42
    task: Task | None = None
    trust_remote_code: bool = False
    # Batches of the dev split(s), labels included (DynaBERT scores heads on them, as the
    # paper does); None when only the settings are checked.
    dev_batches: Callable[[], Iterable[dict]] | None = None
    device: torch.device | str = "cpu"  # where the run trains (work done in `build` goes there)
    # The training split's labelled batches in file order, and the tokenizer (RefBERT indexes
    # and stores the training set); None when only the settings are checked.
    train_batches: Callable[[], Iterable[dict]] | None = None
    tokenizer: typing.Any = None

    @property
    def regression(self) -> bool:
        return bool(self.task and self.task.is_regression)


@dataclass(frozen=True)
class MethodSpec:
    """One registered method.

    `config` is a dataclass whose field metadata ("help") is the CLI help; it may define
    `validate()` (settings alone) and `check(context)` (settings against the predecessor,
    before any data is read). `build(context, config)` returns the method's stages, each a
    run of the shared training loop.
    """

    name: str
    config: type
    build: Callable[[MethodContext, typing.Any], list[Stage]]
    summary: str
    paper: str
    compare_default: bool = False
    # After training, more results of the final model: report(config, ReportInput) returns
    # entries for metrics.json and may write files into the run folder (DynaBERT's grid).
    report: Callable[[typing.Any, ReportInput], dict] | None = None
    # Standalone models inside a saved run, by view name (the "split@view" keys of its dev
    # metrics): `compare` gives each its own row. DynaBERT: every sub-network.
    variants: Callable[[PreTrainedModel], dict[str, PreTrainedModel]] | None = None
    # How the method's own results read: lines added to the CLI's summary of a run
    # (summary_lines(metrics)) and to its model card (card_lines(metrics, split), Markdown).
    summary_lines: Callable[[dict], list[str]] | None = None
    card_lines: Callable[[dict, str], list[str]] | None = None
    # Sub-commands the method adds to `theseus` (DynaBERT's `extract`).
    commands: tuple[MethodCommand, ...] = ()
    # Settings whose flag, given to `compress` or `compare` without --method(s), selects
    # this method (`compress --target-speedup 4`).
    selected_by: tuple[str, ...] = ()
    # The runs `compare` makes of one config, by label (default: one, the method's name):
    # compare_runs(config) -> {label: config}. The target method: one per route.
    compare_runs: Callable[[typing.Any], dict[str, typing.Any]] | None = None
    # Whether the method trains sentence-embedding students (`compress --embedding`): its
    # loss is the model's own (`model(**batch).loss`, the MSE to the teacher's embeddings)
    # or the teacher's outputs, and its model stays one of the predecessor's class.
    embedding: bool = False
    # Whether rows without a label (--unlabeled-file) can train it, and what its teacher
    # term takes from the teacher on them, in a short phrase ("the teacher's soft targets");
    # None: its loss has no teacher term, and such rows are refused.
    unlabelled: str | None = None

    def make_config(self, values: dict | None = None):
        """The method's config from `values` (unknown names are refused), validated."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MethodError(
                f"method '{self.name}' has no setting {', '.join(unknown)}: see "
                f"'theseus compress --method {self.name} --help'"
            )
        config = self.config(**values)
        validate(config)
        return config

    def check(self, config, context: MethodContext) -> None:
        """Fail on settings that do not fit the predecessor, before anything is trained."""
        validate(config)
        check = getattr(config, "check", None)
        if check is not None:
            check(context)

    def stages(self, config, context: MethodContext) -> list[Stage]:
        """The method's stages; call `check` first (compress and compare do, before reading
        data), since checking may be costly (`--student-from` loads a model)."""
        stages = self.build(context, config)
        names = [stage.name for stage in stages]
        if not stages or len(set(names)) != len(names):
            raise MethodError(f"method '{self.name}' built stages {names}: need distinct names")
        return stages


@dataclass(frozen=True)
class MethodCommand:
    """A sub-command of `theseus` that a method brings (`theseus NAME ...`).

    `arguments(parser)` adds its flags (--config, --trust-remote-code and --debug are added
    for it); `run(args)` does the work and returns what it reports, which `report(result)`
    turns into the lines printed when it is done.
    """

    name: str
    help: str
    arguments: Callable[[typing.Any], None]
    run: Callable[[typing.Any], typing.Any]
    report: Callable[[typing.Any], str]


@dataclass
class ReportInput:
    """What a method's `report` gets: the final and original models, the run's metrics so
    far, the folder being written (None outside the main process), the speed setting
    the run times in (sequence length, bf16), and a way to export the final model."""

    model: PreTrainedModel
    predecessor: PreTrainedModel
    metrics: dict
    folder: Path | None
    seq_length: int
    bf16: bool
    # export(folder, ExportConfig) -> export.json's report: the final model exported,
    # verified and scored on the run's dev data as `theseus export` does (the job passes
    # it: exporting reads data, which sits above the methods).
    export: Callable[[Path, typing.Any], dict] | None = None


def identity(config) -> dict:
    """A method config's fields that decide what a run computes: those marked
    `metadata={"identity": False}` (speed-only, such as the teacher cache) are left out, so
    runs made before they existed, or with them toggled, still resume and are reused."""
    keep = {f.name for f in dataclasses.fields(config) if f.metadata.get("identity", True)}
    return {k: v for k, v in dataclasses.asdict(config).items() if k in keep}


def validate(config) -> None:
    """Check a method config: each setting's type (so a wrong shape is one line, not a
    TypeError inside the method), then the config's own `validate()`."""
    check_fields(config)
    check = getattr(config, "validate", None)
    if check is not None:
        check()


def check_fields(config) -> None:
    """Refuse a setting whose value does not fit its type hint (int, float, str, bool,
    lists of them, optional ones); a hint of another kind is left to the config."""
    if not dataclasses.is_dataclass(config):
        return
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, hint = getattr(config, f.name), hints[f.name]
        if not _fits(value, hint):
            shape = f.metadata.get("shape", "").replace("a JSON list", "a list") or _describe(hint)
            raise MethodConfigError(f"{f.name} {value!r} must be {shape}")


def _fits(value, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:  # a path may be given as a Path
        return isinstance(value, (str, os.PathLike))
    if origin is list:
        return isinstance(value, list) and all(_fits(item, args[0]) for item in value)
    return True


def _describe(hint, plural: bool = False) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a, plural) for a in args if a is not type(None))
    if origin is list:
        return ("lists of " if plural else "a list of ") + _describe(args[0], plural=True)
    names = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
             float: ("a number", "numbers"), str: ("a string", "strings")}  # fmt: skip
    return names.get(hint, (getattr(hint, "__name__", str(hint)),) * 2)[plural]


_REGISTRY: dict[str, MethodSpec] = {}
_plugins_loaded = False


def register_method(
    name: str,
    config: type,
    build: Callable[[MethodContext, typing.Any], list[Stage]],
    summary: str,
    paper: str,
    compare_default: bool = False,
    report: Callable[[typing.Any, ReportInput], dict] | None = None,
    variants: Callable[[PreTrainedModel], dict[str, PreTrainedModel]] | None = None,
    summary_lines: Callable[[dict], list[str]] | None = None,
    card_lines: Callable[[dict, str], list[str]] | None = None,
    commands: Iterable[MethodCommand] = (),
    selected_by: Iterable[str] = (),
    compare_runs: Callable[[typing.Any], dict[str, typing.Any]] | None = None,
    embedding: bool = False,
    unlabelled: str | None = None,
) -> MethodSpec:
    """Make `name` a method of `compress`, `compare` and `theseus methods`.

    Each method's settings are its own: two methods may give a setting the same name and
    different defaults (`compress` takes one method's flags; `compare` gives a shared flag
    to every listed method that has it, and `--set METHOD.SETTING=VALUE` to one).
    """
    if not dataclasses.is_dataclass(config):
        raise MethodError(f"method '{name}': its config {config!r} must be a dataclass")
    missing = [
        f.name for f in dataclasses.fields(config) if setting_default(f) is dataclasses.MISSING
    ]
    if missing:
        raise MethodError(
            f"method '{name}': settings {', '.join(missing)} need defaults (each is a CLI flag)"
        )
    spec = MethodSpec(name, config, build, summary, paper, compare_default, report, variants,
                      summary_lines, card_lines, tuple(commands), tuple(selected_by),
                      compare_runs, embedding, unlabelled)  # fmt: skip
    known = _REGISTRY.get(name)
    if known is not None:
        if _same(known, spec):  # the same module imported again, e.g. as a plugin
            return known
        raise MethodError(f"method '{name}' is registered already (by {known.config.__module__})")
    for other in _REGISTRY.values():
        taken = {c.name for c in other.commands} & {c.name for c in spec.commands}
        if taken:
            raise MethodError(
                f"method '{name}': command '{min(taken)}' is method '{other.name}''s already"
            )
    _REGISTRY[name] = spec
    return spec


def _same(a: MethodSpec, b: MethodSpec) -> bool:
    def key(spec):
        return (
            spec.config.__module__,
            spec.config.__qualname__,
            spec.build.__module__,
            spec.build.__qualname__,
            spec.summary,
            spec.paper,
            spec.compare_default,
            getattr(spec.report, "__qualname__", None),
            getattr(spec.variants, "__qualname__", None),
            getattr(spec.summary_lines, "__qualname__", None),
            getattr(spec.card_lines, "__qualname__", None),
            tuple(command.name for command in spec.commands),
            spec.selected_by,
            getattr(spec.compare_runs, "__qualname__", None),
            spec.embedding,
            spec.unlabelled,
        )

    return key(a) == key(b)


def setting_default(f: dataclasses.Field):
    """A config field's default (MISSING if it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def get_method(name: str) -> MethodSpec:
    """The registered method `name`; an unknown name lists the known ones."""
    specs = methods()
    if name not in specs:
        raise MethodError(f"unknown method '{name}': use one of {', '.join(specs)}")
    return specs[name]


def methods() -> dict[str, MethodSpec]:
    """Every registered method, in registration order (built-ins first, then plugins)."""
    load_plugins()
    return dict(_REGISTRY)


def default_method() -> str:
    """The method `compress` runs without --method: the first registered."""
    return next(iter(methods()))


def selected_method(settings: Iterable[str]) -> str | None:
    """The method that `settings` (given without --method) select, if any; two methods
    selected at once is an error."""
    chosen = {n for n, s in methods().items() for setting in settings if setting in s.selected_by}
    if len(chosen) > 1:
        raise MethodError(f"those settings select methods {', '.join(sorted(chosen))}: pass "
                          "--method")  # fmt: skip
    return chosen.pop() if chosen else None


def method_commands() -> dict[str, MethodCommand]:
    """The sub-commands the registered methods add, by name."""
    return {command.name: command for spec in methods().values() for command in spec.commands}


def embedding_methods() -> list[str]:
    """The methods that train sentence-embedding students."""
    return [name for name, spec in methods().items() if spec.embedding]


def unlabelled_methods() -> list[str]:
    """The methods whose loss has a teacher term that rows without labels can train."""
    return [name for name, spec in methods().items() if spec.unlabelled]


def compare_defaults() -> list[str]:
    return [name for name, spec in methods().items() if spec.compare_default]


def load_plugins() -> None:
    """Import the modules named in BERT_THESEUS_PLUGINS and the entry points, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    names = [n.strip() for n in os.environ.get(PLUGINS_VARIABLE, "").split(",") if n.strip()]
    for module in names:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise MethodError(
                f"{PLUGINS_VARIABLE} names module '{module}', which cannot be imported "
                f"({error}): fix the name or PYTHONPATH"
            ) from None
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # one broken installed plug-in must not hide the rest
            raise MethodError(
                f"the installed plug-in '{entry.name}' ({entry.value}) fails to load "
                f"({type(error).__name__}: {error}): upgrade or uninstall it"
            ) from None
    _plugins_loaded = True  # only once all loaded: a failure is reported again next time
