"""How long `theseus --help` and `theseus methods` take to answer, best of N.

    python benchmarks/cli_startup.py --repeats 5

Each command runs in a fresh process (the `theseus` script beside this Python, else
`python -m bert_theseus.cli`), with this checkout's source first on the path, so every
import is paid each time; the best of N is reported, as
other work on the machine only ever adds time. Also prints the cumulative import time of
`bert_theseus.cli` and of the heaviest modules it pulls in (`python -X importtime`), which
is less noisy than wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
COMMANDS = {"theseus --help": ["--help"], "theseus methods": ["methods"]}


def _env() -> dict:
    # This checkout's source first, as the tests run it.
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def theseus() -> list[str]:
    script = Path(sys.executable).with_name("theseus")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bert_theseus.cli"]


def wall_seconds(args: list[str], repeats: int) -> list[float]:
    """Wall time of `theseus ARGS`, `repeats` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([*theseus(), *args], env=_env(), stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def import_times(top: int) -> list[tuple[str, float]]:
    """Cumulative import seconds of `bert_theseus.cli` and the `top` heaviest imports."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import bert_theseus.cli"],
                          env=_env(), capture_output=True, text=True, check=True)  # fmt: skip
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[1]) / 1e6))
    rows.sort(key=lambda row: -row[1])
    return rows[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per command (best kept)")
    parser.add_argument("--top", type=int, default=8, help="heaviest imports listed")
    args = parser.parse_args()
    print(f"{' '.join(theseus())}; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for name, argv in COMMANDS.items():
        times = wall_seconds(argv, args.repeats)
        listed = ", ".join(f"{t:.2f}" for t in times)
        print(f"{name}: best {min(times):.2f} s of {args.repeats} ({listed})")
    print("cumulative import time (python -X importtime -c 'import bert_theseus.cli'):")
    for module, seconds in import_times(args.top):
        print(f"  {seconds:7.3f} s  {module}")


if __name__ == "__main__":
    main()
