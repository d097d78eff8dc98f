#!/usr/bin/env python3
"""confluent-kafka: produces single records with acks=all and no client retries to one
partition, one at a time, until the delivery outcome is the wanted one (an error name such
as NOT_ENOUGH_REPLICAS, or "ok" for an acknowledgement) or the time is up. Prints one JSON
line: {"matched": bool, "seconds": float, "outcomes": {name: count}, "acked": [values]}.

usage: acks_all_until.py --bootstrap H:P[,H:P] --topic T --partition N --until NAME
                         [--max-seconds S]
"""
import argparse
import json
import time

from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partition", type=int, required=True)
    ap.add_argument("--until", required=True)
    ap.add_argument("--max-seconds", type=float, default=60)
    a = ap.parse_args()

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "retries": 0,
        "request.timeout.ms": 3000,
        "message.timeout.ms": 4000,
        "linger.ms": 0,
    })
    outcomes = {}
    acked = []
    started = time.time()
    n = 0
    matched = False
    while time.time() - started < a.max_seconds:
        result = []
        value = f"probe-{int(started)}-{n}".encode()
        n += 1
        p.produce(a.topic, value=value, partition=a.partition,
                  on_delivery=lambda err, msg: result.append((err, msg)))
        p.flush(10)
        if not result:
            name = "NO_REPORT"
        else:
            err, msg = result[0]
            name = "ok" if err is None else err.name()
            if err is None:
                acked.append(msg.value().decode())
        outcomes[name] = outcomes.get(name, 0) + 1
        if name == a.until:
            matched = True
            break
        time.sleep(0.2)
    print(json.dumps({"matched": matched, "seconds": round(time.time() - started, 1),
                      "outcomes": outcomes, "acked": acked}))


if __name__ == "__main__":
    main()
