#!/usr/bin/env python3
"""A consumer group of two confluent-kafka members splits a topic's partitions; one member is
killed (SIGKILL, no goodbye); the other takes over its partitions from the committed offsets,
and nothing is skipped. Prints one JSON summary line; exits 1 on any failure.

usage: group_failover.py --bootstrap HOST:PORT --topic T [--records N]
       group_failover.py member ...   (internal: one group member)
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition

def fail(msg, **extra):
    print(json.dumps({"ok": False, "error": msg, **extra}))
    sys.exit(1)


def member(a):
    """Consumes slowly; logs every record before committing it synchronously."""
    out = open(a.out, "a", buffering=1)

    def on_assign(consumer, parts):
        out.write("assign %s\n" % ",".join(str(p.partition) for p in parts))

    def on_revoke(consumer, parts):
        out.write("revoke %s\n" % ",".join(str(p.partition) for p in parts))

    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": "range",
        # Small fetches, so the member interleaves its partitions instead of draining one
        # prefetched partition before it sees the next.
        "max.partition.fetch.bytes": 4096,
    })
    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)
    while True:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            out.write("error %s\n" % m.error())
            continue
        out.write("rec %d %d\n" % (m.partition(), m.offset()))
        c.commit(message=m, asynchronous=False)
        if os.path.exists(a.slow_flag):
            time.sleep(a.delay)


def read_log(path):
    recs, assigns = [], []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if not parts or not line.endswith("\n"):
                    continue
                if parts[0] == "rec":
                    recs.append((int(parts[1]), int(parts[2])))
                elif parts[0] == "assign":
                    assigns.append(sorted(int(x) for x in parts[1].split(",")) if len(parts) > 1 else [])
    except FileNotFoundError:
        pass
    return recs, assigns


def orchestrate(a):
    p = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "partitioner": "murmur2_random"})
    for i in range(a.records):
        p.produce(a.topic, key=b"k%d" % i, value=b"v%d" % i)
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(60):
        fail("initial records were not all delivered")
    probe = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group})
    nparts = len(probe.list_topics(a.topic, timeout=30).topics[a.topic].partitions)
    if nparts < 2:
        fail("the topic needs at least 2 partitions")
    ends = {pt: probe.get_watermark_offsets(TopicPartition(a.topic, pt), timeout=30)[1] for pt in range(nparts)}

    tmp = tempfile.mkdtemp()
    logs = [os.path.join(tmp, "a.log"), os.path.join(tmp, "b.log")]
    # Members consume slowly while this file exists, so the victim dies mid-partition.
    slow_flag = os.path.join(tmp, "slow")
    open(slow_flag, "w").close()
    procs = [subprocess.Popen([sys.executable, __file__, "member", "--bootstrap", a.bootstrap,
                               "--topic", a.topic, "--group", a.group, "--out", path,
                               "--delay", str(a.delay), "--slow-flag", slow_flag])
             for path in logs]
    try:
        # Both members own a share, and both have consumed and committed some records.
        deadline = time.time() + 120
        while True:
            (ra, aa), (rb, ab) = read_log(logs[0]), read_log(logs[1])
            if aa and ab and aa[-1] and ab[-1] and not set(aa[-1]) & set(ab[-1]) \
                    and sorted(aa[-1] + ab[-1]) == list(range(nparts)) \
                    and all(len([r for r in ra if r[0] == pt]) >= 5 for pt in aa[-1]) \
                    and all(len([r for r in rb if r[0] == pt]) >= 5 for pt in ab[-1]):
                break
            if time.time() > deadline:
                fail("the two members never split the partitions", a=aa, b=ab)
            time.sleep(0.1)
        victim_parts = ab[-1]
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait()
        rb, _ = read_log(logs[1])
        committed = {tp.partition: tp.offset for tp in probe.committed(
            [TopicPartition(a.topic, pt) for pt in victim_parts], timeout=30)}
        victim_last = {pt: max((o for (q, o) in rb if q == pt), default=-1) for pt in victim_parts}
        os.remove(slow_flag)

        # The survivor takes over and reaches the end of every partition.
        deadline = time.time() + 180
        while True:
            ra, aa = read_log(logs[0])
            done = {pt: max((o for (q, o) in ra + rb if q == pt), default=-1) for pt in range(nparts)}
            if aa and sorted(aa[-1]) == list(range(nparts)) and all(done[pt] >= ends[pt] - 1 for pt in range(nparts)):
                break
            if time.time() > deadline:
                fail("the survivor did not take over every partition", assigned=aa, done=done, ends=ends)
            time.sleep(0.2)
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.send_signal(signal.SIGKILL)
                pr.wait()
    probe.close()

    ra, _ = read_log(logs[0])
    rb, _ = read_log(logs[1])
    problems = []
    for pt in range(nparts):
        got = {o for (q, o) in ra + rb if q == pt}
        missing = [o for o in range(ends[pt]) if o not in got]
        if missing:
            problems.append(f"partition {pt}: {len(missing)} offsets never consumed, first {missing[:5]}")
    takeover = {}
    if all(committed.get(pt, -1) >= ends[pt] for pt in victim_parts):
        problems.append("the victim had finished its partitions before it was killed: nothing to take over")
    for pt in victim_parts:
        if committed.get(pt, -1) >= ends[pt]:
            continue
        survivor_offsets = [o for (q, o) in ra if q == pt]
        first = survivor_offsets[0] if survivor_offsets else None
        takeover[pt] = {"committed": committed.get(pt), "victim_last": victim_last[pt], "survivor_first": first}
        if first is None:
            problems.append(f"partition {pt}: the survivor never read it")
        elif first != committed.get(pt):
            problems.append(f"partition {pt}: survivor started at {first}, committed offset was {committed.get(pt)}")
        elif first > victim_last[pt] + 1:
            problems.append(f"partition {pt}: skipped from {victim_last[pt]} to {first}")
        elif first <= 0:
            problems.append(f"partition {pt}: survivor restarted from the beginning, not from a commit")
    summary = {
        "ok": not problems,
        "partitions": nparts,
        "victim_partitions": victim_parts,
        "takeover": {str(k): v for k, v in takeover.items()},
        "records_per_partition": {str(k): v for k, v in ends.items()},
        "consumed_by_survivor": len(ra),
        "consumed_by_victim": len(rb),
        "problems": problems,
    }
    print(json.dumps(summary))
    sys.exit(0 if not problems else 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", default="run", choices=["run", "member"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--group", default=None)
    ap.add_argument("--out")
    ap.add_argument("--delay", type=float, default=0.01)
    ap.add_argument("--slow-flag")
    a = ap.parse_args()
    a.group = a.group or "failover-" + a.topic
    member(a) if a.mode == "member" else orchestrate(a)


if __name__ == "__main__":
    main()
