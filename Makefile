# Two commands: `make run` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config/default.yaml

.PHONY: run test check validate bench docs system-deps clean fuzz kafka clients

$(STAMP): pyproject.toml agentlib/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet -e agentlib  # the agent-side library (sutazai_agent), its tests and examples/
	touch $(STAMP)

# The compiled hot path (native/, Rust through PyO3, docs/native.md): built by maturin with the
# machine's cargo into native/target (ignored; a second build is incremental) and installed into
# the venv; rebuilt only when the crate changes. Cargo.lock pins the crates, so a machine that has
# fetched them once builds offline.
CARGO        ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
NATIVE       := $(VENV)/.native-stamp
NATIVE_SRC   := native/Cargo.toml native/Cargo.lock native/pyproject.toml native/agentdbg_native.pyi $(wildcard native/src/*.rs)

$(NATIVE): $(STAMP) $(NATIVE_SRC)
	@[ -x "$(CARGO)" ] || { echo "native/ needs Rust's cargo: install it with rustup (https://rustup.rs) or Debian's package (apt-get install cargo)"; exit 1; }
	$(BIN)/pip install --quiet 'maturin>=1.16,<2'
	rm -rf .cache/native && PATH="$(dir $(CARGO)):$$PATH" $(BIN)/maturin build --release --quiet -m native/Cargo.toml -o .cache/native
	$(BIN)/pip install --quiet --force-reinstall --no-deps .cache/native/agentdbg_native-*.whl
	touch $@

# Debian packages the integration tests drive: prometheus (with promtool), alertmanager, openssl,
# chromium (the explorer's browser tests, driven by Playwright with executable_path; no browser download).
system-deps:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Go builds into the ignored cache, from the Go module proxy with the machine's Go (no system
# GOPATH touched): Jaeger v2, the OTLP backend the otlp/otlphttp exporter tests read traces
# back from (`make test`), and the OpenTelemetry Collector the benchmarks run beside agentdbg
# (`make bench`, benchmarks/otelcol/). Jaeger's go.mod has a replace directive, which
# `go install pkg@version` refuses, so its module source is copied out and built in place.
GO             ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOCACHEDIR     := $(CURDIR)/.cache/go
GOENV          := GOPATH=$(GOCACHEDIR) GOMODCACHE=$(GOCACHEDIR)/pkg/mod GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
JAEGER_VERSION := v1.76.0
JAEGER         := .cache/jaeger/jaeger-$(JAEGER_VERSION)
OTELCOL        := .cache/otelcol/otelcol-bench

$(JAEGER):
	@echo "building Jaeger $(JAEGER_VERSION) (cmd/jaeger) with $(GO); several minutes the first time"
	rm -rf .cache/jaeger/src && mkdir -p .cache/jaeger
	src=$$($(GOENV) $(GO) mod download -json github.com/jaegertracing/jaeger@$(JAEGER_VERSION) \
	       | $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') && \
	cp -r "$$src" .cache/jaeger/src && chmod -R u+w .cache/jaeger/src
	cd .cache/jaeger/src && $(GOENV) $(GO) build -trimpath -o $(CURDIR)/$@.tmp ./cmd/jaeger
	mv $@.tmp $@ && rm -rf .cache/jaeger/src

$(OTELCOL): benchmarks/otelcol/go.mod benchmarks/otelcol/go.sum benchmarks/otelcol/main.go
	@echo "building the OpenTelemetry Collector of benchmarks/otelcol with $(GO)"
	mkdir -p .cache/otelcol
	cd benchmarks/otelcol && $(GOENV) $(GO) build -trimpath -o $(CURDIR)/$@ .

# Apache Kafka (a single KRaft node, testkit/kafka_broker.py) for the tests and benchmarks: the jars
# of tests/kafka/pom.xml and their dependencies from Maven Central into the ignored cache, run
# with the machine's Java 17. Skipped once the jars are there; missing java or mvn is installed
# from Debian's packages, as system-deps does.
KAFKA_LIBS  := .cache/kafka/libs
KAFKA_STAMP := $(KAFKA_LIBS)/.installed-stamp

kafka: $(KAFKA_STAMP)

$(KAFKA_STAMP): tests/kafka/pom.xml
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for Kafka:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
		|| { echo "Kafka needs java (Java 17: openjdk-17-jre-headless) and mvn (maven): install them"; exit 1; }; \
	fi
	@echo "fetching Apache Kafka's jars (tests/kafka/pom.xml) into $(KAFKA_LIBS)"
	rm -rf $(KAFKA_LIBS)
	mvn -q -B -f tests/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
		-DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	touch $@

# The real agent instrumentation families (tests/clients/, tests/integration/test_clients_*.py):
# one virtualenv per family under the ignored cache, since their pins conflict (openai-agents,
# opentelemetry-instrumentation-openai and google-adk each want their own OpenTelemetry and openai).
# Versions are pinned in tests/clients/requirements-<family>.txt; a venv is built once and rebuilt
# only when its requirements file changes. OpenLLMetry (traceloop-sdk 0.62.4): pip finds no set of
# its ~40 required instrumentations that installs together, so its file pins every package the SDK
# needs and is installed with --no-deps (tests/clients/requirements-openllmetry.txt says why).
CLIENT_FAMILIES := otel_v2 openinference langfuse logfire adk agentops openllmetry partial
CLIENT_PIP_FLAGS_openllmetry := --no-deps
CLIENT_STAMPS   := $(foreach family,$(CLIENT_FAMILIES),.cache/clients/$(family)/.installed-stamp)

clients: $(CLIENT_STAMPS)

.cache/clients/%/.installed-stamp: tests/clients/requirements-%.txt
	@echo "installing the $* client family (tests/clients/requirements-$*.txt) into .cache/clients/$*"
	rm -rf .cache/clients/$*
	$(PYTHON) -m venv .cache/clients/$*
	.cache/clients/$*/bin/pip install --quiet $(CLIENT_PIP_FLAGS_$*) -r $<
	touch $@

run: $(STAMP) $(NATIVE)
	$(BIN)/agentdbg run --config $(CONFIG)

validate: $(STAMP) $(NATIVE)
	$(BIN)/agentdbg validate --config $(CONFIG)

# The linter and the type checker on the product packages, before the tests: ruff (lint only,
# nothing is reformatted) and mypy, configured in pyproject.toml ([tool.ruff], [tool.mypy]).
PACKAGES := pipeline receivers processors connectors exporters extensions agentlib/sutazai_agent

check: $(STAMP) $(NATIVE)
	$(BIN)/ruff check $(PACKAGES)
	$(BIN)/mypy $(PACKAGES)

# $(OTELCOL): also the real OTLP logs backend of tests/integration/test_logs_otlp_backend.py.
# Four pytest-xdist workers on two cores: most tests wait on subprocesses (daemons, Kafka,
# chDB, agent clients). Each worker runs whole modules, heaviest first (tests/conftest.py).
TEST_WORKERS ?= 4

test: $(STAMP) system-deps $(JAEGER) $(OTELCOL) kafka clients check
	$(BIN)/pytest -n $(TEST_WORKERS)

# The property-based fuzz tests (tests/fuzz/) with a fresh seed and 25x the suite's budget
# (HYPOTHESIS_PROFILE=fuzz, defined in tests/conftest.py): measured at about 40 min on this
# 2-core machine under load (load average ~15); the suite's own fixed-seed run takes ~25 s.
fuzz: $(STAMP) $(NATIVE)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -p no:cacheprovider --timeout=7200 tests/fuzz

docs: $(STAMP) $(NATIVE)
	$(BIN)/python -m pipeline.reference --write README.md

bench: $(STAMP) $(NATIVE) $(OTELCOL) kafka
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) data *.egg-info
