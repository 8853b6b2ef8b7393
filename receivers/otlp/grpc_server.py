"""OTLP/gRPC transport: `<signal>Service/Export` on a grpc.aio server.

Requests arrive as raw bytes (no deserialiser registered) so the batch keeps its wire bytes.
gRPC itself decompresses gzip and enforces `max_recv_msg_size_mib` on the decompressed
message (RESOURCE_EXHAUSTED). Refusals carry a google.rpc.Status with RetryInfo in
`grpc-status-details-bin`.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

from pipeline.auth import Unauthenticated
from pipeline.component import Consumer, Signal
from pipeline.netaddr import BindError, probe_bind, split_host_port
from receivers.otlp.config import GrpcConfig
from receivers.otlp.ingest import Ingest, Outcome
from receivers.otlp.signals import SPECS, SignalSpec
from receivers.otlp.status import response_of, status_of

GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


class GrpcTransport:
    def __init__(self, config: GrpcConfig, ingests: dict[Signal, Ingest],
                 consumer_of: Callable[[Signal], Consumer | None]) -> None:
        self.config = config
        self.ingests = ingests
        self.consumer_of = consumer_of
        self.authenticator: Any = None  # set by the receiver when `auth` is configured
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        limit = self.config.max_recv_msg_size_mib * 1024 * 1024
        self.server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", int(self.config.reuse_port)),
        ])
        for spec in SPECS.values():
            handler = grpc.unary_unary_rpc_method_handler(self._handler(spec))
            self.server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(spec.service, {"Export": handler}),))
        host, port = split_host_port(self.config.endpoint)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # gRPC's own failure names no reason (and logs to stderr): check the address first (not
        # when sharing it: the other workers hold it; a holder without SO_REUSEPORT still fails below).
        if not self.config.reuse_port:
            probe_bind(self.config.endpoint)
        try:
            if self.config.tls is not None:
                bound = self.server.add_secure_port(address, self.config.tls.grpc_credentials())
            else:
                bound = self.server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise BindError(self.config.endpoint, "the address is taken or not available", "OTLP/gRPC")
        await self.server.start()

    async def stop(self, grace: float = 5.0) -> None:
        if self.server is not None:
            await self.server.stop(grace)
            self.server = None

    def _handler(self, spec: SignalSpec) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
        ingest = self.ingests[spec.signal]

        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if self.authenticator:
                try:
                    await self.authenticator.authenticate(dict(context.invocation_metadata() or ()))
                except Unauthenticated as exc:
                    await _abort(context, ingest.reject_request("unauthenticated", Outcome.unauthenticated(exc.reason)))
            try:
                message, refused, why = spec.parse(request)
            except DecodeError as exc:
                outcome = ingest.reject_request("malformed", Outcome.bad_request(f"invalid protobuf: {exc}"))
                await _abort(context, outcome)
            outcome = await ingest.push(self.consumer_of(spec.signal), message, request, (refused, why))
            if outcome.code != 0:
                await _abort(context, outcome)
            return response_of(spec, outcome).SerializeToString()

        return export


async def _abort(context: grpc.aio.ServicerContext, outcome: Outcome) -> None:
    status = status_of(outcome)
    await context.abort(GRPC_CODES[outcome.code], outcome.message,
                        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),))

