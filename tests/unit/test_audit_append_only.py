"""The audit table is append-only for the daemon: no statement the daemon's code can send
updates or deletes a row of it. Checked on the code: every SQL string (string literals and the
literal parts of f-strings) of the daemon's packages that could change or remove rows is found,
and the only one, the erasure's `DELETE FROM {table}`, is only ever run on the spans,
trace-id lookup and session-summary tables. tests/integration/test_audit_actions.py checks the running engine."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from extensions.explorer import forget
from pipeline import audit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "receivers", "processors", "connectors", "exporters", "extensions")
CHANGES_ROWS = re.compile(r"\b(DELETE\s+FROM|ALTER\s+TABLE\b[^;]*\b(DELETE|UPDATE)\b|UPDATE\s+\S+\s+SET|"
                          r"TRUNCATE\b|DROP\s+(TABLE|DATABASE)|REPLACE\s+TABLE|EXCHANGE\s+TABLES)")


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each string literal and each f-string's literal text, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    parts = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | parts:
            found.append((node.lineno, node.value))
    return found


def test_the_only_statement_that_removes_rows_is_the_erasures_delete() -> None:
    removing = [(str(path.relative_to(ROOT)), line, text)
                for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
                for line, text in sql_strings(path) if CHANGES_ROWS.search(text)]
    assert [(where, text) for where, _, text in removing] == [
        ("extensions/explorer/forget.py", "DELETE FROM {} WHERE {}")], removing


def test_the_erasure_deletes_only_from_the_data_tables_never_the_audit_table() -> None:
    """Every call of forget's `_count_and_delete` names the spans, lookup, session-summary or log tables."""
    tree = ast.parse(Path(forget.__file__).read_text())
    tables = [ast.unparse(call.args[1]) for call in ast.walk(tree)
              if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "_count_and_delete"]
    assert sorted(tables) == ["logs", "session_traces", "sessions", "tables.traces", "target.lookup", "upgrades"]


def test_audit_rows_are_written_by_one_insert() -> None:
    statement = audit.insert_statement("`otel`.`agentdbg_decisions`")
    assert statement.startswith("INSERT INTO `otel`.`agentdbg_decisions` ")
    assert not CHANGES_ROWS.search(statement)
