"""Property tests of the redaction scanner (hypothesis; fixed seed and budget by default, more
under `make fuzz`): any text around a secret, as plain text and inside JSON, never lets the
secret through, never changes the text around it, and never breaks the JSON; arbitrary text
never makes the scanner raise, and what it returns has no candidate left for the rule it hit."""
from __future__ import annotations

import json
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from processors.redaction import RedactionConfig
from processors.redaction.scanner import Scanner
from tests.fuzz.budget import budget
from testkit.redaction_corpus import samples

SCANNER = Scanner(RedactionConfig(allow_all_keys=True, detectors={"email": True, "phone": True}))
SECRETS = [(sample.kind, sample.secret) for sample in samples(seed=61, per_kind=6)]
SEPARATORS = st.sampled_from([" ", "\n", "\t", ", ", " (", ") ", ": ", "'", '"', " = ", "; "])
# Text around a secret: anything, as long as it ends (starts) with a separator.
AROUND = st.text(max_size=60)


@budget(5)
@given(st.sampled_from(SECRETS), AROUND, SEPARATORS, SEPARATORS, AROUND)
def test_a_secret_in_any_text_is_replaced_and_nothing_else_changes(secret: tuple[str, str], head: str, left: str,
                                                                   right: str, tail: str) -> None:
    kind, value = secret
    before, after = head + left, right + tail
    out = SCANNER.text(before + value + after, hits := Counter())
    assert out is not None and hits[kind] >= 1
    token = value.split()[-1] if kind == "bearer" else value
    assert token not in out
    assert out.startswith(before[:max(0, len(before) - 1)]) or kind == "email"  # emails may absorb a '.'
    # a '.' (bearer), a group of capitals (iban) or of digits (phone) after it may be taken as its own
    assert out.endswith(after[1:]) or kind in ("bearer", "iban", "phone")


@budget(3)
@given(st.sampled_from(SECRETS), AROUND, SEPARATORS, AROUND, st.integers(0, 3))
def test_a_secret_inside_json_is_replaced_and_the_json_stays_valid(secret: tuple[str, str], head: str, sep: str,
                                                                   tail: str, nesting: int) -> None:
    kind, value = secret
    document: object = {"role": "user", "content": head + sep + value + sep + tail, "n": 7}
    for _ in range(nesting):
        document = {"messages": [document], "raw": json.dumps(document)}
    text = json.dumps(document)
    out = SCANNER.text(text, Counter())
    assert out is not None
    token = value.split()[-1] if kind == "bearer" else value
    assert token not in out and token not in json.dumps(json.loads(out))  # the decoded form too
    shape = json.loads(out)
    for _ in range(nesting):
        assert set(shape) == {"messages", "raw"}
        shape = shape["messages"][0]
    assert shape["role"] == "user" and shape["n"] == 7


@budget(5)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    SCANNER.text(text, Counter())
    SCANNER.text(json.dumps({"a": [text, {"b": text}]}), Counter())
