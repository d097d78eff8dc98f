#!/usr/bin/env python3
"""Word-count throughput and output latency, at_least_once against exactly_once, through the
real binary (BENCHMARKS.md "Exactly-once processors").

usage: bench_eos.py WEIR_BINARY WORD_COUNT_WASM   (env N: input records, default 1000000)

For each (guarantee, commit interval) in (at_least_once, 1000), (exactly_once, 1000),
(at_least_once, 100), (exactly_once, 100): a fresh node (data dir under /tmp/bench-eos), a
3-partition topic `text` filled with N lines of 4 words over HTTP, then the word-count guest
deployed; `secs` is deploy → every task's inputs committed at their ends (so it includes up
to one or two commit intervals of waiting: at small N it measures the interval, not the
task). Then 40 single-line probes, each a new word: the time until its count is in `counts`
for a read_committed reader (`isolation=read_committed`). Prints one JSON line per case.
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

BIN = sys.argv[1]
WASM = sys.argv[2]
N = int(os.environ.get("N", "1000000"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def req(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method,
                               headers={"content-type": "application/json"})
    with urllib.request.urlopen(r, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def caught_up(base):
    ts = req(base + "/v1/processors/wc")["tasks"]
    return ts and all(
        t["state"] == "running" and t["lag"] == 0 and all(
            i["committed_offset"] == i["end_offset"] and i["end_offset"] > 0
            for i in t["inputs"])
        for t in ts)


def run(guarantee, interval):
    d = f"/tmp/bench-eos/data-{guarantee}-{interval}"
    shutil.rmtree(d, ignore_errors=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    p = subprocess.Popen([BIN, "serve", "--data-dir", d, "--http", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, "RUST_LOG": "warn"})
    try:
        for _ in range(400):
            try:
                req(base + "/health")
                break
            except Exception:
                time.sleep(0.05)
        req(base + "/v1/topics", "POST", {"name": "text", "partitions": 3})
        sent = 0
        while sent < N:
            recs = [{"value": f"w{(sent + i) % 1000} v{(sent + i) % 7} common x{i % 13}",
                     "partition": (sent + i) % 3} for i in range(5000)]
            req(base + "/v1/topics/text/records", "POST", {"records": recs})
            sent += 5000
        spec = json.dumps({"name": "wc", "inputs": ["text"], "outputs": ["counts"],
                           "commit_interval_ms": interval, "guarantee": guarantee})
        t0 = time.time()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-F", f"wasm=@{WASM}",
                        "-F", f"spec={spec}", base + "/v1/processors"], check=True)
        while not caught_up(base):
            if time.time() - t0 > 600:
                raise SystemExit("not caught up after 600 s")
            time.sleep(0.02)
        secs = time.time() - t0
        lat = []
        for k in range(40):
            w = f"lat{k}"
            desc = req(base + "/v1/topics/counts")["partition_offsets"]
            ends = [desc[pp]["end_offset"] for pp in range(3)]
            t1 = time.time()
            req(base + "/v1/topics/text/records", "POST",
                {"records": [{"value": w, "partition": k % 3}]})
            found = False
            while not found and time.time() - t1 < 30:
                for pp in range(3):
                    r = req(base + f"/v1/topics/counts/partitions/{pp}/records"
                            f"?offset={ends[pp]}&max=1000&isolation=read_committed")
                    if any(x["key"] == w for x in r["records"]):
                        found = True
                        break
                if not found:
                    time.sleep(0.002)
            lat.append((time.time() - t1) * 1000)
            time.sleep(0.05)
        lat.sort()
        return {"guarantee": guarantee, "commit_interval_ms": interval, "records": N,
                "secs": round(secs, 2), "records_per_s": round(N / secs),
                "output_visible_ms_p50": round(statistics.median(lat), 1),
                "output_visible_ms_max": round(lat[-1], 1)}
    finally:
        p.terminate()
        p.wait()


def main():
    for g, i in [("at_least_once", 1000), ("exactly_once", 1000),
                 ("at_least_once", 100), ("exactly_once", 100)]:
        print(json.dumps(run(g, i)), flush=True)


if __name__ == "__main__":
    main()
