#!/usr/bin/env bash
# Replica moves for BENCHMARKS.md ("Cluster: rebalance and decommission"), in one run on this
# machine: three nodes started with --replication-throttle-bytes $THROTTLE, a topic of 6
# partitions with replication factor 3 filled with N records of 1 KiB (confluent-kafka,
# spread over the partitions); then
#   1. a fourth node joins *without* a throttle: the controller moves replicas onto it until
#      every node holds within one of the others (the copies it makes are unthrottled);
#   2. `weir cluster decommission 4 --wait`: its replicas move back to nodes 1–3, whose
#      copies are throttled at $THROTTLE bytes/s each.
# Each prints the bytes copied (the moved partitions' size on disk), the time from the
# request until nothing is moving, and the rate. Three or four nodes share this machine's
# cores: compare the two cases, not other machines.
#
#   WEIR_BIN=target/release/weir N=200000 THROTTLE=10000000 scripts/bench_rebalance.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEIR_BIN:-target/release/weir}
N=${N:-200000}
THROTTLE=${THROTTLE:-10000000}
work=$(mktemp -d /tmp/weir-bench-rebalance.XXXXXX)
pids=()
cleanup() {
  exec 2>/dev/null
  for p in "${pids[@]}"; do kill -9 "$p" || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_http() {
  for _ in $(seq 1 300); do
    curl -fsS "http://$1/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

peers="1@127.0.0.1:19481,2@127.0.0.1:19482,3@127.0.0.1:19483"
start_node() { # id [extra flags…]
  local id=$1; shift
  "$BIN" serve --node-id "$id" --data-dir "$work/n$id" --http "127.0.0.1:1838$id" \
    --kafka "127.0.0.1:1938$id" --cluster-listen "127.0.0.1:1948$id" "$@" \
    >>"$work/n$id.log" 2>&1 &
  pids[$id]=$!
}
status() { curl -fsS "http://127.0.0.1:18381/v1/cluster"; }
# Waits until no partition is moving, none under-replicated, and node $1 holds (at least,
# or with "max" at most) $2 replicas; prints the seconds since $3.
settle() {
  while :; do
    if status | python3 -c '
import json, sys
v = json.load(sys.stdin)
node, want, how = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held = next((n.get("replicas") or 0 for n in v["nodes"] if n["id"] == node), 0)
retired = node in v.get("retired", [])
ok = not v["reassigning"] and not v["under_replicated"] and (
    (how == "min" and held >= want) or (how == "max" and (held <= want or retired)))
sys.exit(0 if ok else 1)' "$1" "$2" "$4"; then
      break
    fi
    sleep 0.1
  done
  python3 -c "import time; print(f'{time.time() - $3:.2f}')"
}

echo "== binary $BIN ($(git rev-parse --short HEAD)), $N records of 1 KiB, throttle on nodes 1-3: $THROTTLE B/s"
for i in 1 2 3; do
  start_node "$i" --peers "$peers" --replication-throttle-bytes "$THROTTLE"
done
for i in 1 2 3; do wait_http "127.0.0.1:1838$i"; done
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST http://127.0.0.1:18381/v1/topics \
    -H 'content-type: application/json' \
    -d '{"name":"mv","partitions":6,"replication_factor":3,"min_insync_replicas":2}')
  [ "$code" = 201 ] && break
  sleep 0.3
done
boot=127.0.0.1:19381,127.0.0.1:19382,127.0.0.1:19383
python3 - "$boot" "$N" <<'PY'
import sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "acks": "all", "linger.ms": 5,
              "batch.size": 1048576, "queue.buffering.max.messages": 200000})
payload = b"x" * 1024
for i in range(int(sys.argv[2])):
    while True:
        try:
            p.produce("mv", payload, partition=i % 6)
            break
        except BufferError:
            p.poll(0.05)
    if i % 10000 == 0:
        p.poll(0)
left = p.flush(120)
assert left == 0, f"{left} records not acknowledged"
PY
total=$(du -sb "$work/n1/topics/mv" | cut -f1)
echo "topic mv: $(python3 -c "print(f'{$total/1e6:.1f}')") MB per node (6 partitions)"

echo "== 1. node 4 joins (its copies unthrottled)"
t0=$(python3 -c 'import time; print(time.time())')
start_node 4 --join 127.0.0.1:19481
wait_http 127.0.0.1:18384
secs=$(settle 4 4 "$t0" min)
bytes=$(du -sb "$work/n4/topics/mv" | cut -f1)
python3 -c "print(f'rebalanced onto node 4: {$bytes/1e6:.1f} MB in {$secs} s (from its start, incl. start-up): {$bytes/1e6/$secs:.1f} MB/s')"
status | python3 -c '
import json, sys
v = json.load(sys.stdin)
print("replicas per node:", {n["id"]: n.get("replicas") for n in v["nodes"]})'

echo "== 2. decommission node 4 (copies onto nodes 1-3 throttled at $THROTTLE B/s each)"
t0=$(python3 -c 'import time; print(time.time())')
"$BIN" --url http://127.0.0.1:18381 cluster decommission 4 >/dev/null
secs=$(settle 4 0 "$t0" max)
python3 -c "print(f'decommissioned node 4: {$bytes/1e6:.1f} MB moved back in {$secs} s: {$bytes/1e6/$secs:.1f} MB/s in all')"
status | python3 -c '
import json, sys
v = json.load(sys.stdin)
print("replicas per node:", {n["id"]: n.get("replicas") for n in v["nodes"]}, "retired:", v["retired"])'
