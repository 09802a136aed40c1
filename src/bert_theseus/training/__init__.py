"""The training loop shared by every method (loaded on first use: it imports torch)."""

from ..lazy import lazy_exports
from .config import TrainingConfig, TrainingConfigError

__all__ = [
    "Method",
    "TrainResult",
    "TrainingConfig",
    "TrainingConfigError",
    "TrainingError",
    "TrainingInterrupted",
    "evaluate",
    "make_accelerator",
    "predict",
    "train",
]

__getattr__ = lazy_exports(
    __name__,
    {
        name: ".loop"
        for name in (
            "Method",
            "TrainResult",
            "TrainingError",
            "TrainingInterrupted",
            "evaluate",
            "make_accelerator",
            "predict",
            "train",
        )  # fmt: skip
    },
)
