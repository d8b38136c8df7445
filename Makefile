# kahadb-rs build, test and benchmark entry points.
#   make run     the main job: an ActiveMQ broker on tcp://127.0.0.1:61616 storing in kahadb-rs
#   make test    everything: formatting, lints, Rust tests, the header check, C tests, Java tests
#   make demo    three HA nodes and ZooKeeper: the master is killed, a slave takes over, nothing lost
#   make bench   all benchmarks (results in bench/results/)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
MVN ?= mvn -B -ntp
ROOT := $(CURDIR)
NATIVE_DIR := $(ROOT)/target/release
CTEST_DIR := $(ROOT)/target/ctest
CFLAGS_TEST := -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -I$(ROOT)/include
# make test must not rewrite the checked-in header: a stale one fails the build.
export KAHADB_CHECK_HEADER ?= 1

.PHONY: all build run demo broker-jar test test-rust test-c test-java lint fmt-check clippy java \
        bench bench-journal bench-broker bench-replication bench-failover deps clean client

all: build

deps:
	@bash scripts/install-deps.sh

build:
	$(CARGO) build --release --all-targets

# The main job: an ActiveMQ Classic broker storing in kahadb-rs, on tcp://127.0.0.1:61616 with its
# data in data/broker (RUN_ARGS: see dev.kahadb.activemq.Main). Ctrl-C or SIGTERM stop it cleanly.
# In a second terminal, `make client` sends and receives a few messages (CLIENT_ARGS="send 1000", ...).
RUNTIME_CP := java/target/runtime-classpath.txt
BROKER_JAR := java/target/kahadb-0.1.0-SNAPSHOT.jar

run: broker-jar
	@echo "java -cp $(BROKER_JAR):... dev.kahadb.activemq.Main $(RUN_ARGS)"
	@status=0; java -cp $(BROKER_JAR):$$(cat $(RUNTIME_CP)) dev.kahadb.activemq.Main $(RUN_ARGS) || status=$$?; \
	  if [ $$status -ne 130 ] && [ $$status -ne 143 ]; then exit $$status; fi

client:
	@test -f $(RUNTIME_CP) || $(MAKE) broker-jar
	java -cp $(BROKER_JAR):$$(cat $(RUNTIME_CP)) dev.kahadb.activemq.Demo $(CLIENT_ARGS)

# The failover demo: a ZooKeeper server and three HA launchers on loopback (data in
# target/demo), a JMS producer on a failover: URL, the master killed with SIGKILL, a slave taking
# over, a consumer receiving every acknowledged message, and a summary (DEMO_ARGS: --help).
demo: broker-jar
	java -cp $(BROKER_JAR):$$(cat $(RUNTIME_CP)) dev.kahadb.activemq.cluster.FailoverDemo $(DEMO_ARGS)

broker-jar: deps
	$(CARGO) build --release
	cd java && $(MVN) -q package -DskipTests -Dkahadb.native.dir=$(NATIVE_DIR)
	cd java && $(MVN) -q dependency:build-classpath -DincludeScope=runtime \
	  -Dmdep.outputFile=target/runtime-classpath.txt

test: deps fmt-check clippy test-rust test-c test-java
	@echo "make test: all suites passed"

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets --release -- -D warnings

test-rust: build
	$(CARGO) test --release

$(CTEST_DIR)/%: tests/c/%.c tests/c/test_support.h include/kahadb.h build
	@mkdir -p $(CTEST_DIR)
	gcc $(CFLAGS_TEST) $< -o $@ -L$(NATIVE_DIR) -lkahadb -Wl,-rpath,$(NATIVE_DIR) -lpthread

test-c: $(CTEST_DIR)/journal_test $(CTEST_DIR)/store_test $(CTEST_DIR)/node_test $(CTEST_DIR)/election_test
	@rm -rf $(CTEST_DIR)/scratch && mkdir -p $(CTEST_DIR)/scratch
	$(CTEST_DIR)/journal_test $(CTEST_DIR)/scratch
	$(CTEST_DIR)/store_test $(CTEST_DIR)/scratch
	$(CTEST_DIR)/node_test $(CTEST_DIR)/scratch
	$(CTEST_DIR)/election_test $(CTEST_DIR)/scratch

java: build
	cd java && $(MVN) -q package -DskipTests -Dkahadb.native.dir=$(NATIVE_DIR)

test-java: build
	cd java && $(MVN) verify -Dkahadb.native.dir=$(NATIVE_DIR)

bench: bench-journal bench-broker bench-replication bench-failover

bench-journal: deps build
	@bash bench/journal.sh

bench-broker: deps build
	@bash bench/broker.sh

bench-replication: deps build
	@bash bench/replication.sh

bench-failover: deps build
	@bash bench/failover.sh

clean:
	$(CARGO) clean
	cd java && $(MVN) -q clean
