"""The ceiling: a bare grpc.aio OTLP trace handler that only parses each request.

It does what any OTLP receiver must do at the least — take the gRPC request and parse
the protobuf — on the same event loop (uvloop) and options as the daemon, and nothing
else. Benchmarks drive it with the same load as the daemon and report the daemon's
throughput as a ratio of this one.

    python -m benchmarks.ceiling --port 4317
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                       ExportTraceServiceResponse)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EMPTY = ExportTraceServiceResponse().SerializeToString()


async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    ExportTraceServiceRequest.FromString(request)
    return EMPTY


async def serve(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    handler = grpc.unary_unary_rpc_method_handler(export)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
