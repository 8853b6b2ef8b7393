"""Load generator: post prebuilt OTLP payloads to a daemon over HTTP or gRPC, with retries.

Retryable answers (HTTP 429/503, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED) are retried after a
short pause, as an OTLP SDK would, so every payload is accepted exactly once by the end.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import grpc

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass
class LoadResult:
    requests: int = 0
    retries: int = 0


async def post_http(url: str, payloads: list[bytes], concurrency: int = 4) -> LoadResult:
    result = LoadResult()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    async with aiohttp.ClientSession() as session:
        async def worker() -> None:
            while not queue.empty():
                payload = queue.get_nowait()
                while True:
                    async with session.post(url, data=payload,
                                            headers={"Content-Type": "application/x-protobuf"}) as response:
                        await response.read()
                        if response.status == 200:
                            result.requests += 1
                            break
                        if response.status not in (429, 503):
                            raise RuntimeError(f"HTTP {response.status}")
                    result.retries += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


async def post_grpc(target: str, payloads: list[bytes], concurrency: int = 4,
                    rate: float | None = None, spans_per_payload: float = 1.0) -> LoadResult:
    """Send every payload once (retrying refusals); `rate` (spans/s) paces an open-loop offer."""
    result = LoadResult()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in payloads:
        queue.put_nowait(payload)
    loop = asyncio.get_running_loop()
    started, sent = loop.time(), 0

    async def pace() -> None:
        nonlocal sent
        if rate:
            sent += 1
            due = started + sent * spans_per_payload / rate
            await asyncio.sleep(max(0.0, due - loop.time()))

    async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        export = channel.unary_unary(EXPORT)

        async def worker() -> None:
            while not queue.empty():
                payload = queue.get_nowait()
                await pace()
                while True:
                    try:
                        await export(payload, timeout=30)
                        result.requests += 1
                        break
                    except grpc.aio.AioRpcError as error:
                        if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                            raise
                    result.retries += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result
