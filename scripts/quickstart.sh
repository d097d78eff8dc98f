#!/usr/bin/env bash
# Quick start: build Weir, start a server on an embedded data directory (./weir-data), and do
# real work with it: create a topic, produce keyed records, read them back per partition.
# The server then keeps running in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

HTTP=${WEIR_HTTP:-127.0.0.1:8080}
export WEIR_URL="http://$HTTP"
cargo build --locked --bin weir
WEIR=target/debug/weir

"$WEIR" serve --data-dir ./weir-data --http "$HTTP" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "$WEIR_URL/health" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "--- create a topic with 3 partitions"
"$WEIR" topic create orders --partitions 3 2>/dev/null || echo "(topic orders already exists)"
echo "--- produce examples/data/orders.txt (key:value per line; keys pick partitions like Kafka)"
"$WEIR" produce orders --key-separator : < examples/data/orders.txt
echo "--- the topic"
"$WEIR" topic describe orders
for p in 0 1 2; do
  echo "--- partition $p (every order of a customer is in one partition, in order)"
  "$WEIR" consume orders --partition "$p" --from-beginning --format json
done
echo
echo "Weir is serving at $WEIR_URL (data in ./weir-data). Try:"
echo "  curl -s $WEIR_URL/v1/topics | python3 -m json.tool"
echo "  $WEIR consume orders --follow --format value    # then produce from another shell"
echo "Ctrl-C stops the server."
wait $server
