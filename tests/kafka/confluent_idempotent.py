#!/usr/bin/env python3
"""confluent-kafka (librdkafka) against Weir: N records with acks=all and idempotence, then
every record consumed back. Prints one JSON summary line; exits 1 on any failure.

usage: confluent_idempotent.py --bootstrap HOST:PORT --topic T [--num N]
"""
import argparse
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--num", type=int, default=100_000)
    a = ap.parse_args()

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        # Java's partitioner, so keys land where Weir's HTTP produce puts them.
        "partitioner": "murmur2_random",
    })
    errors = []
    delivered = {}

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered[msg.key().decode()] = (msg.partition(), msg.offset())

    for i in range(a.num):
        while True:
            try:
                p.produce(a.topic, key=b"key-%d" % i, value=b"value-%d" % i,
                          headers=[("seq", str(i).encode())], on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        if i % 5000 == 0:
            p.poll(0)
    left = p.flush(120)
    if left or errors:
        fail(f"{left} records undelivered, {len(errors)} errors: {errors[:3]}")
    if len(delivered) != a.num:
        fail(f"{len(delivered)} delivery reports for {a.num} records")

    partitions = sorted({pt for pt, _ in delivered.values()})
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "confluent-idempotent-check",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    meta = c.list_topics(a.topic, timeout=30).topics[a.topic]
    c.assign([TopicPartition(a.topic, pt, 0) for pt in meta.partitions])
    seen = {}
    duplicates = 0
    deadline = time.time() + 180
    while len(seen) < a.num and time.time() < deadline:
        for m in c.consume(10_000, 1.0):
            if m.error():
                fail(f"consume error: {m.error()}")
            k = m.key().decode()
            if k in seen:
                duplicates += 1
            seen[k] = (m.partition(), m.offset())
            if m.value() != b"value-" + k.split("-")[1].encode():
                fail(f"wrong value for {k}: {m.value()!r}")
    c.close()
    if len(seen) != a.num:
        fail(f"consumed {len(seen)} distinct records of {a.num}")
    mismatched = [k for k, v in delivered.items() if seen.get(k) != v]
    if mismatched:
        fail(f"{len(mismatched)} records read back at other offsets, e.g. {mismatched[:3]}")
    per_partition = {}
    for pt, _ in delivered.values():
        per_partition[pt] = per_partition.get(pt, 0) + 1
    print(json.dumps({
        "ok": duplicates == 0,
        "produced": len(delivered),
        "consumed": len(seen),
        "duplicates": duplicates,
        "per_partition": {str(k): v for k, v in sorted(per_partition.items())},
        "sample": {k: delivered[k] for k in ["key-0", "key-1", "key-2"] if k in delivered},
    }))
    if duplicates:
        sys.exit(1)


if __name__ == "__main__":
    main()
