"""The OTLP logs decoder of the receivers (`receivers.otlp.signals.LOGS.parse`: the protobuf
decoder, then `salvage_log_records` record by record), for any input: a request that serialises
and re-parses, with a count of the records it left out and a reason when it left any out; or
the DecodeError the transports answer with 400 / INVALID_ARGUMENT. Nothing else (an IndexError
or ValueError would be a 500 at the HTTP receiver). And a request with poisoned records loses
exactly those."""
from __future__ import annotations

from google.protobuf.message import DecodeError
from hypothesis import assume, example, given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from receivers.otlp.signals import LOGS
from tests.fuzz.budget import budget

bodies = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=4, max_size=40)


def logs_request(texts: list[str]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "fuzz"
    scope = rl.scope_logs.add()
    for text in texts:
        scope.log_records.add(severity_number=9).body.string_value = text
    return request


def parse_or_decode_error(data: bytes) -> tuple[ExportLogsServiceRequest, int, str] | None:
    try:
        return LOGS.parse(data)
    except DecodeError as exc:
        assert str(exc)
        return None


@budget(3)
@given(data=st.one_of(st.binary(max_size=512),
                      st.builds(lambda texts: logs_request(texts).SerializeToString(), st.lists(bodies, max_size=5))
                      .flatmap(lambda wire: st.tuples(st.just(wire), st.integers(0, max(len(wire) - 1, 0)),
                                                      st.integers(0, 255)))
                      .map(lambda t: t[0][:t[1]] + bytes([t[2]]) + t[0][t[1] + 1:] if t[0] else t[0])))
@example(data=b"\x0a\x05\x12\x03\x12\x01\xff")
@example(data=b"\x0a\x7f")
def test_any_bytes_give_a_request_or_a_decode_error(data):
    result = parse_or_decode_error(data)
    if result is None:
        return
    message, refused, reason = result
    assert refused >= 0 and (refused == 0 or reason)
    assert ExportLogsServiceRequest.FromString(message.SerializeToString()) == message


@budget(2)
@given(texts=st.lists(bodies, min_size=1, max_size=8), poisoned=st.sets(st.integers(0, 7), min_size=1))
def test_poisoned_records_cost_only_themselves(texts, poisoned):
    texts = [f"{index:02d}{text}" for index, text in enumerate(texts)]
    poisoned = {index for index in poisoned if index < len(texts)} or {0}
    wire = logs_request(texts).SerializeToString()
    for index in poisoned:  # same length, so every frame around it stays valid
        marker = texts[index].encode()
        assume(wire.count(marker) == 1)
        wire = wire.replace(marker, b"\xff" + marker[1:], 1)
    message, refused, reason = LOGS.parse(wire)
    kept = [record.body.string_value for record in message.resource_logs[0].scope_logs[0].log_records]
    assert refused == len(poisoned) and "cannot be decoded" in reason
    assert kept == [text for index, text in enumerate(texts) if index not in poisoned]
