"""The settings of `theseus compare` besides the methods' (light to import, so the CLI
builds its parser without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CompareConfig:
    """Which seeds to run and how to time them (the methods are the configs passed in)."""

    seeds: list[int] = field(
        default_factory=lambda: [42], metadata={"help": "one run per method and seed"}
    )
    speed_batch_size: int = field(default=32, metadata={"help": "batch size of the timing"})
    speed_length: int = field(default=128, metadata={"help": "tokens per example when timing"})
    speed_repeats: int = field(default=10, metadata={"help": "timed rounds (median reported)"})

    def validate(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            from .models import ModelError  # loads torch: only on the error path

            raise ModelError(f"seeds {self.seeds} must be distinct, e.g. --seeds 1 2 3")
