#!/usr/bin/env bash
# Builds the guest components in examples/ (their own workspace) for wasm32-wasip2 and copies
# them to target/guests/<name>.wasm, the stable paths the engine's tests and benches use.
# The server's own `cargo build` never builds guests; run this first (scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
  fi
fi

(cd examples && cargo build --release --target wasm32-wasip2 --locked "$@")

out=target/guests
mkdir -p "$out"
members=$(sed -n '/^members = \[/,/^\]/p' examples/Cargo.toml | grep -o '"[^"]*"' | tr -d '"')
for name in $members; do
  artifact="examples/target/wasm32-wasip2/release/${name//-/_}.wasm"
  if [ ! -f "$artifact" ]; then
    echo "build-guests: missing $artifact" >&2
    exit 1
  fi
  # Copy only when changed, so the engine's compiled-artifact caches stay warm.
  if ! cmp -s "$artifact" "$out/$name.wasm"; then
    cp "$artifact" "$out/$name.wasm.tmp" && mv "$out/$name.wasm.tmp" "$out/$name.wasm"
  fi
done
echo "build-guests: $(echo $members | wc -w) components in $out/"
