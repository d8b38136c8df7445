#!/usr/bin/env bash
# Installs what the build, the tests and the benchmarks need on a fresh Debian machine that has
# Rust (cargo), a Java 17 JDK and Maven. Idempotent: installs only what is missing.
set -euo pipefail

need_apt=()
command -v gcc >/dev/null || need_apt+=(gcc)
command -v make >/dev/null || need_apt+=(make)
command -v fio >/dev/null || need_apt+=(fio)
command -v python3 >/dev/null || need_apt+=(python3)
command -v mvn >/dev/null || need_apt+=(maven)
command -v javac >/dev/null || need_apt+=(openjdk-17-jdk-headless)

if ((${#need_apt[@]})); then
  echo "install-deps: installing ${need_apt[*]}"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "install-deps: cargo (Rust) is required" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
javac -version 2>&1 | grep -qE 'javac (1[7-9]|2[0-9])' || { echo "install-deps: a JDK 17 or newer is required" >&2; exit 1; }

# The ZooKeeper server the election tests start (scripts/zookeeper.sh): its classpath, resolved
# from Maven Central once into target/zookeeper/classpath.txt.
bash "$(dirname "${BASH_SOURCE[0]}")/zookeeper.sh" classpath
