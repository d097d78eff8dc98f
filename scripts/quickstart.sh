#!/usr/bin/env bash
# Quick start: build Weir, start a server on an embedded data directory (./weir-data), and do
# real work with it: create a topic, produce keyed records, read them back per partition;
# then deploy the word-count processor (a WebAssembly component) and show its counts.
# The server then keeps running in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

HTTP=${WEIR_HTTP:-127.0.0.1:8080}
export WEIR_URL="http://$HTTP"
# RocksDB (state stores) links Debian's librocksdb-dev; its bindings need libclang.
if ! dpkg -s librocksdb-dev libclang-dev >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null && \
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librocksdb-dev libclang-dev >/dev/null
fi
cargo build --locked --bin weir
# The example processors (their own workspace, built for wasm32-wasip2).
./scripts/build-guests.sh
WEIR=target/debug/weir

# The server's own log goes to a file in the data directory, not between the walkthrough's lines.
mkdir -p ./weir-data
"$WEIR" serve --data-dir ./weir-data --http "$HTTP" >>./weir-data/server.log 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "$WEIR_URL/health" >/dev/null 2>&1 && break
  sleep 0.1
done
if ! curl -fsS "$WEIR_URL/health" >/dev/null 2>&1; then
  echo "weir did not start; the end of ./weir-data/server.log:" >&2
  tail -n 20 ./weir-data/server.log >&2
  exit 1
fi

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

echo "--- deploy the word-count processor (target/guests/word-count.wasm) over a topic 'text'"
"$WEIR" topic create text --partitions 3 2>/dev/null || echo "(topic text already exists)"
"$WEIR" deploy target/guests/word-count.wasm --name wc --input text --output counts 2>/dev/null \
  || echo "(processor wc already deployed)"
echo "--- produce lines of text to every partition (the same words on several partitions)"
p=0
while IFS= read -r line; do
  echo "$line" | "$WEIR" produce text --partition $p 2>/dev/null
  p=$(( (p + 1) % 3 ))
done <<'TEXT'
the quick brown fox jumps over the lazy dog
the dog sleeps and the fox runs
a quick end to the story of the fox
TEXT
# Counts are exact: each word is re-keyed through wc.repartition to the one task that owns it.
for _ in $(seq 1 100); do
  "$WEIR" processor get wc counts fox >/dev/null 2>&1 && break
  sleep 0.2
done
echo "--- the processor and its tasks"
"$WEIR" processor describe wc
echo "--- word -> count updates in the output topic 'counts'"
"$WEIR" consume counts --from-beginning --format json
echo "--- interactive query of the task state: weir processor get wc counts the"
"$WEIR" processor get wc counts the

echo "--- streaming SQL: the fraud query of the KSQL talks over a stream of card authorizations"
"$WEIR" sql -e "CREATE STREAM IF NOT EXISTS authorization_attempts (card_number VARCHAR, amount DOUBLE)
  WITH (KAFKA_TOPIC='authorization_attempts', VALUE_FORMAT='JSON', PARTITIONS=3);"
for i in 1 2 3 4 5; do
  echo '{"card_number":"4000-0000-0000-0002","amount":9.99}'
done | "$WEIR" produce authorization_attempts 2>/dev/null
echo '{"card_number":"4000-0000-0000-0001","amount":120}' | "$WEIR" produce authorization_attempts 2>/dev/null
"$WEIR" sql -e "CREATE STREAM possible_fraud AS SELECT card_number, count() FROM authorization_attempts WINDOW TUMBLING (SIZE 5 MINUTE) GROUP BY card_number HAVING count() > 3;" \
  2>/dev/null || echo "(query possible_fraud already running)"
echo "--- SELECT * FROM possible_fraud EMIT CHANGES LIMIT 1 (the card with 5 attempts)"
"$WEIR" sql --property auto.offset.reset=earliest -e "SELECT * FROM possible_fraud EMIT CHANGES LIMIT 1;"
echo
echo "Weir is serving at $WEIR_URL (data in ./weir-data, server log in ./weir-data/server.log)."
echo "Web console: $WEIR_URL/"
echo "Try:"
echo "  curl -s $WEIR_URL/v1/topics | python3 -m json.tool"
echo "  $WEIR consume orders --follow --format value    # then produce from another shell"
echo "  echo 'the fox again' | $WEIR produce text; $WEIR processor get wc counts fox"
echo "  $WEIR sql                                         # the weir> SQL shell"
echo "Ctrl-C stops the server."
wait $server
