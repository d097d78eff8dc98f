#!/usr/bin/env bash
# Cluster benchmarks for BENCHMARKS.md ("Cluster: replication cost and re-replication"), all in
# one run on this machine: a single node with a replication-factor-1 topic, then a three-node
# cluster on the same machine with rf=1 and rf=3 (min.insync 2) topics; librdkafka producers
# (../shared/tools/kbench.py, 1 KiB records, partition 0, acks=all) at full speed and at a
# fixed rate (latency); then the re-replication of a follower whose data directory is wiped.
#
#   WEIR_BIN=target/release/weir N=300000 scripts/bench_cluster.sh
#
# Three nodes share the machine's cores with the load generator: the ratios between the cases
# are what this measures, not what separate machines would do.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WEIR_BIN:-target/release/weir}
K=${KBENCH:-../shared/tools/kbench.py}
N=${N:-300000}
RATE=${RATE:-5000}
LAT_N=${LAT_N:-50000}
work=$(mktemp -d /tmp/weir-bench-cluster.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
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

create() { # http name partitions rf [min_insync]
  local body="{\"name\":\"$2\",\"partitions\":$3"
  [ -n "${4:-}" ] && body="$body,\"replication_factor\":$4"
  [ -n "${5:-}" ] && body="$body,\"min_insync_replicas\":$5"
  body="$body}"
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -XPOST "http://$1/v1/topics" \
      -H 'content-type: application/json' -d "$body")
    [ "$code" = 201 ] && return 0
    sleep 0.3
  done
  echo "could not create $2 on $1 (last: $code)" >&2
  return 1
}

echo "== binary $BIN ($(git rev-parse --short HEAD)), $N records of 1 KiB, latency at $RATE rec/s"

echo "== single node, rf=1"
"$BIN" serve --data-dir "$work/single" --http 127.0.0.1:18180 --kafka 127.0.0.1:19180 \
  >"$work/single.log" 2>&1 &
pids+=($!)
wait_http 127.0.0.1:18180
create 127.0.0.1:18180 s1 1
create 127.0.0.1:18180 slat 1
python3 "$K" produce --broker 127.0.0.1:19180 --topic s1 --num "$N" --acks all --seconds 120
python3 "$K" produce --broker 127.0.0.1:19180 --topic slat --num "$LAT_N" --acks all \
  --rate "$RATE" --seconds 120
kill -TERM "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
pids=()

echo "== three nodes"
peers="1@127.0.0.1:19281,2@127.0.0.1:19282,3@127.0.0.1:19283"
start_node() {
  "$BIN" serve --node-id "$1" --data-dir "$work/n$1" --http "127.0.0.1:1818$1" \
    --kafka "127.0.0.1:1918$1" --cluster-listen "127.0.0.1:1928$1" --peers "$peers" \
    >>"$work/n$1.log" 2>&1 &
  pids[$1]=$!
}
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do wait_http "127.0.0.1:1818$i"; done
boot=127.0.0.1:19181,127.0.0.1:19182,127.0.0.1:19183
create 127.0.0.1:18181 r1 1 1
create 127.0.0.1:18181 r1lat 1 1
create 127.0.0.1:18181 r3 1 3 2
create 127.0.0.1:18181 r3lat 1 3 2
sleep 3
echo "-- cluster, rf=1"
python3 "$K" produce --broker "$boot" --topic r1 --num "$N" --acks all --seconds 120
python3 "$K" produce --broker "$boot" --topic r1lat --num "$LAT_N" --acks all --rate "$RATE" \
  --seconds 120
echo "-- cluster, rf=3, min.insync 2"
python3 "$K" produce --broker "$boot" --topic r3 --num "$N" --acks all --seconds 120
python3 "$K" produce --broker "$boot" --topic r3lat --num "$LAT_N" --acks all --rate "$RATE" \
  --seconds 120

echo "== re-replication of a wiped follower (topic r3, partition 0)"
describe() { curl -fsS "http://$1/v1/topics/r3" 2>/dev/null || echo '{}'; }
leader=$(describe 127.0.0.1:18181 | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["partition_offsets"][0]["replication"]["leader"])')
victim=$(( leader % 3 + 1 ))
bytes=$(du -sb "$work/n$victim/topics/r3" | cut -f1)
end=$(describe "127.0.0.1:1818$leader" | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["partition_offsets"][0]["replication"]["log_end_offset"])')
echo "leader $leader, follower $victim wiped: $end records, $bytes bytes on disk"
kill -9 "${pids[$victim]}"; wait "${pids[$victim]}" 2>/dev/null || true
rm -rf "$work/n$victim"
t0=$(date +%s.%N)
start_node "$victim"
wait_http "127.0.0.1:1818$victim"
while :; do
  got=$(describe "127.0.0.1:1818$victim" | python3 -c '
import json, sys
try:
    print(json.load(sys.stdin)["partition_offsets"][0]["replication"]["log_end_offset"])
except Exception:
    print(-1)')
  [ "$got" -ge "$end" ] 2>/dev/null && break
  sleep 0.05
done
t1=$(date +%s.%N)
python3 -c "s=$t1-$t0; print(f're-replicated {$end} records, {$bytes/1e6:.1f} MB in {s:.2f} s (from the restart, incl. start-up): {$bytes/1e6/s:.1f} MB/s')"
