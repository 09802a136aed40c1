"""bert-theseus: make fine-tuned Hugging Face encoders small and fast."""

from . import compact  # noqa: F401  (registers the compact model family with transformers)
from .losses import patient_loss, soft_target_loss
from .methods import get_method, methods, register_method
from .methods.kd import KDConfig, KDMethod
from .methods.pkd import PKDConfig, pkd_layer_map
from .methods.theseus import TheseusConfig, apply_theseus, merge_theseus, theseus_layers
from .methods.theseus_kd import TheseusKDConfig, TheseusKDMethod
from .methods.truncated import TruncatedConfig, TruncatedMethod, truncate
from .teacher import Distiller, SoftTargets

__version__ = "0.1.0"
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
