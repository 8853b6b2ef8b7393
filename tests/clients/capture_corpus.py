"""Capture every real client family's OTLP trace requests into tests/clients/corpus/ (run by hand).

    .venv/bin/python -m tests.clients.capture_corpus [family ...]

Each family's agent scripts (the ones its integration test runs) run with the family's own
virtualenv (`make clients`) against the fake OpenAI server, exporting to a recording OTLP/HTTP
endpoint; the requests as the instrumentation sent them are written to
tests/clients/corpus/<family>.otlp as 4-byte big-endian length-prefixed protobuf records (the
file exporter's format, testkit/otlp_spans.read_proto_records). The compiled hot path's
differential tests (tests/unit/test_native_*.py) read them: the corpus is committed, so those
tests need no client venv. Re-run after a family's pins change.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import time

from testkit.fake_openai import FakeOpenAI
from testkit.native_corpus import CORPUS
from testkit.otlp_sink import RecordingSink
from tests.clients.kit import CLIENTS, VENVS

SCRIPTS = {
    "adk": ["adk_agent"], "agentops": ["agentops_agent"], "langfuse": ["langfuse_agent"],
    "logfire": ["logfire_agent", "logfire_pydantic_agent"],
    "openinference": ["openinference_agent", "openinference_agents_agent"],
    "openllmetry": ["openllmetry_agent"], "otel_v2": ["otel_v2_agent"],
}


def capture(family: str, fake: FakeOpenAI) -> int:
    with RecordingSink() as sink, tempfile.TemporaryDirectory() as workdir:  # some SDKs write logs to the cwd
        for script in SCRIPTS[family]:
            env = {**os.environ, "FAKE_OPENAI_URL": fake.url, "OTLP_ENDPOINT": sink.url,
                   "SERVICE_NAME": f"corpus-{script}", "SESSION_ID": f"sess-corpus-{script}",
                   "OTEL_SERVICE_NAME": f"corpus-{script}", "PYTHONPATH": str(CLIENTS)}
            for key in ("VIRTUAL_ENV", "PYTHONHOME"):
                env.pop(key, None)
            done = subprocess.run([str(VENVS / family / "bin" / "python"), str(CLIENTS / f"{script}.py")],
                                  cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise SystemExit(f"{script} failed:\n{(done.stdout + done.stderr)[-4000:]}")
        time.sleep(1.0)  # the last batch processor flush
        requests = sink.requests()
    CORPUS.mkdir(parents=True, exist_ok=True)
    with open(CORPUS / f"{family}.otlp", "wb") as out:
        for request in requests:
            data = request.SerializeToString()
            out.write(struct.pack(">I", len(data)) + data)
    return sum(len(ss.spans) for r in requests for rs in r.resource_spans for ss in rs.scope_spans)


def main() -> None:
    families = sys.argv[1:] or sorted(SCRIPTS)
    fake = FakeOpenAI()
    fake.start()
    try:
        for family in families:
            print(f"{family}: {capture(family, fake)} spans")
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
