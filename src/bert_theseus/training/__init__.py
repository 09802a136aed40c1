"""The training loop shared by every method."""

from .config import TrainingConfig, TrainingConfigError
from .loop import (
    Method,
    TrainingError,
    TrainingInterrupted,
    TrainResult,
    evaluate,
    make_accelerator,
    predict,
    train,
)

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
