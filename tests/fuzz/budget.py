"""How many examples a fuzz test runs: its weight times the profile's `max_examples`.

The profile (tests/conftest.py) is `ci` by default (fixed seed, small budget) and `fuzz` under
`make fuzz`. Cheap in-process tests weigh more than those that talk to a daemon.
"""
from __future__ import annotations

from hypothesis import settings


def budget(weight: float) -> settings:
    return settings(max_examples=max(1, int(settings.default.max_examples * weight)))
