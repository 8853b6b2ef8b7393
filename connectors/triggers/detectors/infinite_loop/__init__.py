"""infinite_loop: an agent repeating the same tool call, or a process pegging the CPU.

Two unrelated checks share the one `infinite_loop:` block and the one event kind (the wire
contract lists `infinite_loop` once); their subjects tell them apart. Each lives in its own
module with the docstring that says what it fires on and what it lets go of:
- `tool_calls.py` (`RepeatedToolCalls`): the same tool with the same arguments, at least
  `repeat_threshold` times in one session within `window`; subject service, agent, tool, session.
- `cpu.py` (`SustainedCpu`): a process's CPU over `cpu_threshold` for `cpu_sustain`, from OTLP
  metrics; subject service.
This detector only routes: spans to the first, metrics to the second, and evaluates both.
"""
from __future__ import annotations

from connectors.triggers.checkpoint_state import Part
from connectors.triggers.detectors.base import Detector
from connectors.triggers.detectors.infinite_loop.config import InfiniteLoopConfig
from connectors.triggers.detectors.infinite_loop.cpu import SustainedCpu
from connectors.triggers.detectors.infinite_loop.tool_calls import RepeatedToolCalls
from connectors.triggers.event import Observation
from pipeline.pdata.metrics import Metrics
from pipeline.pdata.traces import Traces

__all__ = ["InfiniteLoopConfig", "InfiniteLoopDetector"]


class InfiniteLoopDetector(Detector[InfiniteLoopConfig]):
    kind = "infinite_loop"
    attribute_keys = RepeatedToolCalls.attribute_keys

    def __init__(self, config: InfiniteLoopConfig) -> None:
        super().__init__(config)
        self.tool_calls = RepeatedToolCalls(config)
        self.cpu = SustainedCpu(config)
        self._share_drops()

    def _share_drops(self) -> None:
        """Both halves count their evictions into this detector's `drops`, which the connector
        reads and clears."""
        self.tool_calls.drops = self.cpu.drops = self.drops

    def observe(self, batch: Traces) -> None:
        self.tool_calls.observe(batch)

    def observe_metrics(self, batch: Metrics) -> None:
        self.cpu.observe_metrics(batch)

    def evaluate(self, now: float) -> list[Observation]:
        return self.tool_calls.evaluate(now) + self.cpu.evaluate(now)

    def state_parts(self) -> dict[str, Part]:
        """The CPU runs. The repeated-call counts are keyed by a hash that differs from process to
        process (Python's string hashing), so they are not checkpointed: they start empty."""
        return self.cpu.state_parts()

    def take_state_from(self, previous: Detector) -> None:
        """Each half keeps its windowed state and takes the new config's derived values."""
        if isinstance(previous, InfiniteLoopDetector):
            self.tool_calls.take_state_from(previous.tool_calls)
            self.cpu.take_state_from(previous.cpu)
        self._share_drops()
