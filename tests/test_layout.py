"""The training loop and the jobs read in pieces: no function in them is over 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import bert_theseus

PACKAGE = Path(bert_theseus.__file__).parent
# The loop, the jobs, and the run plumbing under them.
CHECKED = ["training/loop.py", "commands.py", "compare.py", "run_setup.py", "run_folder.py"]
MOST_LINES = 80


def long_functions(source: str) -> list[str]:
    return [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MOST_LINES
    ]


def test_the_check_sees_a_long_function():
    body = "".join(f"    x{i} = {i}\n" for i in range(MOST_LINES))
    assert long_functions(f"def f():\n{body}") == [f"f ({MOST_LINES + 1} lines)"]
    assert long_functions("def g():\n    return 1\n") == []


def test_no_function_in_the_loop_or_the_jobs_is_over_80_lines():
    found = {name: long_functions((PACKAGE / name).read_text()) for name in CHECKED}
    assert {name: long for name, long in found.items() if long} == {}
