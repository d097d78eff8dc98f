#!/usr/bin/env python3
"""Randomized fault schedule against a three-node Weir cluster under load.

Starts three real `weir serve --peers` processes on this machine, creates a replicated topic
(rf=3, min.insync.replicas=2), runs tests/kafka/cluster_produce_verify.py (a confluent-kafka
idempotent acks=all producer at a steady rate) and, for the given time, injects faults drawn
from a seeded random schedule, one fault at a time:

  kill9-leader      SIGKILL the node leading most partitions, restart it after a while
  kill9-controller  SIGKILL the metadata controller, restart it after a while
  kill9-any         SIGKILL a random node, restart it after a while
  pause             SIGSTOP a random node for 0.5-8 s (shorter and longer than a session),
                    then SIGCONT (a paused old leader must not acknowledge after it woke)
  term              SIGTERM (controlled shutdown), restart after a while
  kill9-two         SIGKILL two nodes at once (the quorum and min.insync are lost), restart
                    both after a while: acks=all must fail or wait, never ack and lose
  replace           a new node (new id, empty data dir) joins with --join and gets replicas
                    moved onto it; then `decommission` of a random node but node 1 moves its
                    replicas away, takes it out of the quorum and retires it; it is stopped
                    (membership changes under load: where Jepsen found lost writes)

Between faults the cluster gets a random quiet time, not always enough to heal fully, so
faults also land on shrunk in-sync sets. At the end every node is resumed and started, the
cluster must heal (every partition led, full in-sync sets), and the verifier consumes
everything back: no acknowledged record lost, none twice, order kept per partition. Any node
that exits on its own (not by a fault), or whose log shows a panic, fails the run.

Prints the schedule as it goes and one JSON summary line at the end; exits 1 on failure.
The same seed gives the same schedule (the timing of the processes still varies).

usage: scripts/chaos.py [--seconds N] [--seed S] [--bin PATH] [--workdir DIR]
                        [--rate N] [--partitions N] [--faults kill9-two,pause,...]
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERIFIER = os.path.join(ROOT, "tests", "kafka", "cluster_produce_verify.py")
TOPIC = "chaos"


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=3.0):
    """(status, parsed JSON or None); (None, None) when the node does not answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"null")
        except ValueError:
            return e.code, None
    except (OSError, ValueError):
        return None, None


class Node:
    def __init__(self, node_id, binary, workdir, ports, peers, join=None):
        self.id = node_id
        self.join = join
        self.binary = binary
        self.data = os.path.join(workdir, f"node{node_id}")
        self.log_path = os.path.join(workdir, f"node{node_id}.log")
        self.http_addr = f"127.0.0.1:{ports['http']}"
        self.kafka = f"127.0.0.1:{ports['kafka']}"
        self.cluster = f"127.0.0.1:{ports['cluster']}"
        self.peers = peers
        self.proc = None
        self.paused = False
        self.unexpected_exits = []

    def start(self):
        os.makedirs(self.data, exist_ok=True)
        out = open(self.log_path, "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--node-id", str(self.id), "--data-dir", self.data,
             "--http", self.http_addr, "--kafka", self.kafka,
             "--cluster-listen", self.cluster]
            + (["--join", self.join] if self.join else ["--peers", self.peers]),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            # Its own session: no hang-up from a terminal or from a process group orphaned
            # while a node is stopped (the kernel sends SIGHUP then SIGCONT to such a group)
            # reaches it; a run reports only the faults it injected.
            start_new_session=True)
        out.close()
        self.paused = False

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        """Records (and restarts) a node that exited without a fault asking it to."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self.unexpected_exits.append(code)
            log(f"FAILURE: node {self.id} exited on its own with {code}; restarting it")
            self.start()

    def signal(self, sig):
        if self.running():
            self.proc.send_signal(sig)

    def kill9(self):
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self.proc = None
        self.paused = False

    def terminate(self, within=20.0):
        """SIGTERM, then SIGKILL if it did not stop within `within` seconds."""
        self.signal(signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                log(f"node {self.id} ignored SIGTERM for {within}s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def get(self, path):
        return http("GET", f"http://{self.http_addr}{path}")

    def panicked(self):
        try:
            with open(self.log_path, "rb") as f:
                return [l.decode(errors="replace").strip() for l in f if b"panicked at" in l]
        except OSError:
            return []


class Cluster:
    def __init__(self, binary, workdir):
        ports = [{"http": free_port(), "kafka": free_port(), "cluster": free_port()}
                 for _ in range(3)]
        peers = ",".join(f"{i + 1}@127.0.0.1:{p['cluster']}" for i, p in enumerate(ports))
        self.nodes = [Node(i + 1, binary, workdir, ports[i], peers) for i in range(3)]
        self.binary, self.workdir = binary, workdir
        self.next_id = 4
        # Decommissioned nodes, kept for the final checks (exits, panics).
        self.gone = []

    def node(self, node_id):
        return next(n for n in self.nodes if n.id == node_id)

    def status(self):
        for n in self.up():
            status, d = n.get("/v1/cluster")
            if status == 200 and d and d.get("metadata"):
                return d
        return None

    def up(self):
        return [n for n in self.nodes if n.running() and not n.paused]

    def routes(self):
        """Per partition (leader, isr) as some live node describes the topic, or None."""
        for n in self.up():
            status, d = n.get(f"/v1/topics/{TOPIC}")
            if status == 200 and d:
                return [(p["replication"].get("leader"), p["replication"].get("isr") or [])
                        for p in d.get("partition_offsets", []) if p.get("replication")]
        return None

    def controller(self):
        for n in self.up():
            status, d = n.get("/v1/cluster")
            if status == 200 and d and d.get("metadata"):
                c = d["metadata"].get("controller")
                if c:
                    return c
        return None

    def busiest_leader(self):
        r = self.routes() or []
        count = {}
        for leader, _ in r:
            if leader:
                count[leader] = count.get(leader, 0) + 1
        return max(count, key=count.get) if count else None

    def healed(self, partitions):
        r = self.routes()
        return (r is not None and len(r) == partitions
                and all(l is not None and len(isr) == 3 for l, isr in r))

    def check_alive(self):
        for n in self.nodes:
            n.check_alive()


def wait_until(pred, seconds, step=0.25):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def create_topic(cluster, partitions):
    spec = {"name": TOPIC, "partitions": partitions, "replication_factor": 3,
            "min_insync_replicas": 2}
    deadline = time.time() + 90
    while time.time() < deadline:
        for n in cluster.up():
            status, body = http("POST", f"http://{n.http_addr}/v1/topics", spec)
            if status == 201 or (status == 409 and body
                                 and body.get("error", {}).get("code") == "topic_exists"):
                return True
        time.sleep(0.5)
    return False


FAULTS = [("kill9-leader", 25), ("kill9-controller", 15), ("kill9-any", 10), ("pause", 25),
          ("term", 15), ("kill9-two", 10), ("replace", 5)]


def replace_node(cluster, rng):
    """The `replace` fault: a new node joins and takes replicas, then another one is
    decommissioned and stopped. Returns (description, failure or None)."""
    victim = rng.choice([n.id for n in cluster.nodes if n.id != 1])
    via = rng.choice([n for n in cluster.up() if n.id != victim] or cluster.nodes)
    ports = {"http": free_port(), "kafka": free_port(), "cluster": free_port()}
    new = Node(cluster.next_id, cluster.binary, cluster.workdir, ports, None, join=via.cluster)
    cluster.next_id += 1
    cluster.nodes.append(new)
    new.start()
    started = time.time()

    def holds(v, node_id):
        return next((n.get("replicas") or 0 for n in v["nodes"] if n["id"] == node_id), 0)

    def settled_with_new():
        v = cluster.status()
        return bool(v) and not v.get("reassigning") and holds(v, new.id) > 0
    if not wait_until(settled_with_new, 120, step=0.5):
        return (f"replace: node {new.id} joined but got no replicas within 120 s",
                f"rebalance onto joined node {new.id} did not finish: {cluster.status()}")
    joined = round(time.time() - started, 1)
    asked = False
    deadline = time.time() + 30
    while time.time() < deadline and not asked:
        for n in cluster.up():
            status, body = http("POST", f"http://{n.http_addr}/v1/cluster/nodes/{victim}/decommission", {})
            if status == 202:
                asked = True
                break
        time.sleep(0.5)
    if not asked:
        return (f"replace: node {new.id} joined; decommission of {victim} not accepted",
                f"decommission of node {victim} was not accepted within 30 s")

    def retired():
        v = cluster.status()
        return bool(v) and victim in (v.get("retired") or [])
    if not wait_until(retired, 180, step=0.5):
        return (f"replace: node {victim} never retired",
                f"decommission of node {victim} did not finish within 180 s: {cluster.status()}")
    took = round(time.time() - started - joined, 1)
    old = cluster.node(victim)
    old.terminate(within=10)
    cluster.nodes.remove(old)
    cluster.gone.append(old)
    return (f"replace: node {new.id} joined and got replicas in {joined}s; node {victim} "
            f"decommissioned in {took}s and stopped", None)


def run_fault(kind, cluster, rng):
    """Injects one fault and undoes it; returns a description."""
    ids = [n.id for n in cluster.nodes]
    if kind == "kill9-leader":
        victim = cluster.busiest_leader() or rng.choice(ids)
    elif kind == "kill9-controller":
        victim = cluster.controller() or rng.choice(ids)
    else:
        victim = rng.choice(ids)
    down = round(rng.uniform(0.5, 10.0), 1)
    if kind.startswith("kill9") and kind != "kill9-two":
        cluster.node(victim).kill9()
        time.sleep(down)
        cluster.node(victim).start()
        return f"{kind}: node {victim} killed, restarted after {down}s"
    if kind == "pause":
        paused = round(rng.uniform(0.5, 8.0), 1)
        cluster.node(victim).pause()
        time.sleep(paused)
        cluster.node(victim).resume()
        return f"pause: node {victim} stopped for {paused}s"
    if kind == "term":
        started = time.time()
        cluster.node(victim).terminate()
        took = round(time.time() - started, 1)
        time.sleep(min(down, 4.0))
        cluster.node(victim).start()
        return f"term: node {victim} shut down in {took}s, restarted after {min(down, 4.0)}s"
    if kind == "kill9-two":
        pair = rng.sample(ids, 2)
        for v in pair:
            cluster.node(v).kill9()
        down = round(rng.uniform(1.0, 8.0), 1)
        time.sleep(down)
        for v in pair:
            cluster.node(v).start()
        return f"kill9-two: nodes {pair} killed, restarted after {down}s"
    raise ValueError(kind)


class Interrupted(Exception):
    """The runner itself got SIGTERM: it stops its nodes (each in its own session, so
    nothing else would) and reports the run as failed."""


def on_sigterm(signum, _frame):
    raise Interrupted(signum)


def main():
    signal.signal(signal.SIGTERM, on_sigterm)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=600, help="how long to inject faults")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--bin", default=None, help="the weir binary (default: target/debug/weir)")
    ap.add_argument("--workdir", default=None, help="data and logs (default: a temporary dir)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir after a success")
    ap.add_argument("--rate", type=int, default=500, help="records/s the producer sends")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--faults", default=None,
                    help="comma-separated fault kinds to draw from (default: all)")
    a = ap.parse_args()
    menu = FAULTS
    if a.faults:
        wanted = a.faults.split(",")
        unknown = [f for f in wanted if f not in dict(FAULTS)]
        if unknown:
            sys.exit(f"unknown fault kinds {unknown}; known: {[k for k, _ in FAULTS]}")
        menu = [(k, w) for k, w in FAULTS if k in wanted]

    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    rng = random.Random(seed)
    binary = a.bin or os.path.join(ROOT, "target", "debug", "weir")
    if not os.path.exists(binary):
        sys.exit(f"no weir binary at {binary}: build it (cargo build --bin weir) or pass --bin")
    workdir = a.workdir or tempfile.mkdtemp(prefix="weir-chaos-")
    os.makedirs(workdir, exist_ok=True)
    log(f"seed {seed}, {a.seconds}s of faults, binary {binary}, workdir {workdir}")

    cluster = Cluster(binary, workdir)
    for n in cluster.nodes:
        n.start()
    producer = None
    failures = []
    faults = []
    summary = None
    try:
        if not create_topic(cluster, a.partitions):
            failures.append("the topic could not be created (did the cluster form?)")
            raise SystemExit
        if not wait_until(lambda: cluster.healed(a.partitions), 60):
            failures.append(f"the new topic never became fully replicated: {cluster.routes()}")
            raise SystemExit
        stop_file = os.path.join(workdir, "stop")
        if os.path.exists(stop_file):
            os.remove(stop_file)
        bootstrap = ",".join(n.kafka for n in cluster.nodes)
        producer = subprocess.Popen(
            [sys.executable, VERIFIER, "--bootstrap", bootstrap, "--topic", TOPIC,
             "--stop", stop_file, "--rate", str(a.rate),
             "--max-seconds", str(a.seconds + 600)],
            stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "verifier.log"), "ab"),
            stdin=subprocess.DEVNULL, start_new_session=True)
        time.sleep(3)
        ends = time.time() + a.seconds
        kinds, weights = zip(*menu)
        while time.time() < ends:
            cluster.check_alive()
            kind = rng.choices(kinds, weights)[0]
            if kind == "replace":
                what, failure = replace_node(cluster, rng)
                if failure:
                    failures.append(failure)
            else:
                what = run_fault(kind, cluster, rng)
            faults.append(kind)
            log(what)
            quiet = round(rng.uniform(1.0, 8.0), 1)
            time.sleep(quiet)
        log("faults over: every node resumed and started; waiting for the cluster to heal")
        for n in cluster.nodes:
            if n.paused:
                n.resume()
            if not n.running():
                n.start()
        cluster.check_alive()
        if not wait_until(lambda: cluster.healed(a.partitions), 180, step=1.0):
            failures.append(f"the cluster did not heal within 180 s: {cluster.routes()}")
        with open(stop_file, "w"):
            pass
        try:
            out, _ = producer.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            producer.kill()
            out, _ = producer.communicate()
            failures.append("the verifier did not finish within 600 s")
        line = (out or b"").decode(errors="replace").strip().splitlines()
        try:
            summary = json.loads(line[-1]) if line else None
        except ValueError:
            summary = None
        if not summary or not summary.get("ok"):
            failures.append(f"verifier: {line[-1] if line else 'no output'}")
        cluster.check_alive()
    except SystemExit:
        pass
    except (Interrupted, KeyboardInterrupt) as e:
        failures.append(f"the runner was interrupted ({type(e).__name__} {e})")
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
        for n in cluster.nodes:
            if n.paused:
                n.resume()
            if n.running():
                n.terminate(within=10)
        for n in cluster.nodes + cluster.gone:
            if n.unexpected_exits:
                failures.append(f"node {n.id} exited on its own: {n.unexpected_exits}")
            for line in n.panicked()[:3]:
                failures.append(f"node {n.id} panicked: {line}")

    counts = {}
    for k in faults:
        counts[k] = counts.get(k, 0) + 1
    result = {
        "ok": not failures,
        "seed": seed,
        "seconds": a.seconds,
        "faults": len(faults),
        "fault_counts": counts,
        "verifier": summary,
        "failures": failures,
        "workdir": workdir,
    }
    print(json.dumps(result), flush=True)
    if failures:
        log(f"FAILED; logs kept in {workdir}")
        sys.exit(1)
    if not a.keep and a.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
