# kahadb-rs build, test and benchmark entry points.
#   make run     the main job (for now: the journal demo; the broker comes with the store)
#   make test    everything: formatting, lints, Rust tests, the header check, C tests, Java tests
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

.PHONY: all build run demo test test-rust test-c test-java lint fmt-check clippy java \
        bench bench-journal bench-broker deps clean

all: build

deps:
	@bash scripts/install-deps.sh

build:
	$(CARGO) build --release --all-targets

run: build
	$(NATIVE_DIR)/kahadb-journal demo data/journal-demo

test: deps fmt-check clippy test-rust test-c test-java
	@echo "make test: all suites passed"

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets --release -- -D warnings

test-rust: build
	$(CARGO) test --release

$(CTEST_DIR)/%: tests/c/%.c include/kahadb.h build
	@mkdir -p $(CTEST_DIR)
	gcc $(CFLAGS_TEST) $< -o $@ -L$(NATIVE_DIR) -lkahadb -Wl,-rpath,$(NATIVE_DIR) -lpthread

test-c: $(CTEST_DIR)/journal_test $(CTEST_DIR)/store_test
	@rm -rf $(CTEST_DIR)/scratch && mkdir -p $(CTEST_DIR)/scratch
	$(CTEST_DIR)/journal_test $(CTEST_DIR)/scratch
	$(CTEST_DIR)/store_test $(CTEST_DIR)/scratch

java: build
	cd java && $(MVN) -q package -DskipTests -Dkahadb.native.dir=$(NATIVE_DIR)

test-java: build
	cd java && $(MVN) verify -Dkahadb.native.dir=$(NATIVE_DIR)

bench: bench-journal bench-broker

bench-journal: deps build
	@bash bench/journal.sh

bench-broker: deps build
	@bash bench/broker.sh

clean:
	$(CARGO) clean
	cd java && $(MVN) -q clean
