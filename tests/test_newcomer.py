"""What a newcomer meets first: a CLI that starts at once, says what it is doing, and one
score scale; a model card whose snippet works from anywhere; runs that record what ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "transformers", "sklearn", "scipy", "accelerate", "bert_theseus.compact")


def _loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running `code`."""
    probe = (
        f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                          timeout=120, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import bert_theseus.cli",
        "import bert_theseus.cli as c; c.build_parser()",
        "import bert_theseus.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass",
        "import bert_theseus.cli as c\ntry:\n    c.main(['compress', '--help'])\n"
        "except SystemExit:\n    pass",
        "import bert_theseus.cli as c; assert c.main(['methods']) == 0",
    ],
    ids=["import", "parser", "help", "compress-help", "methods"],
)
def test_help_and_methods_load_no_torch_transformers_or_sklearn(code):
    assert _loaded_after(code) == []


def test_import_registers_the_model_families_once_transformers_is_imported():
    """`import bert_theseus` stays cheap, yet `pipeline(model=folder)` finds compact and
    RefBERT models: they register as transformers is imported, whichever module imports it
    first (here arch.py, which the compact family itself needs)."""
    code = (
        "import sys, bert_theseus\n"
        "assert 'torch' not in sys.modules\n"
        "import bert_theseus.arch\n"
        "mapping = sys.modules['transformers.models.auto.configuration_auto'].CONFIG_MAPPING\n"
        "assert {'bert-theseus-compact', 'bert-theseus-refbert'} <= set(mapping._extra_content)"
    )
    assert "torch" in _loaded_after(code)
