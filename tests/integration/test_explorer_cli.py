"""`agentdbg sessions`, `session <id>`, `triggers`, `decisions` and `query` against the running
daemon's explorer (with a token), from another directory, checked against the traffic sent
(tests/integration/test_explorer_api.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from testkit.harness import ROOT
from tests.integration.test_explorer_api import CHECKOUT, SESSION, Api, send_traffic, start_daemon, wait_stored

TOKEN = "cli-s3cret"


@pytest.fixture(scope="module")
def explorer(tmp_path_factory: pytest.TempPathFactory):
    daemon = start_daemon(tmp_path_factory.mktemp("explorer-cli"), token=TOKEN)
    try:
        api = Api(daemon, TOKEN)
        sent = send_traffic(daemon)
        wait_stored(api, sent)
        yield daemon, api, tmp_path_factory.mktemp("elsewhere")
    finally:
        daemon.stop()
        daemon.kill()


def run(cwd, *args: str, token: str | None = TOKEN, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`agentdbg ARGS` run from `cwd` (not the checkout), as an installed command would be."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDBG_")}
    environment["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "pipeline", *args, *(["--token", token] if token else [])]
    return subprocess.run(command, cwd=cwd, env={**environment, **(env or {})}, capture_output=True, text=True,
                          timeout=120)


def test_sessions_and_the_session_tree(explorer) -> None:
    _, api, cwd = explorer
    listed = run(cwd, "sessions", "--url", api.url)
    assert listed.returncode == 0, listed.stderr
    [travel] = [line.split() for line in listed.stdout.splitlines() if line.startswith(SESSION)]
    # SESSION SERVICES AGENTS SPANS START(2 words) DURATION(2) TOKENS COST ERRORS TRIGGERS
    assert travel[1:4] == ["travel-agent", "planner", "5"] and travel[6:8] == ["3.00", "s"]
    assert travel[8:] == ["2700/280", "$0.009550", "1", "0"]
    flagged = run(cwd, "sessions", "--url", api.url, "--has-trigger", "--json")
    assert [row["session"] for row in json.loads(flagged.stdout)] == [CHECKOUT]

    tree = run(cwd, "session", SESSION, "--url", api.url)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert lines[0].startswith(f"session {SESSION}: 5 spans in 1 trace(s), 3.00 s, tokens 2700/280, cost $0.009550, "
                               "1 error(s)")
    assert lines[1] == "[agent] invoke_agent planner  3.00 s  tokens 2700/280  $0.009550"
    assert lines[2:] == ["├─ [llm] chat gpt-4o  1.00 s  tokens 1200/80  $0.003800",
                         "├─ [tool] execute_tool search_flights  300.0 ms",
                         "├─ [tool] execute_tool book_hotel  400.0 ms  ERROR: hotel API returned 503",
                         "└─ [llm] chat gpt-4o  800.0 ms  tokens 1500/200  $0.005750"]
    missing = run(cwd, "session", "no-such-session", "--url", api.url)
    assert missing.returncode == 1 and "404" in missing.stderr and "no-such-session" in missing.stderr


def test_triggers_and_decisions(explorer) -> None:
    _, api, cwd = explorer
    fired = run(cwd, "triggers", "--url", api.url)
    assert fired.returncode == 0, fired.stderr
    [line] = [line for line in fired.stdout.splitlines() if "error_rate_spike" in line]
    assert "service=checkout-agent" in line and f"{CHECKOUT}:" in line and "failed" in line
    decided = run(cwd, "decisions", "--url", api.url)
    [opened] = [line for line in decided.stdout.splitlines() if " breaker_open " in line]
    assert "checkout_api" in opened and "error_rate_spike on service=checkout-agent" in opened


def test_query_runs_read_only_in_the_daemon_and_the_token_is_required(explorer) -> None:
    daemon, api, cwd = explorer
    counted = run(cwd, "query", "SELECT count() AS n FROM otel.otel_traces WHERE ServiceName = 'travel-agent'",
                  "--url", api.url, "--format", "json")
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout) == [{"n": 5}]  # an array of rows, as from a directory
    refused = run(cwd, "query", "INSERT INTO otel.otel_traces (SpanName) VALUES ('x')", "--url", api.url)
    assert refused.returncode == 1 and "403" in refused.stderr and "read statements" in refused.stderr
    # The address and the token from the environment; without a token, a clear refusal.
    from_env = run(cwd, "sessions", token=None, env={"AGENTDBG_URL": api.url, "AGENTDBG_EXPLORER_TOKEN": TOKEN})
    assert from_env.returncode == 0 and SESSION in from_env.stdout
    no_token = run(cwd, "sessions", "--url", api.url, token=None)
    assert no_token.returncode == 1 and "needs the explorer's token" in no_token.stderr
    assert daemon.proc is not None and daemon.proc.poll() is None  # the daemon kept running throughout
