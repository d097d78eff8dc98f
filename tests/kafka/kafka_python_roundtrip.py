#!/usr/bin/env python3
"""kafka-python against Weir: produce keyed records with headers (kafka-python's default
partitioner is Java's murmur2), consume them in a group, commit and fetch offsets, and resume
from the committed offsets in a new consumer of the same group. Prints one JSON summary line
with where each key landed; exits 1 on any failure.

usage: kafka_python_roundtrip.py --bootstrap HOST:PORT --topic T [--num N]
"""
import argparse
import json
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--group", default="kafka-python-group")
    a = ap.parse_args()

    producer = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all", linger_ms=5)
    futures = [producer.send(a.topic, key=b"kp-%d" % i, value=b"value-%d" % i,
                             headers=[("origin", b"kafka-python"), ("i", str(i).encode())])
               for i in range(a.num)]
    producer.flush()
    placed = {}
    for i, f in enumerate(futures):
        md = f.get(timeout=30)
        placed["kp-%d" % i] = (md.partition, md.offset)
    producer.close()

    consumer = KafkaConsumer(a.topic, bootstrap_servers=a.bootstrap, group_id=a.group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=20000)
    seen = {}
    for m in consumer:
        k = m.key.decode()
        headers = dict(m.headers)
        if headers.get("origin") != b"kafka-python" or m.value != b"value-" + k.split("-")[1].encode():
            fail(f"record {k} came back wrong: {m.value!r} {m.headers!r}")
        seen[k] = (m.partition, m.offset)
        if len(seen) == a.num:
            break
    if seen != placed:
        fail(f"consumed {len(seen)} of {a.num} records, or at other offsets than produced")
    partitions = sorted(consumer.assignment(), key=lambda tp: tp.partition)
    # Commit a point in the middle of each partition, with metadata, and read it back.
    want = {}
    for tp in partitions:
        offsets = sorted(o for (p, o) in placed.values() if p == tp.partition)
        if offsets:
            want[tp] = offsets[len(offsets) // 2]
    consumer.commit({tp: OffsetAndMetadata(o, "mid", -1) for tp, o in want.items()})
    for tp, o in want.items():
        got = consumer.committed(tp)
        if got != o:
            fail(f"committed offset of {tp} is {got}, expected {o}")
    consumer.close()

    # A new member of the group resumes exactly at the committed offsets.
    resumed = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group,
                            auto_offset_reset="earliest", enable_auto_commit=False,
                            consumer_timeout_ms=20000)
    resumed.subscribe([a.topic])
    first = {}
    for m in resumed:
        first.setdefault(m.partition, m.offset)
        if len(first) == len(want):
            break
    resumed.close()
    expected_first = {tp.partition: o for tp, o in want.items()}
    if first != expected_first:
        fail(f"resumed at {first}, committed {expected_first}")
    print(json.dumps({
        "ok": True,
        "produced": len(placed),
        "consumed": len(seen),
        "committed": {str(k): v for k, v in sorted(expected_first.items())},
        "placement": {k: v[0] for k, v in placed.items()},
    }))


if __name__ == "__main__":
    main()
