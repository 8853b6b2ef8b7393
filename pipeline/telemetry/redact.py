"""Secrets kept out of what the daemon logs and reports.

`redact_text` masks the credentials of every URL in a text (`http://user:pass@host` becomes
`http://user:***@host`, a bare `token@host` becomes `***@host`); the log formatters apply it to
every line, so an endpoint, a library's error message or a traceback never carries them.
`is_secret_key` says whether a config key names a secret (password, token, headers, ...): the
config error formatter names such a key but never echoes its value.
"""
from __future__ import annotations

import re

MASK = "***"

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^\s/@'\"<>]+)@")
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|token|secret|(^|_)key(s)?$|^key_|authorization|headers?$|hash_key|sasl"
    r"|credential|api[_-]?key|cookie|private", re.IGNORECASE)


def _mask(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}:{MASK}@" if colon else f"{match['scheme']}{MASK}@"


def redact_text(text: str) -> str:
    """`text` with the credentials of every URL in it masked."""
    if "@" not in text or "://" not in text:  # the common case costs two scans, no regex
        return text
    return _URL_USERINFO.sub(_mask, text)


def is_secret_key(name: object) -> bool:
    """Whether a config key (one part of an error location) names a secret."""
    return isinstance(name, str) and _SECRET_KEY.search(name) is not None
