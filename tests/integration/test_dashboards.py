"""The shipped Grafana dashboards and Prometheus alert rules, against the real things.

- `promtool check rules` and `promtool test rules` pass on config/prometheus/.
- Every dashboard is provisioning-ready JSON: unique uids, every panel on the `${prometheus}` or
  `${clickhouse}` datasource variable with a query.
- A daemon shaped like config/default.yaml (genai → batch → [chdb, triggers, genai_metrics];
  trigger events and safety decisions into chdb's audit table) runs under load from two
  OpenTelemetry SDK agents (one failing often enough to fire error_rate_spike and open a
  breaker); Debian's Prometheus scrapes it every second. Every PromQL panel, with Grafana's
  variables filled in as Grafana would (`$__rate_interval` 15s: 4 × the scrape interval), returns
  data. Prometheus' histograms of a probe agent equal what it sent.
- Then the daemon stops and every SQL panel, with the ClickHouse plugin's macros expanded as the
  plugin does, runs on the chdb store (`agentdbg query --path`) and returns rows.
"""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from exporters.genai_metrics import TOKEN_BUCKETS
from tests.conftest import require_binary
from testkit.harness import BASE_CONFIG, ROOT, Daemon, query_json, wait_until
from tests.integration.test_genai_metrics import Call, expected_histogram, genai_run
from tests.integration.test_prometheus import run_prometheus
from testkit.otlp_spans import export_spans, otlp_exporter, sdk_provider

DASHBOARDS = sorted((ROOT / "config" / "grafana" / "dashboards").glob("*.json"))
RULES = ROOT / "config" / "prometheus"
PROM_UID, CH_UID = "${prometheus}", "${clickhouse}"
# Grafana's values for its variables in the panels' queries (instant queries at "now").
PROM_VARIABLES = {"$__rate_interval": "15s", "$__range": "5m", "$service": ".*"}
RANGE_SECONDS = 6 * 3600

OVERLAY = """
connectors:
  triggers:
    evaluation_interval: 100ms
    error_rate_spike: {min_count: 20, window: 30s}
processors:
  genai: {}
  batch: {send_batch_size: 512, timeout: 100ms}
  safety:
    state_file: "{dir}/safety.json"
    tick_interval: 100ms
    breakers:
      coder_api:
        failure_threshold: 1
        timeout: 10m
        fallback: cheaper_model
        match: [{kinds: [error_rate_spike], subject: {service: coder-svc}}]
exporters:
  chdb: {path: "{dir}/chdb"}
  genai_metrics: {}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [genai, batch], exporters: [chdb, triggers, genai_metrics]}
    events/triggers: {receivers: [triggers], exporters: [chdb]}
    events/safety: {receivers: [triggers], processors: [safety], exporters: [chdb]}
"""


def dashboards() -> Iterator[tuple[str, dict]]:
    for path in DASHBOARDS:
        yield path.name, json.loads(path.read_text())


def targets(datasource_type: str) -> list[Any]:
    out = []
    for name, board in dashboards():
        for panel in board["panels"]:
            for target in panel["targets"]:
                if target["datasource"]["type"] == datasource_type:
                    out.append(pytest.param(target, id=f"{name}:{panel['title']}:{target['refId']}"))
    return out


# -- the files ------------------------------------------------------------------------------------

def test_promtool_checks_the_alert_rules():
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "check", "rules", "alerts.yaml"], cwd=RULES, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_promtool_unit_tests_of_the_alert_rules_pass():
    promtool = require_binary("promtool")
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yaml"], cwd=RULES, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_class_with_its_for_and_severity():
    import yaml

    rules = {rule["alert"]: rule for group in yaml.safe_load((RULES / "alerts.yaml").read_text())["groups"]
             for rule in group["rules"]}
    want = {"agent_down": ("critical", "1m"), "error_rate_high": ("critical", "5m"), "memory_leak": ("critical", "30m"),
            "slow_response": ("warning", "10m"), "high_cost": ("warning", "1h"), "pattern_anomaly": ("warning", "6h")}
    for name, (severity, duration) in want.items():
        assert (rules[name]["labels"]["severity"], rules[name]["for"]) == (severity, duration), name
        assert rules[name]["labels"]["class"] == name and rules[name]["annotations"]["summary"]
    tested = (RULES / "alerts_test.yaml").read_text()
    assert all(f"alertname: {name}" in tested for name in rules)


def test_dashboards_are_provisioning_ready():
    names = {path.name for path in DASHBOARDS}
    assert names == {"agent-performance.json", "cost.json", "triggers-safety.json", "pipeline-health.json"}
    uids = [board["uid"] for _, board in dashboards()]
    assert len(set(uids)) == len(uids)
    for name, board in dashboards():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["prometheus"]["query"] == "prometheus"
        assert variables["clickhouse"]["query"] == "grafana-clickhouse-datasource"
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in (PROM_UID, CH_UID) and panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]
                assert target.get("expr") or (target.get("rawSql") and target["editorType"] == "sql"), panel["title"]


# -- PromQL against a real Prometheus scraping the daemon under load ------------------------------

@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(BASE_CONFIG, workdir=tmp_path_factory.mktemp("dashboards"), overlay=OVERLAY) as running:
        yield running


class Load:
    """Two SDK agents sending a GenAI run every 0.2 s until stopped: `planner-svc` healthy,
    `coder-svc` with one failed call (an exception event) in each of its runs."""

    def __init__(self, port: int) -> None:
        self.providers = []
        self.tracers = {}
        for service in ("planner-svc", "coder-svc"):
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True), schedule_delay_millis=100))
            self.providers.append(provider)
            self.tracers[service] = provider.get_tracer("dashboard-load")
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dashboard-load", daemon=True)

    def _run(self) -> None:
        planner = [Call("gpt-4o-mini", 900, 120, 0.3), Call("gpt-4o", 2500, 400, 1.2)]
        coder = [Call("gpt-4o-mini", 300, 60, 0.2), Call("gpt-4o", 40, 10, 0.05, error="TimeoutError"),
                 Call("house-model-x", 10, 10, 0.02)]
        while not self.stopped.is_set():
            now = time.time_ns()
            genai_run(self.tracers["planner-svc"], "planner", planner, now - 2_000_000_000)
            genai_run(self.tracers["coder-svc"], "coder", coder, now - 1_000_000_000)
            self.stopped.wait(0.2)

    def start(self) -> "Load":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        for provider in self.providers:
            provider.shutdown()


@pytest.fixture(scope="module")
def load(daemon):
    running = Load(daemon.ports["grpc"]).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def prometheus(daemon, load, tmp_path_factory):
    with run_prometheus([f"127.0.0.1:{daemon.ports['metrics']}"], tmp_path_factory.mktemp("prometheus")) as base:
        # the safety chain has reacted: the coder's breaker decision is on its gauge
        wait_until(lambda: daemon.metric("agentdbg_safety_breaker_state", breaker="coder_api") == 2,
                   timeout=60, interval=0.2, message="the coder breaker to open")
        yield base


def instant(base: str, expression: str) -> list[dict]:
    response = requests.get(f"{base}/api/v1/query", params={"query": expression}, timeout=10)
    assert response.status_code == 200, f"{expression}: {response.text}"
    return response.json()["data"]["result"]


def fill(expression: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):  # $__rate_interval before $__range
        expression = expression.replace(name, variables[name])
    return expression


@pytest.mark.parametrize("target", targets("prometheus"))
def test_promql_panel_returns_data(prometheus, target):
    expression = fill(target["expr"], PROM_VARIABLES)
    assert "$" not in expression, expression

    def data() -> list[dict] | None:
        result = instant(prometheus, expression)
        return result if any(sample["value"][1] != "NaN" for sample in result) else None

    wait_until(data, timeout=60, interval=0.5, message=f"data (not only NaN) for {expression}")


def test_prometheus_histograms_equal_what_a_probe_agent_sent(daemon, prometheus):
    provider, memory = sdk_provider(Resource({"service.name": "probe-svc"}))
    calls = [Call("gpt-4o", 5, 1, 0.5), Call("gpt-4o", 17, 64, 0.7), Call("gpt-4o", 70000, 1, 0.04)]
    genai_run(provider.get_tracer("probe"), "probe", calls, time.time_ns() - 2_000_000_000)
    provider.shutdown()
    export_spans(otlp_exporter("grpc", daemon.ports["grpc"], timeout=10), memory.get_finished_spans())
    sent = [float(c.input_tokens) for c in calls]
    expression = ('sum by (le) (gen_ai_client_token_usage_bucket{service_name="probe-svc", '
                  'gen_ai_token_type="input"})')
    want = expected_histogram({(): sent}, TOKEN_BUCKETS)[()]["buckets"]

    def buckets() -> dict[float, float] | None:
        got = {float(s["metric"]["le"]): float(s["value"][1]) for s in instant(prometheus, expression)}
        return got if got == want else None

    wait_until(buckets, timeout=30, interval=0.5, message=f"prometheus to hold {want}")
    total = instant(prometheus, 'sum(gen_ai_client_token_usage_sum{service_name="probe-svc", gen_ai_token_type="input"})')
    assert float(total[0]["value"][1]) == sum(sent)
    durations = instant(prometheus, 'sum(gen_ai_client_operation_duration_seconds_count{service_name="probe-svc", '
                                    'gen_ai_operation_name="chat"})')
    assert float(durations[0]["value"][1]) == len(calls)


# -- SQL panels against the chdb store --------------------------------------------------------------

def expand_macros(sql: str, now: float) -> str:
    """The ClickHouse plugin's macros for a dashboard range of the last 6 hours (to a minute ahead)."""
    start, end = int(now) - RANGE_SECONDS, int(now) + 60
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m[1]} >= toDateTime({start}) AND {m[1]} <= toDateTime({end})", sql)
    sql = re.sub(r"\$__timeInterval\(([^)]+)\)",
                 lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL 20 second)", sql)
    return sql.replace("$__fromTime", f"toDateTime({start})").replace("$__toTime", f"toDateTime({end})")


@pytest.fixture(scope="module")
def store(daemon, load, prometheus) -> Path:
    """The chdb directory once the load and the daemon have stopped (chDB: one process per directory)."""
    load.stop()
    wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="chdb") >=
               daemon.metric("otelcol_receiver_accepted_spans_total"), timeout=30, message="spans stored")
    assert daemon.stop() == 0
    return daemon.dir / "chdb"


@pytest.mark.parametrize("target", targets("grafana-clickhouse-datasource"))
def test_sql_panel_runs_on_the_store(store, target):
    sql = expand_macros(target["rawSql"], time.time())
    assert "$" not in sql, sql
    rows = query_json(sql, "--path", str(store))
    assert rows, f"no rows for {sql}"


def test_the_trigger_panel_joins_spans_of_the_failing_agent(store):
    sql = next(t.values[0]["rawSql"] for t in targets("grafana-clickhouse-datasource")
               if "Spans behind" in t.id)
    rows = query_json(expand_macros(sql, time.time()), "--path", str(store))
    by_trigger: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_trigger[row["trigger"]].add(row["ServiceName"])
    assert by_trigger["error_rate_spike"] == {"coder-svc"}
