#!/usr/bin/env python3
"""Transactional produce next to idempotent produce, one librdkafka producer each, same run.

usage: bench_txn.py --broker HOST:PORT [--num N] [--size BYTES] [--per-txn K ...]

Creates topics txb-idem and txb-txn-K (3 partitions) if missing, produces N records of SIZE
bytes with acks=all: once idempotent, then per K once transactional with K records per
transaction (begin, produce K, commit). Prints one JSON line per case.
"""
import argparse
import json
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def run(conf, topic, n, size, per_txn):
    p = Producer(conf)
    value = b"x" * size
    if per_txn:
        p.init_transactions(30)
    start = time.time()
    sent = 0
    while sent < n:
        k = min(per_txn or n, n - sent)
        if per_txn:
            p.begin_transaction()
        for _ in range(k):
            while True:
                try:
                    p.produce(topic, value=value)
                    break
                except BufferError:
                    p.poll(0.01)
        sent += k
        if per_txn:
            p.commit_transaction(60)
    p.flush(120)
    took = time.time() - start
    return {"records": n, "seconds": round(took, 2), "records_per_s": round(n / took)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--num", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--per-txn", type=int, nargs="*", default=[1000, 100])
    a = ap.parse_args()
    topics = ["txb-idem"] + [f"txb-txn-{k}" for k in a.per_txn]
    admin = AdminClient({"bootstrap.servers": a.broker})
    for f in admin.create_topics([NewTopic(t, 3, 1) for t in topics]).values():
        try:
            f.result()
        except KafkaException:
            pass  # exists
    base = {"bootstrap.servers": a.broker, "acks": "all", "linger.ms": 5}
    r = run({**base, "enable.idempotence": True}, "txb-idem", a.num, a.size, 0)
    print(json.dumps({"case": "idempotent", **r}))
    for k in a.per_txn:
        r = run({**base, "transactional.id": f"txb-{k}-{time.time()}"}, f"txb-txn-{k}",
                a.num, a.size, k)
        print(json.dumps({"case": f"transactional, {k} records per transaction",
                          "transactions_per_s": round(r["records_per_s"] / k), **r}))


if __name__ == "__main__":
    main()
