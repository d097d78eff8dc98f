#!/usr/bin/env python3
"""Processor failover on a cluster, for BENCHMARKS.md ("Cluster: processor failover").

Three local `weir serve` nodes (release build), a topic `text` of 6 partitions (replication
factor 3) and word-count deployed over it (6 tasks, two per node). Then, KILLS times:
kill -9 of a node running tasks (nodes 2 and 3 in turn; requests go through node 1),
immediately produce one new word (a marker) to each input partition the killed node's
tasks read, and measure from the kill

  - moved:  until the cluster's assignment no longer names the killed node;
  - output: until every marker is counted (an interactive query answers it), i.e. the first
            output of the moved tasks.

  - look-ups: from just before the kill until the markers are counted, a prober asks node 1
            for KEYS keys (spread over every task) in a loop, once plainly and once with
            `?allow_stale=true`: the share answered (interactive-query availability).

The killed node is restarted and the cluster settles (tasks balanced again) before the next
round. Detection is bounded by --broker-session-timeout-ms (3000 by default). With
--standbys 0 a moved task restores its store from the changelog; with --standbys 1 (the
cluster default) it takes over a standby's warm copy. --keys sets the state size: distinct
words per task, so that a cold restore has something to read.

    python3 scripts/bench_failover.py --bin target/release/weir --kills 10 --standbys 1
    python3 scripts/bench_failover.py --bin target/release/weir --join-tasks 64 --keys 1000
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HTTP = {1: 18481, 2: 18482, 3: 18483, 4: 18484}
KAFKA = {1: 19581, 2: 19582, 3: 19583, 4: 19584}
CLUSTER = {1: 19681, 2: 19682, 3: 19683, 4: 19684}
PARTITIONS = 6


def req(port, method, path, body=None, timeout=10, headers=None):
    """(status, JSON body); with `headers` (a dict), the answer's x-weir-* headers go in it."""
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method,
        headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        if headers is not None:
            headers.update({k: v for k, v in e.headers.items() if k.startswith("x-weir-")})
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, None


def until(what, f, timeout=120, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = f()
        if v:
            return v
        time.sleep(step)
    sys.exit(f"timed out: {what}")


class Cluster:
    def __init__(self, binary, work, session_ms=None):
        self.bin, self.work, self.procs = binary, work, {}
        self.extra = ([] if session_ms is None
                      else ["--broker-session-timeout-ms", str(session_ms)])
        self.peers = ",".join(f"{i}@127.0.0.1:{CLUSTER[i]}" for i in (1, 2, 3))

    def start(self, i, join=False):
        log = open(os.path.join(self.work, f"n{i}.log"), "ab")
        membership = (["--join", f"127.0.0.1:{CLUSTER[1]}"] if join
                      else ["--peers", self.peers])
        self.procs[i] = subprocess.Popen(
            [self.bin, "serve", "--node-id", str(i), "--data-dir",
             os.path.join(self.work, f"n{i}"), "--http", f"127.0.0.1:{HTTP[i]}",
             "--kafka", f"127.0.0.1:{KAFKA[i]}", "--cluster-listen",
             f"127.0.0.1:{CLUSTER[i]}"] + membership + self.extra,
            stdout=log, stderr=log, start_new_session=True)

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def stop(self):
        for p in self.procs.values():
            p.kill()
            p.wait()


def owners():
    status, d = req(HTTP[1], "GET", "/v1/processors/wc")
    if status != 200:
        return None
    return [t.get("node") for t in d.get("assignment", [])]


def running(i):
    status, d = req(HTTP[i], "GET", "/v1/processors/wc")
    if status != 200:
        return []
    # Any node describes every task, each with the node running it.
    return sorted(t["partition"] for t in d["tasks"]
                  if t["state"] == "running" and t.get("node", i) == i)


def settled(live, partitions=None):
    partitions = partitions or PARTITIONS
    o = owners()
    if not o or len(o) != partitions or any(n not in live for n in o):
        return False
    counts = [o.count(n) for n in live]
    if max(counts) - min(counts) > 1:
        return False
    return all(running(n) == [p for p in range(partitions) if o[p] == n] for n in live)


def produce(port, word, partition):
    body = {"records": [{"value": word, "partition": partition}]}
    until(f"produce {word}", lambda: req(port, "POST", "/v1/topics/text/records", body)[0] == 200)


def counted(word):
    for i in (1, 2, 3):
        status, _ = req(HTTP[i], "GET", f"/v1/processors/wc/stores/counts/keys/{word}", timeout=2)
        if status == 200:
            return True
    return False


class Prober(threading.Thread):
    """Asks node 1 for `keys` in a loop while running: (answered, asked) per mode."""

    def __init__(self, keys):
        super().__init__(daemon=True)
        self.keys, self.on = keys, threading.Event()
        self.stats = {"fresh": [0, 0], "stale": [0, 0]}
        self.failures = {"fresh": {}, "stale": {}}
        self.lock = threading.Lock()

    def run(self):
        i = 0
        while True:
            self.on.wait()
            key = self.keys[i % len(self.keys)]
            i += 1
            for mode, q in (("fresh", ""), ("stale", "?allow_stale=true")):
                h = {}
                status, body = req(HTTP[1], "GET",
                                   f"/v1/processors/wc/stores/counts/keys/{key}{q}", timeout=5,
                                   headers=h)
                if self.on.is_set():
                    with self.lock:
                        self.stats[mode][1] += 1
                        self.stats[mode][0] += status == 200
                        if status != 200:
                            code = ((body or {}).get("error") or {}).get("code", "")
                            by = h.get("x-weir-answered-by")
                            why = f"{status} {code}" + (f" (by {by} on {h.get('x-weir-node')}, lag {h.get('x-weir-lag')})" if by else "")
                            self.failures[mode][why] = self.failures[mode].get(why, 0) + 1


def tasks_committed():
    """Every task runs with its input committed to the end (lag 0)."""
    status, d = req(HTTP[1], "GET", "/v1/processors/wc")
    if status != 200:
        return False
    tasks = d.get("tasks", [])
    return bool(tasks) and all(
        t.get("state") == "running" and t.get("lag") == 0
        and all(i.get("committed_offset") == i.get("end_offset") for i in t.get("inputs", []))
        for t in tasks)


def standbys_caught_up(wanted):
    """Every task has `wanted` standbys that have copied everything (lag 0)."""
    status, d = req(HTTP[1], "GET", "/v1/processors/wc")
    if status != 200:
        return False
    standbys = d.get("standbys", [])
    return (len(standbys) == wanted * len(d.get("assignment", []))
            and all(s.get("caught_up") and s.get("lag") == 0 for s in standbys))


def produce_words(port, partition, words):
    """One request per 1,000 distinct words, all to `partition`."""
    for i in range(0, len(words), 1000):
        body = {"records": [{"value": w, "partition": partition} for w in words[i:i + 1000]]}
        until("produce words",
              lambda: req(port, "POST", "/v1/topics/text/records", body, timeout=30)[0] == 200)


def restores(tasks):
    """(records, bytes, ms, warmed records) of the restorations of `tasks` (partitions), as
    their owners describe them."""
    out = []
    o = owners() or []
    for p in tasks:
        if p >= len(o) or o[p] is None:
            continue
        status, d = req(HTTP[o[p]], "GET", "/v1/processors/wc")
        if status != 200:
            continue
        for t in d["tasks"]:
            if t["partition"] == p and t.get("node") == o[p] and t.get("restore"):
                r = t["restore"]
                out.append((r.get("records", 0), r.get("bytes", 0), r.get("ms") or 0,
                            (t.get("warmed") or {}).get("records", 0)))
    return out


def deploy_word_count(c, args, partitions):
    """Starts nodes 1-3, creates `text` (rf 3) and deploys word-count over it; waits until
    its tasks are placed and running."""
    for i in (1, 2, 3):
        c.start(i)
    until("topic", lambda: req(HTTP[1], "POST", "/v1/topics",
                               {"name": "text", "partitions": partitions,
                                "replication_factor": 3})[0] in (201, 409))
    until("topic on every node", lambda: all(
        req(HTTP[i], "GET", "/v1/topics/text")[0] == 200 for i in (1, 2, 3)))
    subprocess.run([args.bin, "deploy", args.guest, "--name", "wc", "--input", "text",
                    "--output", "counts", "--standby-replicas", str(args.standbys),
                    "--url", f"http://127.0.0.1:{HTTP[1]}"],
                   check=True, stdout=subprocess.DEVNULL)
    until("placed", lambda: settled([1, 2, 3], partitions), timeout=300)


def join_bench(args, work):
    """A fourth node joins a cluster running word-count over `--join-tasks` partitions: the
    time until every node runs its share (balanced within one) again."""
    n = args.join_tasks
    c = Cluster(args.bin, work, args.session_ms)
    try:
        deploy_word_count(c, args, n)
        for p in range(n):
            produce_words(HTTP[1], p, [f"p{p}w{k}" for k in range(args.keys)])
        until("state built", lambda: all(counted(f"p{p}w{args.keys - 1}") for p in range(n)),
              timeout=900)
        t0 = time.monotonic()
        c.start(4, join=True)
        until("the joined node runs its share", lambda: settled([1, 2, 3, 4], n), timeout=900)
        took = time.monotonic() - t0
        share = len([x for x in owners() if x == 4])
        print(f"join: {n} tasks ({args.keys} keys each, standbys {args.standbys}); node 4 "
              f"runs {share} after {took:.2f} s (start-up, registration, warm-ups and "
              f"graceful moves included)")
    finally:
        c.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/weir")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--session-ms", type=int, default=None,
                    help="--broker-session-timeout-ms of every node (default: the binary's, 3000)")
    ap.add_argument("--standbys", type=int, default=1)
    ap.add_argument("--keys", type=int, default=20000, help="distinct words per task")
    ap.add_argument("--word-bytes", type=int, default=0,
                    help="pad each word to this many bytes (a larger state per key)")
    ap.add_argument("--guest", default="target/guests/word-count.wasm")
    ap.add_argument("--join-tasks", type=int, default=0,
                    help="instead of kills: the time a fourth node takes to get its share "
                         "of this many tasks")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="weir-bench-failover.")
    if args.join_tasks:
        try:
            join_bench(args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    c = Cluster(args.bin, work, args.session_ms)
    try:
        deploy_word_count(c, args, PARTITIONS)
        def word(p, k):
            w = f"p{p}w{k}"
            return w + "x" * max(0, args.word_bytes - len(w))

        for p in range(PARTITIONS):
            produce_words(HTTP[1], p, [word(p, k) for k in range(args.keys)])
        probe_keys = [word(p, k) for k in range(0, args.keys, max(1, args.keys // 20))
                      for p in range(PARTITIONS)]
        until("state built", lambda: all(counted(k) for k in probe_keys[-PARTITIONS:]),
              timeout=600)
        # Every task has committed its input (its changelog holds all its state; until then
        # its store is ahead of what a standby can have), then every standby copied it.
        until("tasks committed", tasks_committed, timeout=600)
        until("standbys caught up", lambda: standbys_caught_up(args.standbys), timeout=600)
        prober = Prober(probe_keys)
        prober.start()
        moved, output, restore_runs = [], [], []
        for r in range(args.kills):
            victim = 2 + r % 2
            until("settled", lambda: settled([1, 2, 3]))
            mine = [p for p, n in enumerate(owners()) if n == victim]
            prober.on.set()
            t0 = time.monotonic()
            c.kill(victim)
            markers = [f"m{r}x{p}" for p in mine]
            for p, m in zip(mine, markers):
                produce(HTTP[1], m, p)
            live = [n for n in (1, 2, 3) if n != victim]
            until("moved", lambda: (o := owners()) and victim not in o)
            t_moved = time.monotonic() - t0
            until("markers counted", lambda: all(counted(m) for m in markers))
            t_out = time.monotonic() - t0
            prober.on.clear()
            restored = restores(mine)
            restore_runs.extend(restored)
            moved.append(t_moved)
            output.append(t_out)
            print(f"kill {r + 1}: node {victim} ({len(mine)} tasks) moved {t_moved:.2f} s, "
                  f"first output {t_out:.2f} s; restored (records, bytes, ms, warmed) "
                  f"{restored}", flush=True)
            c.start(victim)
            until("settled after restart", lambda: settled([1, 2, 3]), timeout=180)
            _ = live

        def pct(v, q):
            s = sorted(v)
            return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]

        print(f"moved:        p50 {statistics.median(moved):.2f} s, p99 {pct(moved, 0.99):.2f} s "
              f"(n={len(moved)})")
        print(f"first output: p50 {statistics.median(output):.2f} s, p99 {pct(output, 0.99):.2f} s "
              f"(n={len(output)})")
        cold = [(b, ms) for (_, b, ms, _) in restore_runs if b > 0 and ms > 0]
        if cold:
            rates = sorted(b / ms / 1000.0 for b, ms in cold)
            print(f"restore rate per task (restorations that read bytes): median "
                  f"{statistics.median(rates):.1f} MB/s, min {rates[0]:.1f}, max {rates[-1]:.1f} "
                  f"(n={len(rates)}; the time includes listing changelogs and the flush)")
        if restore_runs:
            warm = sum(1 for (r, _, _, w) in restore_runs if w > 0 or r * 10 < args.keys)
            print(f"tasks taken over warm (a standby's copy, or a store that read under a "
                  f"tenth of the state): {warm}/{len(restore_runs)}")
        for mode, (ok, asked) in prober.stats.items():
            print(f"look-ups ({mode}) from each kill to the first output: {ok}/{asked} answered "
                  f"({100.0 * ok / max(1, asked):.1f}%); not answered: {prober.failures[mode]}")
    finally:
        c.stop()
        if os.environ.get("KEEP_WORK"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
