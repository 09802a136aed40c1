"""The package's imports go one way: no module imports one that (through others) imports
it back, counting imports inside functions, which Python runs later but which tie the
modules together all the same; and no module imports another package's private name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bert_theseus

PACKAGE = Path(bert_theseus.__file__).parent


def module_name(path: Path) -> str:
    parts = ("bert_theseus", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere in it; `from .x import y` counts
    `x.y` where y is a module, else `x`. Imports under `if TYPE_CHECKING:` count too: the
    type checker follows them, and they tie the modules all the same."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                child = f"{source}.{alias.name}"
                found.add(child if child in modules else source)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported(path, modules) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None. A package's own __init__ counts as
    imported by each module in it only where the module names it."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_walker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_walker_sees_imports_inside_functions():
    graph = import_graph()
    assert "bert_theseus.methods.pkd.layers" in graph["bert_theseus.methods.pkd.config"]
    assert "bert_theseus.commands" in graph["bert_theseus.cli"]  # imported inside run()


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_private_name_is_imported_from_another_module():
    private = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names if re.match(r"_[a-z]", a.name)]
                private += [f"{module_name(path)}: {node.module} {n}" for n in names]
    assert private == []


# The layers, lowest first: a module imports only from its own layer or those below it.
LAYERS = [
    ("bert_theseus.arch", "bert_theseus.data"),
    ("bert_theseus.teacher", "bert_theseus.losses"),  # distillation components
    ("bert_theseus.training",),
    ("bert_theseus.methods",),
    ("bert_theseus.run_setup", "bert_theseus.run_folder"),  # run plumbing
    ("bert_theseus.commands", "bert_theseus.compare"),  # jobs
    ("bert_theseus.cli",),
]


def layer(module: str) -> int | None:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def test_imports_go_downwards():
    upward = [
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        for target in targets
        if layer(source) is not None and layer(target) is not None and layer(target) > layer(source)
    ]
    assert upward == []


def test_deployment_imports_no_job():
    jobs = [
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        if source.startswith("bert_theseus.deploy")
        for target in targets
        if layer(target) is not None and layer(target) >= layer("bert_theseus.commands")
    ]
    assert jobs == []
