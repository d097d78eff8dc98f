#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + property + end-to-end tests.
# This is the command README.md gives and the one .ci/run calls. It installs what it needs.
set -uo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
status=()
fail=0

step() {
  local name=$1; shift
  echo "==> $name: $*"
  if "$@"; then status+=("$name ok"); else status+=("$name FAILED"); fail=1; fi
}

# Toolchain pieces (rustup is assumed, as on a fresh Debian machine with rustup).
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# Kafka clients for the protocol tests (tests/e2e/kafka.rs runs tests/kafka/*.py): Debian's
# kcat (librdkafka 2.0.2), confluent-kafka (a current librdkafka) and kafka-python.
if ! command -v kcat >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null && \
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
fi
# RocksDB for the state stores: the rocksdb crate links Debian's librocksdb-dev (paths in
# .cargo/config.toml) and its bindgen step needs libclang.
if ! dpkg -s librocksdb-dev libclang-dev >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null && \
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librocksdb-dev libclang-dev >/dev/null
fi
# The web console's browser tests (tests/browser) drive Debian's headless Chromium through
# chromedriver (WebDriver).
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null && \
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! python3 -c 'import confluent_kafka, kafka' >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq >/dev/null && \
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  fi
  pkgs=("confluent-kafka>=2.3" "kafka-python>=2.0")
  python3 -m pip install --quiet "${pkgs[@]}" 2>/dev/null || \
    python3 -m pip install --quiet --break-system-packages "${pkgs[@]}"
fi

# UDF guests in other languages (scripts/build-guests.sh): componentize-py goes into a venv
# (Debian needs python3-venv for that), componentize-js comes from npm (`npm ci`).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null && \
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null && \
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

step fmt cargo fmt --all -- --check
# Guest components (examples/, their own workspace, plus the Python and JavaScript UDFs) →
# target/guests/*.wasm, which the engine's tests load; then the guest SDKs' own unit tests
# (host target).
step guests scripts/build-guests.sh
step guest-sdk cargo test --manifest-path guest-sdk/Cargo.toml --locked --quiet
step guest-sdk-udf cargo test --manifest-path guest-sdk/udf/Cargo.toml --locked --quiet
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings
# One profile (dev) for everything: clippy's check build shares nothing with it, but the
# test build below compiles each dependency once and the e2e tests reuse the same binary.
test_log=$(mktemp)
step tests bash -c "cargo test --workspace --locked 2>&1 | tee '$test_log'; exit \${PIPESTATUS[0]}"
passed=$(grep -Eo '[0-9]+ passed' "$test_log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$test_log" | awk '{s+=$1} END {print s+0}')
rm -f "$test_log"

elapsed=$(( $(date +%s) - start ))
summary=$(printf '%s, ' "${status[@]}"); summary=${summary%, }
if [ $fail -eq 0 ]; then
  echo "WEIR TEST SUMMARY: PASS — $summary; $passed tests passed, $failed failed; ${elapsed}s"
else
  echo "WEIR TEST SUMMARY: FAIL — $summary; $passed tests passed, $failed failed; ${elapsed}s"
fi
exit $fail
