"""A progress bar with ETA, loss, replacing rate and learning rate (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    def __init__(self, total: int, enabled: bool = True):
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=total, status="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, step: int, **values: float) -> None:
        names = {"replacing_rate": "p", "successor_modules": "scc", "learning_rate": "lr"}
        status = " ".join(f"{names.get(key, key)}={value:.3g}" for key, value in values.items())
        self.progress.update(self.task, completed=step, status=status)

    def note(self, message: str) -> None:
        if self.enabled:
            self.progress.console.print(message)
