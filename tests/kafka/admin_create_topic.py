#!/usr/bin/env python3
"""confluent-kafka's AdminClient creates one topic (CreateTopics) and reports what the
broker answered. Prints one JSON summary line: {"ok": true, "created": bool, "code": int,
"name": str, "message": str}; "ok" is false only when the client itself fails.

usage: admin_create_topic.py --bootstrap HOST:PORT --topic T --partitions N
"""
import argparse
import json

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    a = ap.parse_args()

    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    futures = admin.create_topics(
        [NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1)],
        request_timeout=120,
    )
    try:
        futures[a.topic].result(timeout=180)
        print(json.dumps({"ok": True, "created": True}))
    except KafkaException as e:
        err = e.args[0]
        print(json.dumps({"ok": True, "created": False, "code": err.code(),
                          "name": err.name(), "message": err.str()}))
    except Exception as e:  # the client failed (timeout, …)
        print(json.dumps({"ok": False, "error": repr(e)}))


if __name__ == "__main__":
    main()
