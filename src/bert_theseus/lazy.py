"""Importing only what a command needs: `theseus --help` and `theseus methods` read the
config dataclasses and the method registry, and must not pay for torch, transformers or
scikit-learn (seconds each). Packages name their heavy exports here and import them on
first use; model families register with transformers once transformers is imported.

>>> __getattr__ = lazy_exports(__name__, {"TheseusMethod": ".method"})  # in a package
>>> when_imported("transformers", register)  # now if loaded already, else right after
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` that imports each name of `table` from its submodule (relative
    to `package`) the first time it is asked for; a name mapped to ".name" is that submodule.
    """

    sys.modules[package].__class__ = _Package
    sys.modules[package]._lazy_names = table

    def __getattr__(name: str):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = importlib.import_module(module, package)
        if module != "." + name:
            value = getattr(value, name)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    return __getattr__


class _Package(types.ModuleType):
    """A package with lazily exported names. Importing its submodule `benchmark` makes the
    import system set the package's `benchmark` to that module; where the package exports a
    `benchmark` of that submodule (deploy's function), the name keeps meaning the function,
    as it did when the package imported it eagerly."""

    def __setattr__(self, name: str, value) -> None:
        lazy = self.__dict__.get("_lazy_names", {})
        if isinstance(value, types.ModuleType) and lazy.get(name) == f".{name}":
            # (A name that is the submodule itself, bert_theseus.compact, stays the module.)
            value = getattr(value, name, value)
        super().__setattr__(name, value)


_waiting: dict[str, list[Callable[[], None]]] = {}
PACKAGE = __name__.rpartition(".")[0]


def when_imported(module: str, callback: Callable[[], None]) -> None:
    """Call `callback` once `module` is imported: now if it is already, else right after
    its import (so `import bert_theseus` registers the model families with transformers
    without importing it, and `from transformers import pipeline` finds them).

    A callback that imports this package's modules waits until none of them is half
    imported: transformers is often first imported by one of them (`arch.py`), and the
    callback must not see that module half-defined.
    """
    if module in sys.modules and not _busy():
        callback()
        return
    if not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
    _waiting.setdefault(module, []).append(callback)


def _busy(done: str = "") -> bool:
    """Whether a module of this package (other than `done`) is being imported now."""
    prefix = PACKAGE + "."
    return any(
        getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
        if name.startswith(prefix) and name != done
    )


def _run_ready(done: str) -> None:
    """The callbacks whose module is imported, once no module of this package is half
    imported (`done` has just finished: its import still counts as running)."""
    if _busy(done):
        return
    for module in [m for m in _waiting if m in sys.modules]:
        for callback in _waiting.pop(module, []):
            callback()


class _AfterImport:  # a meta path finder (importlib.abc's base classes cost 40 ms to import)
    """Finds a waited-for module, or one of this package's, with the finders after it, and
    wraps its loader to run the callbacks that are ready once it is executed."""

    def find_spec(self, fullname, path, target=None):
        if not _waiting or not (fullname in _waiting or fullname.startswith(PACKAGE + ".")):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenRun(spec.loader)
                return spec
        return None


class _ThenRun:
    """A module's own loader, then the callbacks that became ready."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        _run_ready(module.__spec__.name)

    def __getattr__(self, name: str):  # resource readers and the like: the real loader's
        if name == "loader":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)
