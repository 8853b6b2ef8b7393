"""Every citation in the repository points at something in it.

A reader who follows `docs/protocols.md#status-mapping` from a docstring, or a Markdown link
from README, must land on a file of this repository and, when an anchor is given, on a
heading of that file. A `§N` citation must name its document (`RFC 1952 §2.2`, or a Markdown
file of the repository): a bare `§N`, or one of a file that is not here, points nowhere.
"""
from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = (".py", ".md", ".yaml", ".yml", ".toml")
# A path ending in .md, with an optional #anchor, not inside a URL (those name other projects' files).
MD_PATH = re.compile(r"(?<![\w/.:-])((?:[\w.-]+/)*[\w.-]+\.md)(#[\w-]+)?")
MD_LINK = re.compile(r"\]\(([^)\s#]*)(#[^)\s]*)?\)")
SECTION = re.compile(r"§\s?\d")
NAMED_DOCUMENT = re.compile(r"(RFC \d+|[\w./-]+\.md)\s*$")


@cache
def files() -> tuple[Path, ...]:
    """The repository's own text files (tracked or new, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return tuple(ROOT / name for name in listed if name.endswith(SCANNED) and (ROOT / name).is_file())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", path.read_text(), flags=re.MULTILINE)
    return frozenset(slug(h) for h in headings)


def resolve(cited: str, citing: Path) -> Path | None:
    """A cited path, relative to the repository root, or to the citing file's folder or one
    of its parents (`RESULTS.md` from benchmarks/scenarios/ is benchmarks/RESULTS.md)."""
    for base in (ROOT, citing.parent, *citing.parent.parents):
        candidate = (base / cited).resolve()
        if candidate.is_file() and ROOT in candidate.parents:
            return candidate
    return None


def broken_citations(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    cited = [(m.group(1), m.group(2)) for m in MD_PATH.finditer(text)]
    if path.suffix == ".md":
        cited += [(m.group(1), m.group(2)) for m in MD_LINK.finditer(text) if m.group(1)
                  and not re.match(r"[a-z]+:", m.group(1))]
        cited += [(path.name, m.group(2)) for m in MD_LINK.finditer(text) if not m.group(1) and m.group(2)]
    problems = []
    for name, anchor in cited:
        target = resolve(name, path)
        if target is None:
            problems.append(f"{name}: no such file in the repository")
        elif anchor and target.suffix == ".md" and anchor[1:] not in anchors(target):
            problems.append(f"{name}{anchor}: no such heading in {target.relative_to(ROOT)}")
    for line in text.splitlines():
        for match in SECTION.finditer(line):
            if not NAMED_DOCUMENT.search(line[:match.start()]):
                problems.append(f"{line.strip()[:80]!r}: a § citation that names no document")
    return problems


def test_citations_resolve() -> None:
    scanned = [p for p in files() if p != Path(__file__)]  # this file's examples are broken on purpose
    broken = {str(p.relative_to(ROOT)): found for p in scanned if (found := broken_citations(p))}
    assert broken == {}


@pytest.mark.parametrize(("text", "problem"), [
    ("see REFERENCE.md §6", "REFERENCE.md: no such file in the repository"),
    ("see docs/protocols.md#no-such-heading",
     "docs/protocols.md#no-such-heading: no such heading in docs/protocols.md"),
    ("in §11's order", "a § citation that names no document"),
])
def test_a_broken_citation_is_found(tmp_path: Path, text: str, problem: str) -> None:
    citing = tmp_path / "module.py"
    citing.write_text(f'"""{text}."""\n')
    assert any(problem in found for found in broken_citations(citing))


def test_sound_citations_pass(tmp_path: Path) -> None:
    citing = tmp_path / "module.py"
    citing.write_text('"""docs/protocols.md#status-mapping; README.md; RFC 1952 §2.2;\n'
                      'https://github.com/open-telemetry/opentelemetry-proto/blob/main/docs/specification.md."""\n')
    assert broken_citations(citing) == []
