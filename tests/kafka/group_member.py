#!/usr/bin/env python3
"""One confluent-kafka consumer-group member that stays in its group until told to leave: it
subscribes, reads every record of the topic's partitions up to --records in all, commits
offset --commit-at on each partition it was assigned (synchronously), prints one JSON line
{"phase": "ready", "assigned": [...], "committed": {...}} and keeps polling (so it stays a
member) until a line or EOF arrives on stdin; then it leaves the group and prints
{"ok": true}. Exits 1 with {"ok": false, "error": ...} on failure.

usage: group_member.py --bootstrap B --topic T --group G --records N --commit-at O
                       [--client-id ID]
"""
import argparse
import json
import sys
import threading
import time

from confluent_kafka import Consumer, TopicPartition


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}), flush=True)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--commit-at", type=int, required=True)
    ap.add_argument("--client-id", default="weir-group-member")
    a = ap.parse_args()

    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "client.id": a.client_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    })
    c.subscribe([a.topic])
    seen = 0
    deadline = time.time() + 60
    while seen < a.records:
        if time.time() > deadline:
            fail("read %d of %d records" % (seen, a.records))
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            fail("consume error: %s" % m.error())
        seen += 1
    assigned = sorted(tp.partition for tp in c.assignment())
    offsets = [TopicPartition(a.topic, p, a.commit_at) for p in assigned]
    done = c.commit(offsets=offsets, asynchronous=False)
    errors = [str(tp.error) for tp in done if tp.error]
    if errors:
        fail("commit failed: %s" % errors)
    print(json.dumps({
        "phase": "ready",
        "assigned": assigned,
        "committed": {str(p): a.commit_at for p in assigned},
    }), flush=True)

    stop = threading.Event()

    def wait_stdin():
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    while not stop.is_set():
        m = c.poll(0.2)
        if m is not None and m.error():
            fail("consume error: %s" % m.error())
    c.close()
    print(json.dumps({"ok": True}), flush=True)


if __name__ == "__main__":
    main()
