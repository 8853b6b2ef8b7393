"""The session view's subtree totals (extensions/explorer/queries.py `roll_up`) against a plain
recursive reference, on seeded random forests of spans: several traces, missing parents (roots),
self-parents, duplicated span rows (a redelivered span stored twice) and a chain deeper than
Python's recursion limit (checked against its closed form)."""
from __future__ import annotations

import random
from typing import Any

from extensions.explorer.queries import roll_up

KEYS = ("tokens_in", "tokens_out", "cost", "errors")


def forest(rng: random.Random, size: int) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    for index in range(size):
        trace = f"t{rng.randrange(3)}"
        earlier = [s["span_id"] for s in spans if s["trace_id"] == trace]
        parent = rng.choice([*earlier, "", "missing", f"s{index}"]) if earlier else rng.choice(["", "missing"])
        spans.append({"trace_id": trace, "span_id": f"s{index}", "parent_id": parent,
                      "tokens_in": rng.randrange(100), "tokens_out": rng.randrange(50),
                      "cost": rng.randrange(1000) * 1e-6, "errors": rng.randrange(2)})
    for span in rng.sample(spans, size // 10):  # stored twice
        spans.insert(rng.randrange(len(spans)), dict(span))
    return spans


def reference(spans: list[dict[str, Any]]) -> list[tuple]:
    """(depth, children, totals) per span, by recursion over the same parent rule."""
    stored = {(s["trace_id"], s["span_id"]) for s in spans}

    def kids(span: dict[str, Any]) -> list[dict[str, Any]]:
        return [s for s in spans if s["trace_id"] == span["trace_id"] and s["parent_id"] == span["span_id"]
                and s["parent_id"] != s["span_id"]]

    def total(span: dict[str, Any]) -> dict[str, Any]:
        out = {key: span[key] for key in KEYS}
        for kid in kids(span):
            sub = total(kid)
            for key in KEYS:
                out[key] += sub[key]
        out["cost"] = round(out["cost"], 10)
        return out

    def depth(span: dict[str, Any]) -> int:
        parent = (span["trace_id"], span["parent_id"])
        if not span["parent_id"] or span["parent_id"] == span["span_id"] or parent not in stored:
            return 0
        return 1 + depth(next(s for s in spans if (s["trace_id"], s["span_id"]) == parent))

    return [(depth(s), [k["span_id"] for k in kids(s)], total(s)) for s in spans]


def test_totals_depths_and_children_match_the_recursive_reference() -> None:
    rng = random.Random(20261202)
    for size in (1, 2, 5, 40, 120):
        spans = forest(rng, size)
        expected = reference(spans)
        roll_up(spans)
        assert [(s["depth"], s["children"], s["total"]) for s in spans] == expected


def test_a_chain_deeper_than_the_recursion_limit() -> None:
    chain = [{"trace_id": "t", "span_id": f"s{i}", "parent_id": f"s{i - 1}" if i else "", "tokens_in": 1,
              "tokens_out": 2, "cost": 0.5, "errors": i % 2} for i in range(5000)]
    roll_up(chain)
    assert [s["depth"] for s in chain] == list(range(5000))
    assert chain[0]["total"] == {"tokens_in": 5000, "tokens_out": 10000, "cost": 2500.0, "errors": 2500}
    assert chain[-1]["total"] == {"tokens_in": 1, "tokens_out": 2, "cost": 0.5, "errors": 1}
