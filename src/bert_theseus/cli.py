"""`theseus`: fine-tune a predecessor, compress it by one of the registered methods (built
in or a plug-in; `theseus methods` lists them), compare methods over seeds, evaluate, and
deploy (export, benchmark, predict).

Options come from the config dataclasses (one place for defaults and help). A YAML file
given with --config supplies defaults; flags on the command line win over it. Each method's
settings are its own: `compress --method NAME` takes NAME's flags alone (read first, from
the command line or the YAML file's `method:`; a compress YAML file holds the method's
settings at its top level). `compare` takes the settings of its --methods: a plain flag
sets every listed method that has the setting, `--set METHOD.SETTING=VALUE` one method
(YAML: `set: {kd: {alpha: 0.7}}`), and wins over the plain flag. Methods may add
sub-commands and the lines that report their results (see `register_method`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import types
import typing

from . import __version__

# Commands that need neither torch nor transformers: they must start in well under a second.
LIGHT_COMMANDS = ("methods",)

EXAMPLES = """\
examples:
  theseus finetune --model PATH_OR_HUB_ID --task sst2 --data-dir GLUE/SST-2 --output runs/teacher
  theseus compress --model runs/teacher --task sst2 --data-dir GLUE/SST-2 \\
                   --successor-layers 6 --scheduler linear --output runs/successor
  theseus evaluate --model runs/successor --task sst2 --data-dir GLUE/SST-2
  theseus compare  --model runs/teacher --task rte --data-dir GLUE/RTE --successor-layers 3 \\
                   --methods theseus kd pkd truncated --seeds 1 2 3 --output runs/compare
  theseus methods
  theseus export runs/successor --onnx --int8 --task sst2 --data-dir GLUE/SST-2 \\
                   --output exports/successor
  theseus benchmark runs/teacher runs/successor --output bench.json
  theseus plan runs/teacher --runtime onnx-int8 --length 64 --output runs/plan
  theseus predict exports/successor --int8 --text "a gripping film"
"""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_dataclass(
    parser: argparse.ArgumentParser,
    cls,
    title: str,
    skip: set[str] = frozenset(),
    description: str | None = None,
    brief: bool = False,
    group=None,
):
    """One flag per field of the dataclass `cls`, in a new group (or `group`), which is
    returned; `brief`: each help cut to its first clause (where another command's --help
    gives it in full)."""
    group = group or parser.add_argument_group(title, description)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = hints[f.name]
        args = typing.get_args(kind)
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(a for a in args if a is not type(None))
        help_text = f.metadata.get("help", "")
        help_text = _first_clause(help_text) if brief else help_text
        if brief and f.metadata.get("brief") is False:  # named in another flag's brief help
            help_text = argparse.SUPPRESS
        default = f.default if f.default is not dataclasses.MISSING else None
        if kind is bool:  # --x and --no-x; None when neither is given, so the default holds
            group.add_argument(
                _flag(f.name), action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif kind == list[list[int]]:
            shape = JsonLists(f.metadata.get("shape", JsonLists.shape))
            group.add_argument(_flag(f.name), type=shape, metavar="JSON", help=help_text)
        elif typing.get_origin(kind) is list:
            item = typing.get_args(kind)[0]
            item = item if item in (int, float) else None
            group.add_argument(
                _flag(f.name), nargs="+", type=item, metavar=_metavar(item), help=help_text
            )
        else:
            shown = f" (default: {default})" if default is not None else ""
            shown = "" if help_text == argparse.SUPPRESS else shown
            group.add_argument(
                _flag(f.name), type=kind, metavar=_metavar(kind), help=help_text + shown
            )
    return group


def _first_clause(text: str) -> str:
    """`text` up to its first '; ', its first ': ' past a short lead ("GLUE task: ..." keeps
    its list), or its first parenthesis that closes a clause."""
    import re

    depth, cuts = 0, [text.find("; ")]
    for i, char in enumerate(text):  # ': ' outside parentheses
        depth += (char == "(") - (char == ")")
        if depth == 0 and i >= 15 and text.startswith(": ", i):
            cuts.append(i)
    cuts += [m.start() for m in re.finditer(r" \([^()]*\)(?=$|[;:])", text)]
    return text[: min((c for c in cuts if c > 0), default=len(text))]


def _metavar(kind) -> str:
    """A short placeholder (N, X, VALUE), so most flags and their help share a line."""
    return {int: "N", float: "X"}.get(kind, "VALUE")


class JsonLists:
    """The type of a JSON flag that holds a list of lists of integers (--grouping,
    --layer-map): its value is checked here, so a wrong shape is one line naming the flag,
    not a TypeError deep inside a method."""

    shape = "a JSON list of lists of integers, e.g. [[0,1],[2,3]]"

    def __init__(self, shape: str) -> None:
        self.shape = shape

    def __call__(self, text: str) -> list[list[int]]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise argparse.ArgumentTypeError(
                f"must be {self.shape}; {text!r} is not valid JSON ({error.msg})"
            ) from None
        return self.check(value, repr(text))

    def check(self, value, shown: str) -> list[list[int]]:
        def is_int(item) -> bool:
            return isinstance(item, int) and not isinstance(item, bool)

        lists = isinstance(value, list) and all(isinstance(v, list) for v in value)
        if not lists or not all(is_int(i) for v in value for i in v):
            raise argparse.ArgumentTypeError(f"must be {self.shape}, not {shown}")
        return value


def build_parser(
    method: str | None = None, compared: list[str] | None = None
) -> argparse.ArgumentParser:
    """The whole command line; `compress` takes the settings of `method` alone (none when it
    is None: its --help then says how to see a method's), `compare` those of `compared` (by
    default, its default methods). `parse` chooses them from the command line first."""
    # Config modules only: building the parser (--help, 'theseus methods') loads no torch.
    from .compare_config import CompareConfig
    from .data.config import DataConfig
    from .data.unlabelled import UnlabelledConfig
    from .embedding.config import EmbeddingConfig
    from .methods import compare_defaults, default_method, methods
    from .training import TrainingConfig

    parser = argparse.ArgumentParser(
        prog="theseus",
        description="Make a fine-tuned Hugging Face encoder smaller and faster by "
        "progressive module replacing (BERT-of-Theseus) and the methods beside it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        exit_on_error=False,  # a bad value is one line (see `parse`), not the whole usage
    )
    parser.add_argument("--version", action="version", version=f"bert-theseus {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    about = {
        "finetune": "fine-tune a pretrained encoder on a task (the predecessor)",
        "compress": "compress a fine-tuned predecessor with one method (see 'theseus methods')",
        "evaluate": "score a saved model on a task's dev (and test) data",
        "compare": "run several methods x seeds on one predecessor and tabulate them",
    }
    names = list(methods())
    subs = {}
    for name, text in about.items():
        extra = {"usage": COMPRESS_USAGE, "epilog": COMPRESS_EXAMPLES} if name == "compress" else {}
        if name in ("compress", "compare"):  # flags depend on the method: no abbreviations
            extra["allow_abbrev"] = False
        if name == "compress" and method is None:
            extra["epilog"] = _methods_note(names) + "\n" + COMPRESS_EXAMPLES
        sub = subs[name] = _add_parser(commands, name, text, **extra)
        sub.add_argument("--model", required=True, help="model folder or Hub id")
        if name != "evaluate":
            sub.add_argument("--output", required=True, help="folder to write the run to")
            sub.add_argument(
                "--overwrite",
                action="store_true",
                help="replace a non-empty --output folder when done",
            )
        else:
            sub.add_argument("--output", help="also write the metrics to this JSON file")
        if name in ("finetune", "compress"):
            sub.add_argument(
                "--push-to-hub",
                metavar="REPO_ID",
                help="upload the finished folder to this Hub repository, created if needed "
                "(needs a token: 'hf auth login')",
            )
        _add_common(sub)
        # compress --help keeps to the method: the shared flags in brief (finetune's in full).
        brief = name == "compress"
        more = " (in full: 'theseus finetune --help')" if brief else ""
        data_group = _add_dataclass(sub, DataConfig, "data" + more, brief=brief)
        # Texts for the teacher term: compress --method NAME offers them where NAME has one.
        if name == "compare" or (name == "compress" and _takes_unlabelled(method)):
            _add_dataclass(sub, UnlabelledConfig, "", brief=brief, group=data_group)
        # compress --method NAME --help keeps to what NAME takes.
        takes_embedding = method not in names or methods()[method].embedding
        if name == "compare" or (name == "compress" and takes_embedding):
            _add_dataclass(sub, EmbeddingConfig, "sentence-embedding models")
        if name == "compress":
            sub.add_argument(
                "--method",
                choices=names,
                metavar="NAME",
                help=f"default: {default_method()}; 'theseus methods' lists them",
            )
        if name == "compare":
            sub.add_argument(
                "--methods",
                nargs="+",
                default=compare_defaults(),
                help=f"methods to run, of: {', '.join(names)} "
                f"(default: {' '.join(compare_defaults())})",
            )
            sub.add_argument(
                "--set",
                action="append",
                type=_set_entry,
                metavar="METHOD.SETTING=VALUE",
                help="a setting of one method, e.g. --set kd.alpha=0.7 (repeatable; wins over "
                "the plain flag, which sets every listed method that has the setting). YAML: "
                "'set: {kd: {alpha: 0.7}}'",
            )
            _add_dataclass(sub, CompareConfig, "comparison")
        _add_dataclass(sub, TrainingConfig, "training" + more, brief=brief)
    _check_method_settings(subs)
    if method in names:  # last: a method setting may not reuse an option
        _add_method_flags(subs["compress"], [method])
    _add_method_flags(subs["compare"], [m for m in compared or compare_defaults() if m in names])
    listing = _add_parser(commands, "methods", "list the compression methods, one line each")
    _add_common(listing)  # --config and --debug, as every command has
    _add_deploy_commands(commands)
    return parser


def _takes_unlabelled(method: str | None) -> bool:
    from .methods import methods

    return method not in methods() or methods()[method].unlabelled is not None


def _unlabelled_settings() -> set[str]:
    from .data.unlabelled import UnlabelledConfig

    return {f.name for f in dataclasses.fields(UnlabelledConfig)}


def _methods_note(names: list[str]) -> str:
    """What compress --help says in place of every method's settings."""
    import textwrap

    text = ("a method's settings: 'theseus compress --method NAME --help', NAME one of "
            f"{', '.join(names)}; 'theseus methods' says what each does")  # fmt: skip
    return textwrap.fill(text, 78, break_on_hyphens=False) + "\n"


def _check_method_settings(subs: dict) -> None:
    """Refuse a method whose setting has the name of an option of compress or compare: its
    flag would be that option's."""
    from .methods import MethodError, methods

    for command in ("compress", "compare"):
        taken = {action.dest for action in subs[command]._actions}  # the command's own flags
        for name, spec in methods().items():
            clash = sorted(_field_names(spec.config) & taken)
            if clash:
                raise MethodError(
                    f"method '{name}' has a setting '{clash[0]}', which is already an option "
                    f"of 'theseus {command}': rename that setting in the method's config"
                )


def _add_method_flags(sub: argparse.ArgumentParser, names: list[str]) -> None:
    """One group per method with the flags of its config; a setting several of the methods
    share is one flag (each method keeps its own default), shown under the first."""
    from .methods import get_method

    added: dict[str, typing.Any] = {}
    for name in names:
        spec = get_method(name)
        fields = dataclasses.fields(spec.config)
        shared = [_flag(f.name) + _own_default(f, added[f.name]) for f in fields
                  if f.name in added]  # fmt: skip
        description = f"also takes {', '.join(shared)} (above)" if shared else None
        _add_dataclass(sub, spec.config, f"{name}: {spec.summary}", set(added), description)
        added.update({f.name: f for f in fields if f.name not in added})


def _own_default(field: dataclasses.Field, first: dataclasses.Field) -> str:
    """', default X' where a method's default for a shared flag is not the first one's."""
    from .methods.registry import setting_default

    mine = setting_default(field)
    return "" if mine == setting_default(first) else f" (its default: {mine})"


def method_owners(setting: str) -> list[str]:
    """The registered methods that have the setting `setting`."""
    from .methods import methods

    return [name for name, spec in methods().items() if setting in _field_names(spec.config)]


def _add_parser(commands, name: str, text: str, **extra) -> argparse.ArgumentParser:
    extra.setdefault("epilog", EXAMPLES)
    return commands.add_parser(
        name,
        help=text,
        description=text,
        formatter_class=_Formatter,
        exit_on_error=False,
        **extra,
    )


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help with room for a flag and its placeholder before the help text."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=26)


COMPRESS_USAGE = "theseus compress --model MODEL --output OUTPUT [--method NAME] [options]"
COMPRESS_EXAMPLES = """\
example:
  theseus compress --model runs/teacher --task sst2 --data-dir GLUE/SST-2 \\
                   --method kd --successor-layers 6 --output runs/successor
"""


def _add_common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--config", help="YAML file of options (flags win over it)")
    sub.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run a model's own Python code (off by default)",
    )
    sub.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _add_deploy_commands(commands) -> None:
    from .data.config import DataConfig
    from .deploy.config import BenchmarkConfig, ExportConfig
    from .plan.config import PlanConfig

    def add(name: str, text: str, models: str):
        sub = _add_parser(commands, name, text)
        sub.add_argument("model", nargs="+" if models == "+" else None, help="model folder(s)")
        _add_common(sub)
        sub.add_argument("--max-length", type=int, default=128, help="maximum tokens per text")
        return sub

    export = add("export", "export a model to ONNX Runtime or OpenVINO (fp32, bf16, int8), "
                 "verified against PyTorch; a sentence-transformers folder is copied with "
                 "onnx/ and openvino/ files its backends load", "1")  # fmt: skip
    export.add_argument("--onnx", action="store_true", help="ONNX format (the only one)")
    export.add_argument("--output", required=True, help="folder to write the export to")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    _add_dataclass(export, ExportConfig, "export")
    _add_dataclass(export, DataConfig, "dev data to score fp32 and int8 on (optional)")

    bench = add("benchmark", "time models in PyTorch, ONNX Runtime and OpenVINO, side by side",
                "+")  # fmt: skip
    bench.add_argument("--output", default="benchmark.json", help="JSON file of every number")
    _add_dataclass(bench, BenchmarkConfig, "benchmark")

    text = ("time every successor shape (depth x width) on your runtimes against the "
            "predecessor: which shape meets a speed-up")  # fmt: skip
    plan = _add_parser(commands, "plan", text)
    plan.add_argument("model", help="the predecessor: a model folder or Hub id")
    _add_common(plan)
    plan.add_argument("--output", required=True, help="folder to write plan.md, .csv, .json, .png")
    plan.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    plan.add_argument("--refresh", action="store_true", help="measure again, not from the cache")
    _add_dataclass(plan, PlanConfig, "plan")

    predict = add("predict", "answer texts with a PyTorch folder or an ONNX export", "1")
    predict.add_argument("--text", nargs="+", help="text(s) to classify")
    predict.add_argument("--text-pair", nargs="+", help="second text of each pair (RTE, STS-B)")
    predict.add_argument("--file", help="a file of texts, one per line (tab between a pair)")
    predict.add_argument("--int8", action="store_true", help="use the export's onnx-int8 model")
    predict.add_argument(
        "--variant",
        help="which variant of an export to run (onnx-fp32, onnx-int8, onnx-fused, "
        "onnx-fused-int8, openvino-fp32, openvino-bf16, openvino-int8); default: the one "
        "'export --backend auto' chose, else onnx-fp32",
    )
    predict.add_argument("--output", help="also write the answers to this JSON file")
    _add_method_commands(commands)


def _add_method_commands(commands) -> None:
    """The sub-commands methods bring (see `MethodCommand`), after the built-in ones."""
    from .methods import MethodError
    from .methods.registry import method_commands

    for name, command in method_commands().items():
        if name in commands.choices:
            raise MethodError(f"a method's command '{name}' is a command of theseus already")
        sub = _add_parser(commands, name, command.help)
        command.arguments(sub)
        _add_common(sub)


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse flags over the YAML defaults of --config (flags win). The method(s) are read
    first (from the flags, else the YAML file), so that compress takes the settings of its
    method alone and compare those of its methods."""
    from .methods import default_method, get_method

    command, method, compared, config = _probe(argv)
    values = {}
    if config and command in ("compress", "compare"):
        from .runs import load_yaml_config  # runs.py loads torch

        values = load_yaml_config(config)
        method = method or values.get("method")
        compared = compared or values.get("methods")
    if isinstance(compared, str):
        compared = compared.split()
    if command == "compress" and method is None and not {"-h", "--help"} & set(argv):
        method = _selected(argv) or default_method()
    selected = _selected(argv) if command == "compare" and compared is None else None
    compared = [selected] if selected else compared
    parser = build_parser(method if isinstance(method, str) else None,
                          compared if isinstance(compared, list) else None)  # fmt: skip
    args = _parse_args(parser, argv)
    if config:
        values = values or _load_yaml(config)
        sub = parser._subparsers._group_actions[0].choices[args.command]
        known = {action.dest: action for action in sub._actions}
        # Another method's setting: refused by name when the configs are made (`run`).
        others = {k: v for k, v in values.items() if k not in known and method_owners(k)}
        unknown = sorted(set(values) - set(known) - set(others))
        if unknown:
            from .runs import RunError

            raise RunError(f"unknown option(s) in {config}: {', '.join(unknown)}")
        values = {key: _yaml_value(known[key], value, config) for key, value in values.items()
                  if key in known}  # fmt: skip
        sub.set_defaults(**values)
        args = _parse_args(parser, argv)
        for key, value in others.items():
            owner = get_method(method_owners(key)[0])
            setattr(args, key, _yaml_value(_setting_action(owner, key), value, config))
    if args.command == "compress" and args.method is None:
        args.method = method
    if selected:  # a flag that selects a method (`MethodSpec.selected_by`): that one alone
        args.methods = compared
    return args


def _selected(argv: list[str]) -> str | None:
    """The method a flag selects when --method is left out (`MethodSpec.selected_by`)."""
    from .methods.registry import selected_method

    flags = {arg.partition("=")[0][2:].replace("-", "_") for arg in argv if arg.startswith("--")}
    return selected_method(flags)


def _probe(argv: list[str]) -> tuple:
    """The command, and its --method, --methods and --config, read before the parser is
    built (no --help, no required flags: those are the full parser's)."""
    probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    probe.add_argument("command", nargs="?")
    probe.add_argument("--method")
    probe.add_argument("--methods", nargs="+")
    probe.add_argument("--config")
    try:
        known, _ = probe.parse_known_args(argv)
    except argparse.ArgumentError:  # e.g. --method without a name: the full parser says so
        return None, None, None, None
    return known.command, known.method, known.methods, known.config


def _load_yaml(path: str) -> dict:
    from .runs import load_yaml_config  # runs.py loads torch

    return load_yaml_config(path)


def _not_a_setting(name: str, args: argparse.Namespace) -> typing.NoReturn:
    from .methods import MethodError

    chosen = [args.method] if args.command == "compress" else args.methods
    raise MethodError(
        f"{_flag(name)} is not a setting of {', '.join(chosen)} (it belongs to "
        f"{', '.join(method_owners(name))}): drop it or choose a method that takes it"
    )


def _embedding_settings() -> set[str]:
    from .embedding.config import EmbeddingConfig

    return {f.name for f in dataclasses.fields(EmbeddingConfig)}


def _not_for_embedding(method: str) -> typing.NoReturn:
    """compress --method NAME has no embedding flags where NAME does not train embedders."""
    from .embedding.config import not_an_embedding_method
    from .methods import MethodError, embedding_methods

    raise MethodError(not_an_embedding_method(method, embedding_methods()))


def _not_for_unlabelled(method: str) -> typing.NoReturn:
    """compress --method NAME has no unlabelled-text flags where NAME has no teacher term."""
    from .data.unlabelled import not_a_teacher_method
    from .methods import MethodError
    from .methods.registry import unlabelled_methods

    raise MethodError(not_a_teacher_method(method, unlabelled_methods()))


def _parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """argparse, with a flag's bad value as a RunError: one line naming the flag, and a
    setting of a method other than the chosen one(s) refused by name."""
    try:
        args, extras = parser.parse_known_args(argv)
        for extra in extras:
            name = extra.split("=", 1)[0].removeprefix("--").replace("-", "_")
            if extra.startswith("--") and args.command in ("compress", "compare"):
                name = name.removeprefix("no_") if not method_owners(name) else name
                if args.command == "compress" and name in _embedding_settings():
                    _not_for_embedding(args.method)
                if args.command == "compress" and name in _unlabelled_settings():
                    _not_for_unlabelled(args.method)
                if method_owners(name):
                    if args.command == "compress" and args.method is None:
                        from .methods import default_method

                        args.method = default_method()
                    _not_a_setting(name, args)
        return parser.parse_args(argv) if extras else args  # argparse's own message
    except argparse.ArgumentError as error:
        from .runs import RunError  # here: runs.py loads torch, which --help must not

        name, message = error.argument_name, error.message
        if name and message.startswith("must "):  # JsonLists: "--grouping must be ..."
            message = f"{name} {message}"
        elif name:
            message = f"{name}: {message}"
        raise RunError(message) from None


def _yaml_value(action: argparse.Action, value, source: str):
    """A --config value as the flag would give it, or a RunError naming the option and the
    shape it takes. YAML "methods: theseus kd" (or a lone value) means a list, as the flag
    does; numbers must be numbers, switches true or false, JSON flags lists of lists."""
    from .runs import RunError

    name = action.dest
    if value is None:  # YAML null: not given
        return None
    if name == "set":
        return _yaml_set(value, source)
    if isinstance(action.type, JsonLists):
        try:
            return action.type(value) if isinstance(value, str) else action.type.check(value, "")
        except argparse.ArgumentTypeError:
            shape = action.type.shape.replace("a JSON list", "a list")
            raise RunError(f"{name} in {source} must be {shape}, not {value!r}") from None
    if action.nargs == 0:  # --x / --no-x and store_true switches
        if not isinstance(value, bool):
            raise RunError(f"{name} in {source} must be true or false, not {value!r}")
        return value
    if action.nargs in ("+", "*"):
        items = value.split() if isinstance(value, str) else value
        items = items if isinstance(items, list) else [items]
        return [_yaml_item(action.type, item, f"a list of {_noun(action.type)}", name, source)
                for item in items]  # fmt: skip
    return _yaml_item(action.type, value, _noun(action.type, one=True), name, source)


def _noun(kind, one: bool = False) -> str:
    nouns = {int: ("integers", "an integer"), float: ("numbers", "a number")}
    return nouns.get(kind, ("words", "a word or path"))[one]


def _yaml_item(kind, value, shape: str, name: str, source: str):
    """One YAML value converted as the flag converts its text (int, float or str)."""
    from .runs import RunError

    convert = kind if kind in (int, float) else str
    # YAML reads 2.5 and yes as a number and a boolean: keep only what the flag would take.
    allowed = (int, str) if convert is int else (int, float, str)
    if isinstance(value, allowed) and not isinstance(value, bool):
        try:
            return convert(value)
        except ValueError:
            pass
    raise RunError(f"{name} in {source} must be {shape}, not {value!r}")


def _config(cls, args: argparse.Namespace):
    # A group of flags may be absent (compress --method NAME leaves out what NAME lacks).
    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if v is not None})


def run(args: argparse.Namespace):
    trust = args.trust_remote_code
    if args.command in ("export", "benchmark", "predict"):
        return _run_deploy(args)
    if args.command == "plan":
        from .plan import PlanConfig, run_plan

        config = _config(PlanConfig, args)
        return run_plan(args.model, config, args.output, args.overwrite, args.refresh, trust)
    command = _method_command(args.command)
    if command is not None:
        return command.run(args)
    if args.command == "methods":
        return _list_methods()
    from .commands import DataConfig, compress, evaluate_model, finetune
    from .compare import CompareConfig, compare
    from .data.unlabelled import UnlabelledConfig
    from .embedding.config import EmbeddingConfig
    from .training import TrainingConfig

    data = _config(DataConfig, args)
    training = _config(TrainingConfig, args)
    if args.command == "finetune":
        return finetune(
            args.model, data, training, args.output, args.overwrite, trust, args.push_to_hub
        )
    if args.command == "evaluate":
        return evaluate_model(args.model, data, training, trust)
    if args.command == "compress":
        (config,) = _method_configs([args.method], args).values()
        return compress(
            args.model,
            data,
            training,
            config,
            args.output,
            args.overwrite,
            trust,
            args.method,
            args.push_to_hub,
            _config(EmbeddingConfig, args),
            _config(UnlabelledConfig, args),
        )
    configs = _method_configs(args.methods, args)
    settings = _config(CompareConfig, args)
    embedding = _config(EmbeddingConfig, args)
    return compare(
        args.model,
        data,
        training,
        configs,
        settings,
        args.output,
        args.overwrite,
        trust,
        embedding,
        _config(UnlabelledConfig, args),
    )


def _method_configs(names: list[str], args: argparse.Namespace) -> dict:
    """Each named method's config: a plain flag sets every method that has the setting,
    `--set METHOD.SETTING=VALUE` one method (and wins)."""
    from .methods import get_method, methods

    specs = {name: get_method(name) for name in names}
    own = set().union(*(_field_names(spec.config) for spec in specs.values()))
    settings = set().union(*(_field_names(spec.config) for spec in methods().values()))
    given = {k: getattr(args, k) for k in settings if getattr(args, k, None) is not None}
    stray = sorted(set(given) - own)
    if stray:  # a --config file's setting of another method (flags are refused in `parse`)
        _not_a_setting(stray[0], args)
    values = {name: {k: v for k, v in given.items() if k in _field_names(spec.config)}
              for name, spec in specs.items()}  # fmt: skip
    for method, setting, value, source in getattr(args, "set", None) or []:
        values[method][setting] = _set_value(specs, method, setting, value, source)
    return {name: spec.make_config(values[name]) for name, spec in specs.items()}


def _set_entry(text: str) -> tuple:
    """One --set: METHOD.SETTING=VALUE, kept as text until the method's type converts it."""
    key, equals, value = text.partition("=")
    method, dot, setting = key.rpartition(".")
    if not (equals and dot and method and setting):
        raise argparse.ArgumentTypeError(
            f"takes METHOD.SETTING=VALUE, e.g. kd.alpha=0.7, not {text!r}"
        )
    return method, setting.replace("-", "_"), value, f"--set {text}"


def _yaml_set(value, source: str) -> list[tuple]:
    """YAML 'set: {kd: {alpha: 0.7}}': per-method settings of compare."""
    from .runs import RunError

    shape = "a mapping of method to its settings, e.g. {kd: {alpha: 0.7}}"
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise RunError(f"set in {source} must be {shape}, not {value!r}")
    return [
        (str(method), str(setting).replace("-", "_"), item, f"set.{method}.{setting} in {source}")
        for method, settings in value.items()
        for setting, item in settings.items()
    ]


def _set_value(specs: dict, method: str, setting: str, value, source: str):
    """A --set value converted as the method's flag converts it (a YAML value as in a
    --config file)."""
    from .methods import MethodError

    if method not in specs:
        raise MethodError(
            f"{source}: '{method}' is not one of the compared methods ({', '.join(specs)}): "
            "add it to --methods or fix the name"
        )
    action = _setting_action(specs[method], setting)
    if action is None:
        raise MethodError(
            f"{source}: method '{method}' has no setting {setting}: see "
            f"'theseus compress --method {method} --help'"
        )
    if source.startswith("--set") and (action.nargs == 0 or action.type in (int, float)):
        import yaml  # numbers and switches as YAML reads them: 0.7, true

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            pass  # refused below, as a value of the wrong shape
    return _yaml_value(action, value, source)


def _setting_action(spec, setting: str) -> argparse.Action | None:
    """The flag a method's setting has (None if the method has no such setting)."""
    scratch = argparse.ArgumentParser(add_help=False)
    _add_dataclass(scratch, spec.config, spec.name)
    return next((a for a in scratch._actions if a.dest == setting), None)


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _list_methods() -> list[dict]:
    from .methods import methods

    return [
        {"method": name, "summary": spec.summary, "paper": spec.paper}
        for name, spec in methods().items()
    ]


def _run_deploy(args: argparse.Namespace):
    from .commands import DataConfig
    from .deploy import (
        BenchmarkConfig,
        ExportConfig,
        benchmark,
        export_onnx,
        predict_texts,
        read_texts,
    )

    trust = args.trust_remote_code
    if args.command == "export":
        data = _config(DataConfig, args)
        from .embedding.config import is_sentence_transformers

        if is_sentence_transformers(args.model):  # exported where its backends load it
            from .embedding.export import export_embedding

            config = _config(ExportConfig, args)
            return export_embedding(args.model, args.output, config, data, args.max_length,
                                    args.overwrite, trust)  # fmt: skip
        return export_onnx(
            args.model,
            args.output,
            _config(ExportConfig, args),
            data,
            args.max_length,
            args.overwrite,
            trust,
        )
    if args.command == "benchmark":
        return benchmark(args.model, _config(BenchmarkConfig, args), args.output, trust)
    texts, pairs = read_texts(args.text, args.text_pair, args.file)
    return predict_texts(args.model, texts, pairs, args.int8, args.max_length, 32, trust,
                         args.variant)  # fmt: skip


def report(command: str, metrics) -> str:
    """A short human summary of a finished run."""
    if command in ("export", "benchmark", "predict"):
        return _report_deploy(command, metrics)
    if command == "plan":
        from .plan import summary

        return summary(metrics)
    method_command = _method_command(command)
    if method_command is not None:
        return method_command.report(metrics)
    if command == "methods":
        width = max(len(row["method"]) for row in metrics)
        return "\n".join(
            f"{row['method']:<{width}}  {row['summary']} ({row['paper']})" for row in metrics
        )
    if command == "compare":
        from .compare import results_markdown

        return results_markdown(metrics, metrics) + f"(written to {metrics['output']})"
    if command == "evaluate":
        return "\n".join(
            f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in values.items())
            for split, values in metrics.items()
        )
    split = next(iter(metrics["dev"]))
    score = metrics["dev"][split]["score"]
    lines = [
        f"{metrics['method']} on {metrics['task']}: best {split} score {score:.4f} "
        f"at step {metrics['best_step']} of {metrics['steps']} ({metrics['train_seconds']:.0f} s)",
    ]
    if "speedup" in metrics:
        before = metrics["predecessor_dev"][split]["score"]
        lines += [
            f"  predecessor: {metrics['predecessor_layers']} layers, "
            f"{metrics['predecessor_parameters'] / 1e6:.1f}M parameters, dev score {before:.4f}",
            f"  successor:   {metrics['layers']} layers, {metrics['parameters'] / 1e6:.1f}M "
            f"parameters{_nonzero(metrics)}, dev score {score:.4f} "
            f"({metrics['retention_percent']}% retained)",
            f"  speed-up: {metrics['speedup']:.2f}x ({metrics['speed_setting']})",
        ]
    if "test" in metrics:
        lines.append(f"  test score {metrics['test']['score']:.4f}")
    lines += _method_lines(metrics)
    if metrics.get("constant_at_best"):
        lines.append(
            f"  warning: the saved model (step {metrics['best_step']}) gives one answer for "
            "every dev example: it is a constant, not a classifier of its input"
        )
    return "\n".join(lines)


def _method_lines(metrics: dict) -> list[str]:
    """The method's own results, as its registration words them."""
    from .methods import methods

    spec = methods().get(metrics.get("method"))
    return spec.summary_lines(metrics) if spec is not None and spec.summary_lines else []


def _method_command(name: str):
    """The method-registered command `name` (None for the built-in ones)."""
    from .methods.registry import method_commands

    return method_commands().get(name)


def _report_deploy(command: str, result) -> str:
    if command == "predict":
        lines = []
        for answer in result:
            value = answer.get("value", answer.get("score"))
            label = answer.get("label", "value")
            text = answer["text"] + (f" | {answer['text_pair']}" if "text_pair" in answer else "")
            lines.append(f"{label}\t{value:.4f}\t{text}")
        return "\n".join(lines)
    if command == "benchmark":
        from .deploy import format_table

        return format_table(result)
    if result.get("embedding"):
        from .embedding.export import summary

        return summary(result)
    lines = [f"exported {result['model']} ({', '.join(result['inputs'])})"]
    for variant, check in result["variants"].items():
        line = f"  {variant}: max |logit - PyTorch| {check['max_abs_logit_diff']:.2e}"
        line += f" on {check['examples_compared']} examples"
        if "label_agreement" in check:
            line += f", {100 * check['label_agreement']:.1f}% same label"
        if "dev" in check:
            line += f"; dev score {check['dev']['score']:.4f}"
        lines.append(line)
    if "pytorch_fp32" in result:
        lines.append(f"  pytorch fp32: dev score {result['pytorch_fp32']['score']:.4f}")
    if "chosen" in result:
        lines.append(f"  chosen: {result['chosen']['variant']} ({result['chosen']['why']})")
    lines.append(
        "  files: " + ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in result["files"].items())
    )
    return "\n".join(lines)


def _nonzero(metrics: dict) -> str:
    from .speed import is_pruned

    nonzero = metrics.get("nonzero_parameters", metrics["parameters"])
    return f" ({nonzero / 1e6:.1f}M non-zero)" if is_pruned(metrics["parameters"], nonzero) else ""


def _main_process() -> bool:
    if "accelerate" not in sys.modules:  # nothing started processes (theseus methods): one
        return True
    from accelerate import PartialState

    return PartialState().is_main_process


def main(argv: list[str] | None = None) -> int:
    previous = _sigterm_as_interrupt()
    try:
        return _main(argv)
    finally:
        if previous is not None:  # as it was: main() also runs inside other programs
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    from .card import set_command

    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        set_command(argv)
        args = parse(argv)
        saved = _json_output(args)  # a JSON --output that cannot be written is refused now
        if not debug and args.command not in LIGHT_COMMANDS:
            _quiet_transformers()
        metrics = run(args)
        if saved is not None and _main_process():
            saved.write({"predictions": metrics} if args.command == "predict" else metrics)
    except KeyboardInterrupt:
        print("theseus: interrupted; no output folder was completed", file=sys.stderr)
        return 130
    except _training_interrupted() as error:
        if _main_process():  # every process stopped at the same step; one says so
            print(f"theseus: {error}", file=sys.stderr)
        return 130
    except OSError as error:  # disk full, permissions: not bad input, but still one line
        if debug:
            raise
        print(f"theseus: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if debug or not _is_user_error(error):
            raise
        print(f"theseus: error: {error}", file=sys.stderr)
        return 2
    if not _main_process():  # under several processes, one report
        return 0
    print(report(args.command, metrics))
    return 0


def _json_output(args: argparse.Namespace):
    """The JSON file evaluate or predict writes when done (see `runs.JsonOutput`); predict's
    list of answers is written as {"written_by": ..., "predictions": [...]}."""
    if args.command not in ("evaluate", "predict") or not args.output:
        return None
    from .runs import JsonOutput, input_paths

    return JsonOutput(args.output, input_paths(args.model, args, file=getattr(args, "file", None)))


def _sigterm_as_interrupt():
    """Make SIGTERM (`kill`, a scheduler's stop) raise KeyboardInterrupt as Ctrl-C does, so
    the same clean-up runs: partial folders removed, one line, exit 130. (The training loop
    catches both itself, to save a checkpoint first.) Returns the handler it replaced, or
    None where signals cannot be set (not the main thread)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None


def _training_interrupted() -> type[BaseException] | tuple:
    """TrainingInterrupted, if the training loop was loaded (else nothing can have raised
    it): importing it here would load torch on every exit, --help's included."""
    loop = sys.modules.get("bert_theseus.training.loop")
    return loop.TrainingInterrupted if loop is not None else ()


def _quiet_transformers() -> None:
    # Weight-loading bars and load reports would bury the one-line errors and our summaries.
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _is_user_error(error: Exception) -> bool:
    from .arch import ArchitectureError
    from .commands import ModelError
    from .data import DataError, TaskError
    from .deploy import DeployError
    from .embedding import EmbeddingError
    from .methods import MethodError
    from .plan import PlanError
    from .runs import RunError
    from .training import TrainingConfigError, TrainingError

    user = (
        PlanError,
        ArchitectureError,
        ModelError,
        DataError,
        TaskError,
        RunError,
        MethodError,
        DeployError,
        EmbeddingError,
        TrainingError,
        TrainingConfigError,
    )
    return isinstance(error, user)


if __name__ == "__main__":
    sys.exit(main())
