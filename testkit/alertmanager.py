"""A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import requests

from testkit.harness import free_port, wait_until

CONFIG = """
route:
  receiver: blackhole
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: blackhole
"""


class Alertmanager:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alertmanager-"))
        (self.dir / "alertmanager.yml").write_text(CONFIG)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Alertmanager":
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.dir / 'alertmanager.yml'}", f"--storage.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=open(self.dir / "log", "wb"), stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=30, message="alertmanager ready")
        return self

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def alerts(self, active_only: bool = True) -> list[dict]:
        params = {"active": "true", "silenced": "false", "inhibited": "false"} if active_only else {}
        return requests.get(f"{self.url}/api/v2/alerts", params=params, timeout=5).json()

    def active(self, **labels: str) -> list[dict]:
        """The active alerts whose label set includes `labels` (as `amtool alert query` shows them)."""
        return [alert for alert in self.alerts() if alert["status"]["state"] == "active"
                and all(alert["labels"].get(key) == value for key, value in labels.items())]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
