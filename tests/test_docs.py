"""The documentation map holds together: every relative link in the README, docs/ and the results index
points to a file or folder that exists, every result folder is in the index, the README stays a map, and
its test command is the one CI runs. Reads text files only (no torch)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MAP_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), RESULTS / "README.md"]

#: ``[text](target)`` and ``![alt](target)``; the target ends at the first space or closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # code blocks are not links
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("doc", MAP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    missing = [t for t in relative_links(doc) if not (doc.parent / t.split("#")[0]).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} links to paths that do not exist: {missing}"


def test_every_result_folder_is_in_the_index():
    index = (RESULTS / "README.md").read_text(encoding="utf-8")
    folders = sorted(f"{d.parent.name}/{d.name}" for d in RESULTS.glob("20*/*") if d.is_dir())
    assert folders
    absent = [f for f in folders if f"]({f}/" not in index]
    assert not absent, f"result folders missing from benchmarks/results/README.md: {absent}"


def test_readme_is_a_map_and_its_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    ci_command = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci_command in readme.splitlines()
