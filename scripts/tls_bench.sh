#!/usr/bin/env bash
# Kafka plaintext against TLS through librdkafka (BENCHMARKS.md, "TLS against plaintext"):
# per round and per server binary, plaintext then TLS, each on a fresh data dir: kbench
# produce then consume of N 1 KiB records; prints rec/s and the 1-minute load average.
#
# usage: scripts/tls_bench.sh ROUNDS LABEL=BIN [LABEL=BIN ...]
#   BIN: a release build of `cargo build --release --example kafka_server` (broker/)
# env: N (records, default 300000), KBENCH (kbench.py), KBENCH_TLS (kbench with
#      security.protocol=SSL and ssl.ca.location=$KBENCH_CA added to every client config),
#      PKI (directory with ca.pem, server.pem, server.key for 127.0.0.1)
set -u
N=${N:-300000}
KBENCH=${KBENCH:-/work/shared/tools/kbench.py}
KBENCH_TLS=${KBENCH_TLS:-/tmp/kbench_tls.py}
PKI=${PKI:-/tmp/netchk/bench}
rounds=$1
shift
port=19300
for round in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    label=${spec%%=*}
    bin=${spec#*=}
    for mode in plain tls; do
      port=$((port + 1))
      dir=/tmp/kbp-$mode
      rm -rf "$dir"
      if [ $mode = tls ]; then
        WEIR_TLS_CERT=$PKI/server.pem WEIR_TLS_KEY=$PKI/server.key "$bin" "$dir" 127.0.0.1:$port >"$dir.log" 2>&1 &
        run=(env KBENCH_CA="$PKI/ca.pem" python3 "$KBENCH_TLS")
      else
        "$bin" "$dir" 127.0.0.1:$port >"$dir.log" 2>&1 &
        run=(python3 "$KBENCH")
      fi
      pid=$!
      sleep 1
      rate() { grep -o 'rate=[0-9,]*' | tr -d 'rate=,'; }
      p=$("${run[@]}" produce --broker 127.0.0.1:$port --topic t --num "$N" --acks 1 2>&1 | rate)
      c=$("${run[@]}" consume --broker 127.0.0.1:$port --topic t --num "$N" 2>&1 | rate)
      kill -INT $pid
      wait $pid 2>/dev/null
      echo "round=$round $label $mode produce=$p consume=$c load=$(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done
