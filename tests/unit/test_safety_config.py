"""`agentdbg validate` on a safety config with a typo inside a breaker's match rule: the
error points at the rule and lists the keys a rule has (not the breaker's)."""
from __future__ import annotations

from testkit.harness import agentdbg

CONFIG = """
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}
connectors:
  triggers: {}
processors:
  safety:
    breakers:
      database:
        match: [{kind: [dependency_failure], subject: {dependency: postgres}}]
exporters:
  debug: {}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [triggers]}
    events: {receivers: [triggers], processors: [safety], exporters: [debug]}
"""


def test_an_unknown_key_in_a_match_rule_lists_the_match_keys(tmp_path):
    path = tmp_path / "safety.yaml"
    path.write_text(CONFIG)
    result = agentdbg("validate", "--config", str(path))
    assert result.returncode != 0
    assert "processors::safety::breakers::database::match::0::kind: unknown key (valid keys: kinds, subject)" in (
        result.stdout + result.stderr), result.stdout + result.stderr
