#!/usr/bin/env bash
# Builds the guest components in examples/ (their own workspace) for wasm32-wasip2 and copies
# them to target/guests/<name>.wasm, the stable paths the engine's tests and benches use.
# Then the UDFs in other languages: examples/python/udf_py_upper (componentize-py, installed
# into a venv under target/) and examples/js/udf_js_reverse (componentize-js, `npm ci`); each
# is rebuilt only when a source is newer than its output (they take 10–30 s, and a rebuilt
# component has new bytes, so the engine's compiled-artifact caches would miss).
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

# True when $1 exists and no file under the other arguments is newer (dependencies and build
# outputs of the examples do not count).
up_to_date() {
  local target=$1; shift
  [ -f "$target" ] || return 1
  [ -z "$(find "$@" -type f -newer "$target" -not -path '*/node_modules/*' \
        -not -path '*/__pycache__/*' -not -name '*.wasm' 2>/dev/null | head -n 1)" ]
}

# Python: componentize-py (pinned) in a venv.
componentize_py_version=0.25.1
py_out="$out/udf-py-upper.wasm"
if up_to_date "$py_out" examples/python/udf_py_upper wit/udf; then
  echo "build-guests: $py_out is up to date"
else
  venv=target/venv-componentize-py
  marker="$venv/.componentize-py-$componentize_py_version"
  if [ ! -f "$marker" ]; then
    command -v python3 >/dev/null 2>&1 || { echo "build-guests: python3 is needed for $py_out" >&2; exit 1; }
    rm -rf "$venv"
    python3 -m venv "$venv" || { echo "build-guests: cannot create a venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$componentize_py_version"
    touch "$marker"
  fi
  "$venv/bin/componentize-py" -d wit/udf -w scalar-udf componentize app \
    -p examples/python/udf_py_upper -o "$py_out.tmp" >/dev/null
  mv "$py_out.tmp" "$py_out"
  echo "build-guests: built $py_out"
fi

# JavaScript: componentize-js (pinned in package-lock.json) through its JS API.
js_dir=examples/js/udf_js_reverse
js_out="$out/udf-js-reverse.wasm"
if up_to_date "$js_out" "$js_dir" wit/udf; then
  echo "build-guests: $js_out is up to date"
else
  command -v npm >/dev/null 2>&1 || { echo "build-guests: node and npm are needed for $js_out" >&2; exit 1; }
  if [ ! -f "$js_dir/node_modules/.package-lock.json" ] || \
     [ "$js_dir/package-lock.json" -nt "$js_dir/node_modules/.package-lock.json" ]; then
    # componentize-js 0.23's dependencies declare optional platform packages that were never
    # published (e.g. @bytecodealliance/jco-node-fs-linux-arm64-musl), which npm 11's `npm ci`
    # reports as "Missing ... from lock file"; `npm install --no-save` then installs the same
    # pinned versions from package-lock.json without rewriting it.
    (cd "$js_dir" && { npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || \
      npm install --no-save --no-audit --no-fund --loglevel=error; })
  fi
  node "$js_dir/build.mjs" "$PWD/$js_out.tmp" >/dev/null
  mv "$js_out.tmp" "$js_out"
  echo "build-guests: built $js_out"
fi

echo "build-guests: $(( $(echo $members | wc -w) + 2 )) components in $out/"
