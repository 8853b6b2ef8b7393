"""Network addresses as otelcol writes them, and the errors of binding them.

- `host:port` endpoints (`localhost:4317`, `:4317`, `[::1]:4317`), the port in 0..65535
  (0 asks the kernel for a free one);
- `target_host_port` reads where a client goes, from `host:port` or an `http(s)://` URL;
- `same_listener` tells whether a client aimed at one address reaches a server bound to
  another on this machine (localhost, 127.0.0.1, ::1, 0.0.0.0 and :: are one machine);
- `BindError` is what a server raises when it cannot listen; the service turns it into one
  line naming the config key and the environment variable that moves it.
"""
from __future__ import annotations

import errno
import os
import socket
from functools import cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

MAX_PORT = 65535
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


def split_host_port(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid endpoint {endpoint!r}: expected host:port")
    if int(port) > MAX_PORT:
        raise ValueError(f"invalid endpoint {endpoint!r}: port {int(port)} is out of range 0-{MAX_PORT}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def validate_endpoint(endpoint: str) -> str:
    split_host_port(endpoint)
    return endpoint


Endpoint = Annotated[str, AfterValidator(validate_endpoint)]


def validate_http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"endpoint {url!r} must start with http:// or https://")
    return url


HttpUrl = Annotated[str, AfterValidator(validate_http_url)]


def target_host_port(value: str) -> tuple[str, int] | None:
    """Where a client configured with `value` connects, or None if it names no host and port."""
    text = value.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            return None
        return (parts.hostname or "", port) if port is not None else None
    try:
        return split_host_port(text)
    except ValueError:
        return None


@cache
def _own_names() -> frozenset[str]:
    """This machine's own host names: a client aimed at them reaches a wildcard listener."""
    names = {socket.gethostname().lower()}
    try:
        names.add(socket.getfqdn().lower())
    except OSError:  # no resolver: the plain host name is enough
        pass
    return frozenset(names)


def _is_local(host: str, by_name: bool = True) -> bool:
    """Loopback or wildcard; with `by_name`, also this machine's own host name."""
    host = host.lower()
    if host in LOOPBACK_HOSTS or host in WILDCARD_HOSTS or host.startswith("127."):
        return True
    return by_name and host in _own_names()


def same_listener(client: tuple[str, int], server: tuple[str, int]) -> bool:
    """Would a client connecting to `client` reach a server listening on `server` here?"""
    (client_host, client_port), (server_host, server_port) = client, server
    if client_port != server_port or server_port == 0:
        return False
    client_host, server_host = client_host.lower(), server_host.lower()
    if client_host == server_host:
        return True
    if server_host in WILDCARD_HOSTS:
        return _is_local(client_host)
    return _is_local(client_host) and _is_local(server_host)


def same_bind(one: tuple[str, int], other: tuple[str, int]) -> bool:
    """Would two servers listening on these addresses collide on this machine?"""
    if one[1] != other[1] or one[1] == 0:
        return False
    hosts = {one[0].lower(), other[0].lower()}
    return len(hosts) == 1 or bool(hosts & WILDCARD_HOSTS) or all(_is_local(h, by_name=False) for h in hosts)


class BindError(OSError):
    """A server could not listen on `endpoint` (as configured); `reason` says why."""

    def __init__(self, endpoint: str, reason: str, what: str = "") -> None:
        super().__init__(f"cannot listen on {endpoint}{f' for {what}' if what else ''}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


def bind_reason(exc: BaseException) -> str:
    """A short reason for a failed bind: `address already in use`, not the errno repr."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host: {exc.strerror}"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def probe_bind(endpoint: str) -> None:
    """Raise BindError if `endpoint` cannot be listened on right now.

    For servers (gRPC) whose own bind failure says neither which address nor why."""
    host, port = split_host_port(endpoint)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise BindError(endpoint, bind_reason(exc)) from None
    failures = [failure for info in infos if (failure := _try_bind(*info)) is not None]
    # A taken address is an error even if another of the host's addresses is free (`localhost`
    # is 127.0.0.1 and ::1); one the machine lacks (no IPv6) is not, unless all are missing.
    taken = next((f for f in failures if f.errno == errno.EADDRINUSE), None)
    if taken is not None or (failures and len(failures) == len(infos)):
        raise BindError(endpoint, bind_reason(taken or failures[0]))


def _try_bind(family: int, kind: int, proto: int, _: str, address: tuple) -> OSError | None:
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc
    return None
