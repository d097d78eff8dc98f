#!/usr/bin/env bash
# A/B of two `weir` binaries as single nodes (no cluster flags), for BENCHMARKS.md's "single
# node within 5%" check: the same librdkafka load (../shared/tools/kbench.py, 1 KiB records,
# partition 0, acks=all, then a consume of them) against A and B in turn, ROUNDS times, each
# on a fresh data directory, so both see the same machine state.
#
#   scripts/bench_single_ab.sh OLD_BIN NEW_BIN [ROUNDS]       (N=300000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1
B=$2
ROUNDS=${3:-3}
K=${KBENCH:-../shared/tools/kbench.py}
N=${N:-300000}
work=$(mktemp -d /tmp/weir-bench-ab.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

run() { # label binary
  rm -rf "$work/d"
  "$2" serve --data-dir "$work/d" --http 127.0.0.1:18580 --kafka 127.0.0.1:19580 \
    >"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fsS http://127.0.0.1:18580/health >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS -XPOST http://127.0.0.1:18580/v1/topics -H 'content-type: application/json' \
    -d '{"name":"ab","partitions":1}' >/dev/null
  p=$(python3 "$K" produce --broker 127.0.0.1:19580 --topic ab --num "$N" --acks all \
    --seconds 120 | tail -1)
  # Write back what the produce left dirty, so the consume does not race the flusher.
  sync
  c=$(python3 "$K" consume --broker 127.0.0.1:19580 --topic ab --num "$N" --seconds 120 |
    tail -1)
  echo "$1 produce: $p"
  echo "$1 consume: $c"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  pid=
}

echo "== A=$A B=$B, $N records of 1 KiB, $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
  run "round $r A" "$A"
  run "round $r B" "$B"
done
