"""Outputs: a run's folder written aside and renamed into place only when complete, locked
while it is written; JSON files written atomically; and the checks that keep any output
from destroying an input or a file theseus did not write."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

try:
    import fcntl
except ImportError:  # Windows has no flock: outputs go unlocked there
    fcntl = None

from .training.stages import STAGES_FOLDER, saved_progress
from .version import __version__


class RunError(ValueError):
    """The output folder cannot be used as asked."""


class OutputDir:
    """Everything a run writes goes to `.<name>.partial` beside `output`; `commit()` renames it.

    A run that fails leaves no folder that looks finished, and an existing finished
    output (allowed with `overwrite`, and only when theseus wrote it) is only removed once
    the new one is complete. The partial folder also holds the run's checkpoints, so an
    interrupted run can resume; a new run refuses to wipe them unless told to (`overwrite`).
    `output` may not be, contain or lie inside any of `inputs` (see `input_paths`). From
    `open()` to `commit()` or `abort()` the run holds `OutputLock(output)`: a second run on
    the same output is refused when made if the first writes already, else at its `open()`.

    >>> out = OutputDir("runs/successor", overwrite=False)
    >>> model.save_pretrained(out.open()); out.commit()
    """

    def __init__(
        self,
        output: str | Path,
        overwrite: bool = False,
        resume: str | None = None,
        inputs: list[tuple[str, str]] = (),
    ):
        self.output = Path(output)
        self.path = self.partial_path(self.output)
        self.resume = resume
        self.lock = OutputLock(self.output)
        check_not_inputs(self.output, inputs)
        if main_process():  # the others never write the folder, so never lock it
            self.lock.check()
        if self.output.exists() and not self.output.is_dir():
            raise RunError(f"--output {self.output} is a file: choose a folder path")
        if self.output.is_dir() and any(self.output.iterdir()):
            _check_replaceable(self.output, overwrite)
        saved = saved_progress(self.path)
        if resume is None and saved and not overwrite:
            raise RunError(
                f"{self.path} holds an unfinished run ({_describe(saved[-1])}): pass "
                "--resume auto to continue it, or --overwrite to start over"
            )
        if resume == "auto" and not saved:
            raise RunError(f"nothing to resume: no checkpoint in {self.path}; run without --resume")
        if resume not in (None, "auto") and not (Path(resume) / "state.json").is_file():
            raise RunError(f"--resume {resume} is not a checkpoint folder (no state.json)")

    @staticmethod
    def partial_path(output: Path) -> Path:
        """Where a run bound for `output` is written until it is complete."""
        return output.parent / f".{output.name}.partial"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def open(self) -> Path:
        """Lock the output, then create the partial folder (from the main process only)."""
        self.lock.acquire()  # before touching the partial folder another run may be writing
        if self.path.exists() and self.resume is None:
            shutil.rmtree(self.path)  # left by an earlier run that died with no checkpoint
        self.path.mkdir(exist_ok=True)
        return self.path

    def commit(self) -> Path:
        """Rename into place, then drop the checkpoints and the stages' models (the finished
        model replaces them; the stages' logs stay). Renaming first means a kill at any
        point leaves either a resumable partial folder or a complete output."""
        old = self.output.parent / f".{self.output.name}.old"
        if self.output.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.output, old)
        os.replace(self.path, self.output)
        if old.exists():
            shutil.rmtree(old)
        for leftover in [self.output / "checkpoints", *self.output.glob(f"{STAGES_FOLDER}/*/*")]:
            if leftover.is_dir():
                shutil.rmtree(leftover)
        self.lock.release()
        return self.output

    def abort(self) -> None:
        """Remove the partial folder, unless it holds checkpoints a resume can use."""
        if self.path.exists() and not saved_progress(self.path):
            shutil.rmtree(self.path)
        self.lock.release()


def _describe(progress: Path) -> str:
    if not progress.name.startswith("step-"):
        return f"stage {progress.parent.name} finished"
    if progress.parent.parent.parent.name == STAGES_FOLDER:
        return f"checkpoint {progress.parent.parent.name}/{progress.name}"
    return f"checkpoint {progress.name}"


# A folder theseus wrote holds one of these (a finished run, an export, an extracted
# sub-network): only such a folder may be replaced by --overwrite.
MARKERS = {
    "run_config.json": "a run",
    "export.json": "an export",
    "extract.json": "an extract",
    "plan.json": "a plan",
}
WRITTEN_BY = "written_by"  # first key of every JSON --output file: "bert-theseus VERSION"
DATA_FLAGS = ("data_dir", "train_file", "dev_file", "test_file")


def written_by() -> str:
    return f"bert-theseus {__version__}"


def input_paths(model=None, data=None, **more: str | None) -> list[tuple[str, str]]:
    """What a command reads from disk, as (flag, path): the model (one, or a list), the data
    files and folder of `data` (a DataConfig or the parsed flags), and `more` (flag: path)."""
    models = model if isinstance(model, list | tuple) else [model]
    found = [("model", str(m)) for m in models if m]
    found += [(name, str(getattr(data, name))) for name in DATA_FLAGS if getattr(data, name, None)]
    return found + [(name, str(path)) for name, path in more.items() if path]


def check_not_inputs(output: str | Path, inputs: list[tuple[str, str]], flag="--output") -> None:
    """Refuse an output that is, contains or lies inside an input (the model folder, a data
    file or folder), or is or contains the working directory: writing it, or replacing it
    with --overwrite, would destroy what the command reads. Paths compare resolved, so a
    symlink or another spelling of the same folder is caught."""
    target = Path(output).resolve()
    for name, value in inputs:
        try:
            source = Path(value).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):  # a Hub id: nothing on disk to protect
            continue
        if target == source:
            relation = "is"
        elif source.is_relative_to(target):
            relation = "contains"
        elif target.is_relative_to(source):
            relation = "lies inside"
        else:
            continue
        noun = {"model": "model", "file": "text"}.get(name, "data")
        kind = "folder" if source.is_dir() else "file"
        given = "" if name == "model" else f" (--{name.replace('_', '-')})"
        raise RunError(
            f"{flag} {output} {relation} the {noun} {kind} {value}{given}: theseus never "
            f"writes over what it reads; choose another {flag}"
        )
    here = Path.cwd().resolve()
    if here.is_relative_to(target):
        relation = "is" if here == target else "contains"
        raise RunError(
            f"{flag} {output} {relation} the working directory: choose a folder of its own, "
            "e.g. runs/NAME"
        )


def theseus_folder(folder: Path) -> str | None:
    """What theseus wrote `folder` as ("a run", "an export", ...), or None."""
    return next((what for name, what in MARKERS.items() if (folder / name).is_file()), None)


def _check_replaceable(output: Path, overwrite: bool) -> None:
    """A non-empty output folder may be replaced only with --overwrite, and only when
    theseus wrote it: anything else in it may be a user's only copy."""
    what = theseus_folder(output)
    if what is None and overwrite:
        raise RunError(
            f"--overwrite replaces only a folder theseus wrote, and {output} holds none of "
            f"{', '.join(MARKERS)}: choose a new --output"
        )
    if what is None:
        raise RunError(
            f"output folder {output} already exists and is not empty: pass --overwrite to "
            f"replace a folder theseus wrote, but this one holds none of "
            f"{', '.join(MARKERS)}, so choose a new --output"
        )
    if not overwrite:
        raise RunError(
            f"output folder {output} already exists and is not empty: pass --overwrite to "
            f"replace it ({what} theseus wrote), or choose another --output"
        )


def main_process() -> bool:
    """Whether this process writes outputs: the only one, or rank 0 of several. Read from
    the launchers' variables (as accelerate does) so that nothing is initialised here."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value) == 0
    return True


class OutputLock:
    """An OS lock (flock) on `.<name>.lock` beside `output`, held while a run writes it.

    The kernel drops the lock when its process ends, so a crashed run blocks no later one;
    the file, gone after `release()`, may stay behind a killed run and is reused. It holds
    the writer's process id, for the message that refuses a second run.

    >>> lock = OutputLock(Path("runs/successor")); lock.check(); lock.acquire(); lock.release()
    """

    def __init__(self, output: Path):
        self.output = output
        self.path = output.parent / f".{output.name}.lock"
        self._fd: int | None = None
        self._made: list[Path] = []  # folders acquire() created, removed again if empty

    def check(self) -> None:
        """Refuse now, before any work, when another process holds the lock (creates nothing)."""
        if fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:  # no lock file (or no folder yet): no run is writing
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self._same_file(fd):  # else its holder is releasing it (and unlinked it)
                raise self._busy(fd) from None
        finally:
            os.close(fd)  # closing releases a lock taken here

    def acquire(self, tries: int = 5) -> None:
        """Take the lock, creating the output's parent folders as needed. A few tries: another
        run's `check()` holds the lock for an instant, and a releasing run unlinks the file."""
        if self._fd is not None:
            return
        self._make_parents()
        if fcntl is None:
            return
        for attempt in range(tries):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if attempt == tries - 1:
                    error = self._busy(fd)
                    os.close(fd)
                    self._remove_parents()
                    raise error from None
                os.close(fd)
                time.sleep(0.05)
                continue
            if self._same_file(fd):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
                self._fd = fd
                return
            os.close(fd)  # its holder unlinked it on release: lock the new file
        self._remove_parents()
        raise RunError(f"could not lock {self.path}: it keeps being replaced; try again")

    @contextmanager
    def held(self, active: bool = True):
        """Hold the lock for a `with` block (`active=False`: a process that does not write)."""
        if active:
            self.acquire()
        try:
            yield self
        finally:
            self.release()

    def release(self) -> None:
        """Remove the lock file and drop the lock; folders acquire() made go if left empty."""
        if self._fd is not None:
            if self._same_file(self._fd):
                self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
        self._remove_parents()

    def _same_file(self, fd: int) -> bool:
        try:
            on_disk, held = os.stat(self.path), os.fstat(fd)
        except FileNotFoundError:
            return False
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def _busy(self, fd: int) -> RunError:
        """The refusal, naming the holder's process (it writes its id right after locking)."""
        holder: list[str] = []
        for _ in range(3):
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            if holder:
                break
            time.sleep(0.05)
        pid, host = (holder + [""])[:2] if holder else ("unknown", "")
        where = f" on {host}" if host and host != socket.gethostname() else ""
        return RunError(
            f"--output {self.output} is being written by another run (process {pid}{where}, "
            f"lock {self.path}): wait for it to finish, or choose another --output"
        )

    def _make_parents(self) -> None:
        missing = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(exist_ok=True)
            self._made.append(folder)

    def _remove_parents(self) -> None:
        for folder in reversed(self._made):
            try:
                folder.rmdir()  # only an empty one: a finished output lives in it
            except OSError:
                break
        self._made = []


class JsonOutput:
    """A JSON file a command writes when done (evaluate, predict, benchmark --output).

    Checked when made, before the work: not a folder, its folder exists, not an input (see
    `check_not_inputs`), and not a file theseus did not write. Written atomically, with
    `"written_by": "bert-theseus VERSION"` as its first key: the mark of its own files.
    `beside` are files written next to it (benchmark's chart); one may be replaced only
    when the JSON file beside it is theseus's.

    >>> out = JsonOutput("scores.json", input_paths("runs/x"))  # refuses now, if it must
    >>> out.write({"dev": {...}})
    """

    def __init__(
        self,
        path: str | Path,
        inputs: list[tuple[str, str]] = (),
        flag: str = "--output",
        beside: list[Path] = (),
    ):
        self.path, self.flag, self.beside = Path(path), flag, [Path(p) for p in beside]
        check_not_inputs(self.path, inputs, flag)
        if self.path.is_dir():
            raise RunError(f"{flag} {path} is a folder: name a JSON file, e.g. results.json")
        if not self.path.parent.is_dir():
            raise RunError(
                f"{flag} {path}: the folder {self.path.parent} does not exist; create it "
                "first, or name a file in an existing folder"
            )
        self._check_replaceable()

    def write(self, data: dict) -> None:
        self._check_replaceable()  # again: the work took a while
        text = json.dumps({WRITTEN_BY: written_by(), **data}, indent=2, default=str) + "\n"
        write_atomic(self.path, text)

    def _check_replaceable(self) -> None:
        if self.path.exists() and not is_theseus_json(self.path):
            raise RunError(
                f"{self.flag} {self.path} exists and theseus did not write it (no "
                f'"{WRITTEN_BY}" entry first): choose another {self.flag}, or remove the file'
            )
        ours = self.path.exists()
        for other in self.beside:
            if other.exists() and not ours:
                raise RunError(
                    f"{other}, written beside {self.flag} {self.path}, exists and theseus did "
                    f"not write it: choose another {self.flag}, or remove the file"
                )


def is_theseus_json(path: Path) -> bool:
    """Whether `path` starts as theseus writes its JSON files (the key `written_by` first):
    the first bytes tell, however large the file."""
    try:
        with open(path, "rb") as file:
            start = file.read(200).decode(errors="replace")
    except OSError:
        return False
    return re.match(rf'\s*\{{\s*"{WRITTEN_BY}"\s*:\s*"bert-theseus ', start) is not None


def write_atomic(path: Path, text: str) -> None:
    """Write `text` aside and rename it into place: a kill leaves the old file or the new."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def save_figure(figure, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    partial = path.with_name(f".{path.name}.partial")
    figure.savefig(partial, dpi=110, format="png")
    plt.close(figure)
    os.replace(partial, path)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def load_yaml_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"config file {path} does not exist: check --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise RunError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise RunError(f"config file {path} must hold a mapping of option: value")
    return {key.replace("-", "_"): value for key, value in data.items()}


def plot_training(records: list[dict], path: Path) -> None:
    """Loss, dev score and replacing rate against optimizer steps, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "loss" in r]
    dev = [r for r in records if "dev" in r]
    rate = [r for r in records if "replacing_rate" in r]
    panels = 3 if rate else 2
    figure, axes = plt.subplots(panels, 1, figsize=(7, 2.4 * panels), sharex=True)
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train])
    axes[0].set_ylabel("training loss")
    # Views ("dev@w0.5-d1", DynaBERT's sub-networks) would crowd the panel; their mean stays.
    for split in [s for s in dev[0]["dev"] if "@" not in s] if dev else []:
        axes[1].plot(
            [r["step"] for r in dev], [r["dev"][split]["score"] for r in dev], "o-", label=split
        )
    axes[1].set_ylabel("dev score")
    if dev:
        axes[1].legend(loc="lower right")
    if rate:
        axes[2].plot([r["step"] for r in rate], [r["replacing_rate"] for r in rate])
        axes[2].set_ylabel("replacing rate p")
        axes[2].set_ylim(-0.02, 1.02)
    axes[-1].set_xlabel("optimizer step")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
