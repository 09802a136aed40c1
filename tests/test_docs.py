"""The README a newcomer reads, what CI runs, and the docs site's pages (issue 39, item 5).

`mkdocs build --strict` in `.ci/run` checks the links between docs/ pages; the README lies
outside docs/, so its links are checked here.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def _slug(heading: str) -> str:
    """Python-Markdown's toc slug, as mkdocs gives headings their anchors."""
    text = re.sub(r"[`*]", "", heading)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings in code
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_readme_stays_short():
    assert len(README.read_text().splitlines()) <= 250


def test_ci_runs_the_readme_test_command_then_builds_the_site():
    """The README's second command is exactly what CI runs, followed by the strict build."""
    readme = README.read_text()
    tests_section = readme.split("Run the tests", 1)[1]
    command = _bash_blocks(tests_section)[0].strip()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci_lines
    build = [line for line in ci_lines if line.startswith("mkdocs build --strict")]
    assert len(build) == 1 and ci_lines.index(build[0]) > ci_lines.index(command)
    assert "--site-dir" in build[0]  # never a site/ folder left in the clone


def test_readme_links_reach_existing_pages_and_headings():
    links = [target for target in LINK.findall(README.read_text()) if "://" not in target]
    assert links, "the README links into docs/"
    for target in links:
        path, _, anchor = target.partition("#")
        page = ROOT / path
        assert page.is_file(), f"README links to missing {path}"
        if anchor:
            assert anchor in _anchors(page), f"README links to missing heading {target}"


def _nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_docs_page_is_in_the_site_nav_once():
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(nav) == pages


def test_every_method_has_a_docs_page_and_a_readme_row():
    """A built-in method's page exists and the README's table of methods links to it."""
    methods = sorted(
        p.name.replace("_", "-")
        for p in (ROOT / "src" / "bert_theseus" / "methods").iterdir()
        if (p / "__init__.py").is_file()
    )
    readme = README.read_text()
    for name in methods:
        assert (ROOT / "docs" / "methods" / f"{name}.md").is_file(), name
        assert f"| [`{name}`](docs/methods/{name}.md)" in readme, name
