"""The seeded redaction corpus (testkit/redaction_corpus.py) is what it says: every sample valid
and at its position, every kind present, the benign corpus reproducible."""
from __future__ import annotations

from processors.redaction.detectors import is_card, is_iban
from testkit.redaction_corpus import KINDS, benign, samples


def test_samples_are_at_their_positions_and_valid() -> None:
    seen = set()
    for sample in samples():
        assert sample.text[sample.start:sample.start + len(sample.secret)] == sample.secret
        if sample.kind == "card":
            assert is_card(sample.secret)
        if sample.kind == "iban":
            assert is_iban(sample.secret)
        seen.add(sample.kind)
    assert seen == set(KINDS)


def test_benign_corpus_is_seeded() -> None:
    assert benign(count=50) == benign(count=50)
    assert len(set(benign(count=300))) > 250
