"""The paper's baselines at the successor's size: truncated fine-tuning, vanilla KD,
BERT-PKD (Sun et al., 2019), and KD added to module replacing."""

from .config import DistillConfig, DistillConfigError
from .losses import patient_loss, soft_target_loss
from .method import Distiller, KDMethod, TheseusKDMethod, TruncatedMethod
from .student import pkd_layer_map, truncate

__all__ = [
    "DistillConfig",
    "DistillConfigError",
    "Distiller",
    "KDMethod",
    "TheseusKDMethod",
    "TruncatedMethod",
    "patient_loss",
    "pkd_layer_map",
    "soft_target_loss",
    "truncate",
]
