#!/usr/bin/env bash
# A 3-node Weir cluster on this machine, in the foreground: builds `weir` (unless WEIR_BIN
# names a binary), starts nodes 1-3 with their data under ./weir-cluster/node{1,2,3} (logs in
# ./weir-cluster/node{1,2,3}.log) on fixed loopback ports, waits until they agree on a
# controller, prints how to use the cluster, and stops every node (SIGTERM: a controlled
# shutdown) on Ctrl-C, or when one of them exits by itself. Run it again to restart the same
# cluster on the same data; delete ./weir-cluster to start afresh.
#
#   node  HTTP             Kafka            cluster (Raft, replication)
#   1     127.0.0.1:8081   127.0.0.1:9191   127.0.0.1:9291
#   2     127.0.0.1:8082   127.0.0.1:9192   127.0.0.1:9292
#   3     127.0.0.1:8083   127.0.0.1:9193   127.0.0.1:9293
#
# Environment: WEIR_BIN (a built binary), WEIR_CLUSTER_DIR (default ./weir-cluster),
# WEIR_HTTP_BASE / WEIR_KAFKA_BASE / WEIR_CLUSTER_BASE (ports of node 0 + id; defaults 8080,
# 9190, 9290).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${WEIR_CLUSTER_DIR:-./weir-cluster}
HTTP_BASE=${WEIR_HTTP_BASE:-8080}
KAFKA_BASE=${WEIR_KAFKA_BASE:-9190}
CLUSTER_BASE=${WEIR_CLUSTER_BASE:-9290}

if [ -n "${WEIR_BIN:-}" ]; then
  WEIR=$WEIR_BIN
else
  cargo build --locked --bin weir
  WEIR=${CARGO_TARGET_DIR:-target}/debug/weir
fi
[ -x "$WEIR" ] || { echo "no weir binary at $WEIR" >&2; exit 1; }

http() { echo "127.0.0.1:$((HTTP_BASE + $1))"; }
kafka() { echo "127.0.0.1:$((KAFKA_BASE + $1))"; }
listen() { echo "127.0.0.1:$((CLUSTER_BASE + $1))"; }
PEERS="1@$(listen 1),2@$(listen 2),3@$(listen 3)"
BOOTSTRAP="$(kafka 1),$(kafka 2),$(kafka 3)"

mkdir -p "$DIR"
pids=()
stopping=0
stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  echo
  echo "stopping the cluster (controlled shutdown of each node)..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped; the data stays under $DIR"
}
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

for id in 1 2 3; do
  "$WEIR" serve --node-id "$id" --data-dir "$DIR/node$id" \
    --http "$(http $id)" --kafka "$(kafka $id)" \
    --cluster-listen "$(listen $id)" --peers "$PEERS" \
    >>"$DIR/node$id.log" 2>&1 &
  pids+=($!)
done

echo "starting nodes 1-3 (pids ${pids[*]}); logs in $DIR/node{1,2,3}.log"
# Every node answers, all three agree on a controller, and it registered all three.
ready=0
for _ in $(seq 1 300); do
  controllers=""
  registered=0
  for id in 1 2 3; do
    view=$(curl -fsS "http://$(http $id)/v1/cluster" 2>/dev/null) || view=""
    c=$(printf '%s' "$view" | sed -n 's/.*"controller":\([0-9]*\).*/\1/p')
    controllers="$controllers ${c:-none}"
    if [ "$id" = 1 ]; then
      registered=$(printf '%s' "$view" | grep -o '"registered":true' | wc -l) || true
    fi
  done
  set -- $controllers
  if [ "$1" != none ] && [ "$1" = "$2" ] && [ "$2" = "$3" ] && [ "$registered" = 3 ]; then
    ready=1
    break
  fi
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "a node exited during startup; the end of its logs:" >&2
      tail -n 5 "$DIR"/node*.log >&2
      exit 1
    fi
  done
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  echo "the nodes did not agree on a controller registering all three within 60 s;" \
    "the end of their logs:" >&2
  tail -n 5 "$DIR"/node*.log >&2
  exit 1
fi

echo
echo "Weir cluster running: nodes 1-3, controller node $1; data and logs under $DIR."
echo
row() { printf '  %-5s %-24s %-17s %s\n' "$@"; }
row node HTTP Kafka pid
for id in 1 2 3; do row "$id" "http://$(http "$id")" "$(kafka "$id")" "${pids[id - 1]}"; done
cat <<EOF

Try it (any node serves any request):

  export WEIR_URL=http://$(http 1)
  $WEIR cluster status
  $WEIR topic create orders --partitions 3 --replicas 3 --min-insync 2
  $WEIR topic describe orders
  echo 'alice:book' | $WEIR --url http://$(http 2) produce orders --key-separator :
  $WEIR --url http://$(http 3) consume orders --partition 0 --from-beginning
  kcat -b $BOOTSTRAP -L
  printf 'k1:v1\nk2:v2\n' | kcat -b $BOOTSTRAP -t orders -P -K: -X acks=all
  kcat -b $BOOTSTRAP -t orders -C -e -f '%p %o %k %s\n'
  curl -s http://$(http 1)/metrics | grep -E '^weir_(cluster|raft|replication)_'

Kill a node (kill -9 <pid>): \`$WEIR cluster status\` shows it fenced and its partitions
under-replicated, with other leaders for what it led. Start it again (in another terminal)
with its command and it catches up, e.g. node 3:

  $WEIR serve --node-id 3 --data-dir $DIR/node3 --http $(http 3) \\
    --kafka $(kafka 3) --cluster-listen $(listen 3) --peers $PEERS

Ctrl-C stops the nodes this script started.
EOF

# Foreground until Ctrl-C; a node that exits by itself is reported, the others keep running.
set +e
alive=("${pids[@]}")
while [ "${#alive[@]}" -gt 0 ]; do
  exited=""
  wait -n -p exited "${alive[@]}"
  status=$?
  [ "$stopping" = 1 ] && break
  next=()
  for pid in "${alive[@]}"; do [ "$pid" != "$exited" ] && next+=("$pid"); done
  alive=("${next[@]}")
  for id in 1 2 3; do
    if [ "${pids[id - 1]}" = "$exited" ]; then
      echo "node $id (pid $exited) exited with status $status; the end of its log:" >&2
      tail -n 3 "$DIR/node$id.log" >&2
    fi
  done
done
