"""README.md documents what exists: its config reference is the one the code generates."""
from pathlib import Path

from pipeline.reference import END, START, embed, markdown
from pipeline.registry import factories

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_matches_the_code():
    text = README.read_text()
    assert START in text and END in text
    assert embed(text, markdown(factories())) == text, "README.md is stale: run `make docs`"


def test_readme_shows_the_two_commands_first():
    text = README.read_text()
    first_block = text.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in first_block and "make test" in first_block
