import os
import shutil

import pytest


def require_binary(name: str) -> str:
    """Path of a binary the test needs; under CI a missing one is a failure, not a skip."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (make test installs it)")
        pytest.skip(f"{name} is not installed; run `make test` to install it")
    return path


@pytest.fixture
def kafka_broker():
    """A Tansu Kafka broker on a free loopback port (tests/kafka_broker.py), stopped after the test."""
    from tests.kafka_broker import KafkaBroker

    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()
