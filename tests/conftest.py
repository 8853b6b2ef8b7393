import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (tests/fuzz/): a fixed seed and a small budget by default, so the suite
# stays fast and a failure reproduces; `make fuzz` (HYPOTHESIS_PROFILE=fuzz) runs many more,
# with a fresh seed each run. Tests scale `max_examples` by their cost (tests/fuzz/budget.py).
_FUZZ_SETTINGS = dict(deadline=None, database=None, print_blob=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=40, derandomize=True, **_FUZZ_SETTINGS)
settings.register_profile("fuzz", max_examples=1000, **_FUZZ_SETTINGS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# The modules that take longest (--durations), in that order: under `-n N` they start first, so
# no worker is left running one of them alone at the end. Unit tests, short, come last.
HEAVIEST = ("tests/integration/test_config_cli.py", "tests/integration/test_kafka_real.py",
            "tests/integration/test_kafka_exporter.py", "tests/integration/test_clickhouse_exporter.py",
            "tests/integration/test_triggers_daemon.py", "tests/integration/test_hardening_config.py",
            "tests/integration/test_clickhouse_retry_dedup.py", "tests/fuzz/test_fuzz_decoders.py",
            "tests/integration/test_clients_logfire.py", "tests/integration/test_jaeger_backend.py",
            "tests/integration/test_hardening_bind.py", "tests/integration/test_clients_adk.py",
            "tests/integration/test_route_matrix.py", "tests/integration/test_open_api_refused.py")


def _module_rank(nodeid: str) -> int:
    module = nodeid.split("::", 1)[0]
    if module in HEAVIEST:
        return HEAVIEST.index(module)
    return len(HEAVIEST) + (1 if module.startswith("tests/unit/") else 0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the heaviest modules first (a stable sort: each module keeps its own order).
    Every worker sorts alike, as xdist requires; a plain `pytest` run keeps the file order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: _module_rank(item.nodeid))


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`-n N` (`make test`): a worker runs whole modules, in the order collected above, so a
    module's fixtures (its daemon, its Prometheus, ...) start once, not once per worker."""
    if config.getoption("dist") not in ("load", "loadscope"):
        return None  # another --dist asked for by name: xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False
    return ModuleScheduling(config, log)


def require_binary(name: str) -> str:
    """Path of a binary the test needs; under CI a missing one is a failure, not a skip."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (make test installs it)")
        pytest.skip(f"{name} is not installed; run `make test` to install it")
    return path


def require_kafka() -> None:
    """The Apache Kafka jars and Java (testkit/kafka_broker.py); under CI missing ones are a failure."""
    from testkit.kafka_broker import java_binary, kafka_classpath

    try:
        java_binary(), kafka_classpath()
    except FileNotFoundError as missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (make test installs it)")
        pytest.skip(str(missing))


@pytest.fixture(scope="session")
def kafka_session_broker():
    """One real Apache Kafka broker (a KRaft node, testkit/kafka_broker.py) for the whole run, or
    for each xdist worker that runs a Kafka test (tests reset and bounce it, so workers never
    share one): the JVM starts once. Tests use `kafka_broker`, which cleans up after each."""
    require_kafka()
    from testkit.kafka_broker import KafkaBroker

    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_broker(kafka_session_broker):
    """The run's Kafka broker for one test. Afterwards it is thawed or started again if the test
    left it paused or down, and the topics and consumer groups the test made are deleted, so
    the next test finds a broker as new as a fresh one."""
    yield kafka_session_broker
    kafka_session_broker.reset()


@pytest.fixture
def clickhouse_http(tmp_path):
    """TEST CODE: a ClickHouse HTTP endpoint backed by chDB (testkit/clickhouse_http.py) on a free port.

    `.url` for the exporter's `endpoint`; `.stop()` / `.start()` for outages (same port and data
    directory); `.freeze()` / `.thaw()` to make it hang; `.inject(code, name)` for server errors.
    """
    from testkit.clickhouse_http import ClickHouseHTTP

    server = ClickHouseHTTP(tmp_path / "clickhouse")
    try:  # a start that times out is stopped too: its process must not outlive the test
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def alertmanager():
    """A real Prometheus Alertmanager (testkit/alertmanager.py) on a free loopback port, stopped after the test."""
    from testkit.alertmanager import Alertmanager

    am = Alertmanager(require_binary("prometheus-alertmanager"))
    try:
        yield am.start()
    finally:
        am.stop()


@pytest.fixture(scope="session")
def jaeger_binary() -> str:
    """The Jaeger v2 binary `make test` builds into .cache/jaeger/ (testkit/jaeger.py)."""
    from testkit.jaeger import JAEGER_BINARY

    return require_binary(str(JAEGER_BINARY))


@pytest.fixture(scope="session")
def jaeger(jaeger_binary, tmp_path_factory):
    """Jaeger v2 (testkit/jaeger.py), the real OTLP backend: one per test run, so tests name their
    own services and trace ids. A test that freezes it (`pause()`) resumes it before it ends."""
    from testkit.jaeger import Jaeger

    with Jaeger(jaeger_binary, tmp_path_factory.mktemp("jaeger")) as running:
        yield running


@pytest.fixture(scope="session")
def client_stack(tmp_path_factory):
    """One daemon and one fake OpenAI server (tests/clients/kit.py) for every real agent client
    family of tests/integration/test_clients_*.py: each run has a service name of its own."""
    from tests.clients.kit import client_stack as stack

    yield from stack(tmp_path_factory)
