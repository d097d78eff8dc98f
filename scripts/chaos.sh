#!/usr/bin/env bash
# Randomized fault schedule (kill -9, SIGSTOP, SIGTERM, two nodes down) against a three-node
# cluster on this machine under an idempotent acks=all Kafka load, then checks that nothing
# acknowledged was lost, duplicated or reordered. See scripts/chaos.py for the faults.
#
#   scripts/chaos.sh                      # 10 minutes, random seed, debug build
#   scripts/chaos.sh --seconds 60 --seed 7
#   WEIR_PROFILE=release scripts/chaos.sh # the release build
#   WEIR_BIN=/path/to/weir scripts/chaos.sh # a binary built elsewhere (no build here)
#
# Needs confluent-kafka (scripts/test.sh installs it). Logs stay in the printed workdir on a
# failure; the last line printed is a JSON summary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${WEIR_BIN:-}" ]; then
  exec python3 scripts/chaos.py --bin "$WEIR_BIN" "$@"
fi
profile=${WEIR_PROFILE:-debug}
if [ "$profile" = release ]; then
  cargo build --locked --release --bin weir
else
  cargo build --locked --bin weir
fi
exec python3 scripts/chaos.py --bin "${CARGO_TARGET_DIR:-target}/$profile/weir" "$@"
