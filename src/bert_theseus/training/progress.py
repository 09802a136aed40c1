"""Progress with ETA, loss, replacing rate and learning rate.

A live bar on a terminal (rich); plain lines about every 5% of the run elsewhere (CI logs,
files), where a live display would print nothing until the end.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

SHORT = {"replacing_rate": "p", "successor_modules": "scc", "learning_rate": "lr"}


class TrainingProgress:
    def __init__(self, total: int, enabled: bool = True):
        self.enabled = enabled
        self.total = total
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.every = max(1, total // 20)
        self.started = time.perf_counter()
        self.first: int | None = None  # the step the run (re)started from
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not self.live,
        )
        self.task = self.progress.add_task("train", total=total, status="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, step: int, **values: float) -> None:
        # Per-view values ("loss@w0.5-d1") go to the log only: a line cannot hold them all.
        status = " ".join(
            f"{SHORT.get(key, key)}={value:.3g}" for key, value in values.items() if "@" not in key
        )
        if self.first is None:
            self.first, self.started = step, time.perf_counter()
        if self.live:
            self.progress.update(self.task, completed=step, status=status)
        elif self.enabled and step > self.first and (step % self.every == 0 or step == self.total):
            elapsed = time.perf_counter() - self.started
            eta = elapsed / (step - self.first) * (self.total - step)
            self.console.print(
                f"train {step}/{self.total} elapsed {elapsed:.0f}s eta {eta:.0f}s {status}",
                highlight=False,
            )

    def note(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, highlight=False)

    def warn(self, message: str) -> None:
        """One line that must be seen, also where progress lines are off."""
        if self.enabled:
            self.console.print(message, highlight=False, style="yellow", soft_wrap=True)
