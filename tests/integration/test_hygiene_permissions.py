"""Issue 13, hygiene: the data the daemon keeps on disk is readable by its own user only.

`config/default.yaml` as shipped, run under the usual umask 022 (which made files 0644 and
directories 0755): after spans went through, every directory the daemon created in the data
directory is 0700 and its own files (queue batches, chDB's lock, the trigger/decision files,
the safety state) are 0600. chDB still opens its 0700 directory: the spans are queried back.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import requests

from testkit.harness import wait_until
from tests.integration.test_chdb_exporter import default_daemon, json_rows
from testkit.otlp_load import agent_request


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_config_data_is_private(tmp_path):
    data_dir = tmp_path / "data"
    daemon = default_daemon(data_dir)
    previous = os.umask(0o022)
    try:
        daemon.start()
    finally:
        os.umask(previous)
    try:
        body = agent_request(spans=10).SerializeToString()
        answer = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", data=body,
                               headers={"Content-Type": "application/x-protobuf"}, timeout=10)
        assert answer.status_code == 200, answer.text
        wait_until(lambda: any((data_dir / "queue").rglob("*")), timeout=20, message="queue files")
    finally:
        assert daemon.stop() == 0
    ours = [data_dir, data_dir / "chdb", data_dir / "queue", *(p for p in (data_dir / "queue").rglob("*") if p.is_dir())]
    assert {str(p): oct(mode(p)) for p in ours} == {str(p): "0o700" for p in ours}
    files = [data_dir / "chdb" / "agentdbg.lock", *(p for p in data_dir.glob("*") if p.is_file()),
             *(p for p in (data_dir / "queue").rglob("*") if p.is_file())]
    assert data_dir / "triggers.jsonl" in files
    assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o600" for p in files}
    rows = json_rows(data_dir, "SELECT count() AS n FROM otel.otel_traces")
    assert int(rows[0]["n"]) == 10
