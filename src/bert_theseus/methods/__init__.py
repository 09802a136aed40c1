"""Every compression method: one folder each, registered when this package is imported.

The import order below is the order of `theseus methods`, of `compare`'s default methods
and of the `--help` groups; `compress` runs the first without --method.
"""

from . import theseus, theseus_kd, truncated, kd, pkd, dynabert, ladabert, refbert, target  # noqa: F401, I001  (registration order)
from .depth import DepthConfig
from .registry import (
    MethodConfigError,
    MethodContext,
    MethodError,
    MethodSpec,
    compare_defaults,
    default_method,
    embedding_methods,
    get_method,
    methods,
    register_method,
)

__all__ = [
    "DepthConfig",
    "MethodConfigError",
    "MethodContext",
    "MethodError",
    "MethodSpec",
    "compare_defaults",
    "default_method",
    "embedding_methods",
    "get_method",
    "methods",
    "register_method",
]
