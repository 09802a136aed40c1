"""The README's two set-up commands: CI runs exactly the test command, and both install
with the pinned versions of constraints.txt."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The one-line bash commands of the README's set-up section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return next(line for line in lines if line.startswith("pip install"))


def test_ci_runs_exactly_the_readmes_test_command():
    main_job, tests = readme_commands()[:2]
    assert tests.endswith("python -m pytest") and "quickstart.sh" in main_job
    assert ci_command() == tests


def test_every_install_is_pinned_by_the_constraints_file():
    pins = {
        line.split("==")[0].lower(): line.split("==")[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for command in readme_commands()[:2]:
        for install in command.split(" && "):
            if install.startswith("pip install"):
                assert "-c constraints.txt" in install, install
                for name, version in re.findall(r"([\w.-]+)==([\w.+-]+)", install):
                    assert pins[name.lower()] == version, f"{name}: {version} vs {pins[name]}"
    for name in ("torch", "transformers", "openvino", "nncf", "onnxruntime", "accelerate"):
        assert name in pins, f"{name} is not pinned"
