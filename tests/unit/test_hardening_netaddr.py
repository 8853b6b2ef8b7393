"""Addresses: port range, which client reaches which listener, which servers collide (issue 9)."""
from __future__ import annotations

import socket

import pytest

from pipeline.netaddr import same_bind, same_listener, split_host_port, target_host_port


@pytest.mark.parametrize("endpoint, parsed", [
    ("localhost:4317", ("localhost", 4317)), (":4317", ("0.0.0.0", 4317)), ("[::1]:4317", ("::1", 4317)),
    ("0.0.0.0:0", ("0.0.0.0", 0)), ("h:65535", ("h", 65535)),
])
def test_split_host_port(endpoint, parsed):
    assert split_host_port(endpoint) == parsed


@pytest.mark.parametrize("endpoint", ["localhost:65536", "localhost:99999", "localhost", "localhost:", "", "h:-1"])
def test_split_host_port_refuses(endpoint):
    with pytest.raises(ValueError, match="invalid endpoint"):
        split_host_port(endpoint)


@pytest.mark.parametrize("value, target", [
    ("tempo:4317", ("tempo", 4317)), ("http://localhost:4318", ("localhost", 4318)),
    ("https://collector.example/v1/traces", ("collector.example", 443)), ("http://[::1]:4318/x", ("::1", 4318)),
    ("not an address", None),
])
def test_target_host_port(value, target):
    assert target_host_port(value) == target


@pytest.mark.parametrize("client, server, loops", [
    (("localhost", 4317), ("0.0.0.0", 4317), True),
    (("127.0.0.1", 4317), ("localhost", 4317), True),
    (("::1", 4317), ("::", 4317), True),
    (("0.0.0.0", 4317), ("127.0.0.1", 4317), True),
    ((socket.gethostname(), 4317), ("0.0.0.0", 4317), True),
    (("tempo", 4317), ("0.0.0.0", 4317), False),
    (("localhost", 4317), ("localhost", 4318), False),
    (("localhost", 0), ("localhost", 0), False),       # port 0: the kernel picks one
    (("10.1.2.3", 4317), ("127.0.0.1", 4317), False),
])
def test_same_listener(client, server, loops):
    assert same_listener(client, server) is loops


@pytest.mark.parametrize("one, other, clash", [
    (("localhost", 13133), ("127.0.0.1", 13133), True),
    (("0.0.0.0", 13133), ("10.1.2.3", 13133), True),
    (("10.1.2.3", 13133), ("10.1.2.4", 13133), False),
    (("localhost", 13133), ("localhost", 13134), False),
])
def test_same_bind(one, other, clash):
    assert same_bind(one, other) is clash
