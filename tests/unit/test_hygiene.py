"""Issue 13, hygiene, unit level: URL credentials masked, secret config values never echoed,
data files and directories private whatever the umask (umask 000 here, the worst case)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr, ValidationError

from exporters.helper.dead_letter import DeadLetters
from pipeline.config.resolve import format_validation_error
from pipeline.private_files import open_private, private_dir
from pipeline.telemetry.redact import redact_text
from pipeline.pdata.traces import Traces


@pytest.mark.parametrize("text, expected", [
    ("endpoint=http://user:pw@host:8123/x", "endpoint=http://user:***@host:8123/x"),
    ("'https://tok3n@h'", "'https://***@h'"),
    ("kafka://a:b@h1, http://c:d@h2", "kafka://a:***@h1, http://c:***@h2"),
    ("mail bob@example.com at http://host/a@b", "mail bob@example.com at http://host/a@b"),
])
def test_redact_text_masks_url_credentials_only(text, expected):
    assert redact_text(text) == expected


class Inner(BaseModel):
    dsn: SecretStr
    note: str = Field("", json_schema_extra={"secret": True})
    label: str = ""


class Outer(BaseModel):
    inner: Inner
    api_token: str = ""


def test_formatter_hides_marked_and_named_secrets_but_not_plain_values():
    try:
        Outer.model_validate({"inner": {"dsn": ["s3cret-a"], "note": ["s3cret-b"], "label": ["plain-c"]},
                              "api_token": ["s3cret-d"]})
    except ValidationError as exc:
        lines = format_validation_error(exc, "exporters::x", Outer)
    text = "\n".join(lines)
    for key in ("inner::dsn", "inner::note", "inner::label", "api_token"):
        assert f"exporters::x::{key}:" in text
    assert "s3cret" not in text
    assert "plain-c" in text  # a value that is not a secret still helps the operator


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_private_files_ignore_the_umask(tmp_path, open_umask):
    (tmp_path / "own").mkdir(mode=0o755)  # the operator's: kept as it is
    directory = private_dir(tmp_path / "own" / "a" / "b")
    with open_private(directory / "f", "ab") as handle:
        handle.write(b"x")
    assert (mode(tmp_path / "own" / "a"), mode(directory), mode(directory / "f")) == (0o700, 0o700, 0o600)
    assert mode(tmp_path / "own") == 0o755


def test_dead_letters_are_private(tmp_path, open_umask):
    path = Path(DeadLetters(tmp_path / "dead").keep(Traces(None, b""), "refused"))
    assert path.exists()
    assert (mode(path.parent), mode(path), mode(path.with_suffix(".reason"))) == (0o700, 0o600, 0o600)
