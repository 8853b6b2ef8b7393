# Two commands: `make run` and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config/default.yaml

.PHONY: run test validate bench docs system-deps clean fuzz kafka

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

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

# Apache Kafka (a single KRaft node, tests/kafka_broker.py) for the tests and benchmarks: the jars
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

run: $(STAMP)
	$(BIN)/agentdbg run --config $(CONFIG)

validate: $(STAMP)
	$(BIN)/agentdbg validate --config $(CONFIG)

test: $(STAMP) system-deps kafka
	$(BIN)/pytest

# The property-based fuzz tests (tests/fuzz/) with a fresh seed and 25x the suite's budget
# (HYPOTHESIS_PROFILE=fuzz, defined in tests/conftest.py): measured at about 40 min on this
# 2-core machine under load (load average ~15); the suite's own fixed-seed run takes ~25 s.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -p no:cacheprovider --timeout=7200 tests/fuzz

docs: $(STAMP)
	$(BIN)/python -m pipeline.reference --write README.md

bench: $(STAMP) kafka
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) data *.egg-info
