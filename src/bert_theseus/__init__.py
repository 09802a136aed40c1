"""bert-theseus: make fine-tuned Hugging Face encoders small and fast.

Importing it is cheap: the names below load their modules (torch, transformers) on first
use, and the compact model family registers with transformers' Auto classes as soon as
transformers is imported, so `pipeline(..., model=folder)` loads a compact (or RefBERT) model.
"""

from .lazy import lazy_exports, when_imported
from .methods import get_method, methods, register_method  # light: the registry and configs
from .version import __version__ as __version__

__all__ = [
    "Distiller",
    "KDConfig",
    "KDMethod",
    "PKDConfig",
    "SoftTargets",
    "TheseusConfig",
    "TheseusKDConfig",
    "TheseusKDMethod",
    "TruncatedConfig",
    "TruncatedMethod",
    "apply_theseus",
    "get_method",
    "merge_theseus",
    "methods",
    "patient_loss",
    "pkd_layer_map",
    "register_method",
    "soft_target_loss",
    "theseus_layers",
    "truncate",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "compact": ".compact",
        "Distiller": ".teacher",
        "SoftTargets": ".methods.distillation",
        "patient_loss": ".losses",
        "soft_target_loss": ".losses",
        "KDConfig": ".methods.kd",
        "KDMethod": ".methods.kd",
        "PKDConfig": ".methods.pkd",
        "pkd_layer_map": ".methods.pkd",
        "TheseusConfig": ".methods.theseus",
        "apply_theseus": ".methods.theseus",
        "merge_theseus": ".methods.theseus",
        "theseus_layers": ".methods.theseus",
        "TheseusKDConfig": ".methods.theseus_kd",
        "TheseusKDMethod": ".methods.theseus_kd",
        "TruncatedConfig": ".methods.truncated",
        "TruncatedMethod": ".methods.truncated",
        "truncate": ".methods.truncated",
    },
)


def register_model_families() -> None:
    """Our model families join transformers' Auto classes (no remote code needed)."""
    from . import compact  # noqa: F401  (its import registers the family)
    from .methods.refbert.model import register

    register()


when_imported("transformers", register_model_families)
