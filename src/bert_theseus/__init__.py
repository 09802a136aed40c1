"""bert-theseus: make fine-tuned Hugging Face encoders small and fast."""

from .theseus import TheseusConfig, apply_theseus, merge_theseus, theseus_layers

__version__ = "0.1.0"
__all__ = ["TheseusConfig", "apply_theseus", "merge_theseus", "theseus_layers"]
