"""The book speaks to its reader: no project talk in chapters, book pages or library docstrings.

A learner cannot see our issue tracker, our specification notes or the seed documents the course
started from, and a goal we set ourselves is our business, not theirs. So the text they read (every
cell of every chapter, the book's own pages, and the docstrings `show_source` prints) must not
mention issues by number, MODEL.md, seeds, goals met or not met, or earlier drafts.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_TALK = {
    "an issue by number": re.compile(r"\bissues?\s+#?\d+", re.IGNORECASE),
    "the issue behind a page": re.compile(r"\bthe issue (behind|that asked|for this)",
                                          re.IGNORECASE),
    "our specification file": re.compile(r"MODEL\.md"),
    "a seed document": re.compile(r"\bseeds?\s+\d{3}\b", re.IGNORECASE),
    "a goal met or not": re.compile(r"\bgoals?\b[^\n]{0,80}?\b(met|reached|missed)\b",
                                    re.IGNORECASE),
    "an earlier draft": re.compile(r"\ban earlier version of this (chapter|page|book)",
                                   re.IGNORECASE),
    "the authors' diary": re.compile(r"\bwhile (adding|writing|building) this\b[^\n]{0,40}"
                                     r"\bwe found\b", re.IGNORECASE),
}
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))
LIBRARY = sorted(p for folder in ("microgpt_lib", "fastops") for p in (ROOT / folder).rglob("*.py"))


def project_talk(text: str) -> list[str]:
    """Each line of `text` that talks about the project rather than to the reader, with why."""
    found = []
    for line in text.splitlines():
        for why, pattern in PROJECT_TALK.items():
            if pattern.search(line):
                found.append(f"{why}: {line.strip()[:120]}")
    return found


def docstrings(path: Path) -> str:
    """Every module, class and function docstring of a Python file, one after another."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return "\n".join(filter(None, (ast.get_docstring(n) for n in nodes)))


def test_the_checker_catches_project_talk():
    caught = project_talk("as issue 7 measured\nsee MODEL.md\nseed 000 reports\n"
                          "goal 40x: not met\nthe issue behind this chapter\n"
                          "an earlier version of this chapter\nwhile adding this build we found")
    assert len(caught) == 7, caught
    assert not project_talk("shuffled with seed 42; the loss is met by the gradient; issues")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_cells_speak_to_the_reader(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    found = [f"cell {i}, {why}" for i, cell in enumerate(cells)
             for why in project_talk("".join(cell["source"]))]
    assert not found, f"{path.name}:\n" + "\n".join(found)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_book_pages_speak_to_the_reader(path):
    found = project_talk(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name}:\n" + "\n".join(found)


def test_library_docstrings_speak_to_the_reader():
    found = [f"{path.relative_to(ROOT)}: {why}" for path in LIBRARY
             for why in project_talk(docstrings(path))]
    assert not found, "\n".join(found)
