#!/usr/bin/env python3
"""confluent-kafka (librdkafka) over Kafka `SSL` against Weir: N records produced, then all
consumed back, verifying the server with a CA file and optionally presenting a client
certificate (mTLS). Prints one JSON summary line; exits 1 on any failure.

usage: tls_roundtrip.py --bootstrap HOST:PORT --topic T --ca CA.pem [--cert C --key K] [--num N]
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
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--num", type=int, default=1000)
    a = ap.parse_args()

    tls = {
        "bootstrap.servers": a.bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": a.ca,
        "ssl.endpoint.identification.algorithm": "https",
    }
    if a.cert:
        tls["ssl.certificate.location"] = a.cert
        tls["ssl.key.location"] = a.key

    errors = []
    delivered = [0]

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered[0] += 1

    p = Producer({**tls, "acks": "all", "linger.ms": 5, "message.timeout.ms": 20000})
    for i in range(a.num):
        while True:
            try:
                p.produce(a.topic, key=b"k%d" % i, value=b"tls-value-%d" % i,
                          on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
    left = p.flush(30)
    if left or errors or delivered[0] != a.num:
        fail(f"produce: {left} undelivered, {delivered[0]} delivered, errors {errors[:3]}")

    c = Consumer({**tls, "group.id": "tls-check", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(a.topic, 0, 0)])
    seen = set()
    deadline = time.time() + 30
    while len(seen) < a.num and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            fail(f"consume: {m.error()}")
        seen.add(m.value())
    c.close()
    if len(seen) != a.num:
        fail(f"consumed {len(seen)} of {a.num}")
    print(json.dumps({"ok": True, "produced": a.num, "consumed": len(seen)}))


if __name__ == "__main__":
    main()
