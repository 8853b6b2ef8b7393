"""TEST CODE: what the test kit's server subprocesses (Jaeger, the Kafka broker) share."""
from __future__ import annotations

import signal
import subprocess


class Pausable:
    """A server run as `self.proc`: `pause()` freezes it (SIGSTOP: it accepts and answers
    nothing, as a hung backend would) until `resume()` (SIGCONT)."""

    proc: subprocess.Popen | None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
