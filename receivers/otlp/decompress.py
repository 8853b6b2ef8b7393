"""Bounded decompression of request bodies: a bomb is stopped at the cap, not after inflating.

The cap applies to the decompressed size (the spec's rule); the compressed input is bounded
by the same cap. gzip and deflate use zlib's `max_length`; zstd reads through a bounded
stream reader.
"""
from __future__ import annotations

import io
import zlib
from typing import Protocol

GZIP_WBITS = 16 + zlib.MAX_WBITS


class TooLarge(Exception):
    pass


class UnsupportedEncoding(Exception):
    pass


class CorruptBody(Exception):
    pass


class Decoder(Protocol):
    def feed(self, chunk: bytes) -> None: ...
    def finish(self) -> bytes: ...


class _Identity:
    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.parts: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise TooLarge(f"request body is larger than the limit of {self.limit} bytes")
        self.parts.append(chunk)

    def finish(self) -> bytes:
        return b"".join(self.parts)


class _Zlib:
    def __init__(self, limit: int, wbits: int) -> None:
        self.limit, self.size, self.raw = limit, 0, 0
        self.parts: list[bytes] = []
        self.wbits = wbits
        self.inflater = zlib.decompressobj(wbits)

    def feed(self, chunk: bytes) -> None:
        self.raw += len(chunk)
        if self.raw > self.limit:
            raise TooLarge(f"compressed request body is larger than the limit of {self.limit} bytes")
        while chunk:
            if self.inflater.eof and self.wbits == GZIP_WBITS:
                # A gzip body may hold several members (RFC 1952 §2.2); each inflates in turn.
                self.inflater = zlib.decompressobj(self.wbits)
            try:
                out = self.inflater.decompress(chunk, self.limit - self.size + 1)
            except zlib.error as exc:
                raise CorruptBody(f"invalid compressed body: {exc}") from exc
            self._add(out)
            if self.inflater.unconsumed_tail:
                raise TooLarge(f"decompressed request body exceeds the limit of {self.limit} bytes")
            chunk = self.inflater.unused_data if self.inflater.eof and self.wbits == GZIP_WBITS else b""

    def _add(self, out: bytes) -> None:
        self.size += len(out)
        if self.size > self.limit:
            raise TooLarge(f"decompressed request body exceeds the limit of {self.limit} bytes")
        self.parts.append(out)

    def finish(self) -> bytes:
        try:
            self._add(self.inflater.flush())
        except zlib.error as exc:
            raise CorruptBody(f"invalid compressed body: {exc}") from exc
        if not self.inflater.eof and self.raw:
            raise CorruptBody("invalid compressed body: truncated stream")
        return b"".join(self.parts)


class _Zstd(_Identity):
    def finish(self) -> bytes:
        import zstandard

        data = super().finish()
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
        parts, size = [], 0
        try:
            while chunk := reader.read(1 << 20):
                size += len(chunk)
                if size > self.limit:
                    raise TooLarge(f"decompressed request body exceeds the limit of {self.limit} bytes")
                parts.append(chunk)
            # The reader ends quietly inside a cut-off frame; a decompressobj tells whether each
            # frame ended. Its output is the one just read, so it stays within the cap.
            while data:
                frame = zstandard.ZstdDecompressor().decompressobj()
                frame.decompress(data)
                if not frame.eof:
                    raise CorruptBody("invalid zstd body: truncated stream")
                data = frame.unused_data
        except zstandard.ZstdError as exc:
            raise CorruptBody(f"invalid zstd body: {exc}") from exc
        return b"".join(parts)


def decoder_for(content_encoding: str, limit: int) -> Decoder:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return _Identity(limit)
    if encoding in ("gzip", "x-gzip"):
        return _Zlib(limit, GZIP_WBITS)
    if encoding == "deflate":
        return _Zlib(limit, zlib.MAX_WBITS)
    if encoding == "zstd":
        return _Zstd(limit)
    raise UnsupportedEncoding(f"unsupported Content-Encoding {content_encoding!r} (supported: gzip, deflate, zstd)")
