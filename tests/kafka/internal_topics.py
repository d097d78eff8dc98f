#!/usr/bin/env python3
"""Tries what a Kafka client must not be able to do to internal topics, with confluent-kafka:
produce to __consumer_offsets and to a processor's changelog, delete them, and delete a topic
a running processor reads. Commits an offset first (so __consumer_offsets exists) and reads
it back at the end. Then lists every topic's is_internal flag from Metadata, with
kafka-python's admin client (confluent-kafka's list_topics does not expose it).

usage: internal_topics.py --bootstrap B --input T --changelog C
Prints one JSON line: {"produce_<topic>": error name or "ok", "delete_<topic>": ...,
"committed": n, "internal": {"<topic>": true|false, ...}}.
"""
import argparse
import json

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient


def produce(bootstrap, topic):
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 20000,
                  "enable.idempotence": False})
    result = {}

    def report(err, _msg):
        result["r"] = err.name() if err else "ok"

    p.produce(topic, key=b"the", value=b"999999", partition=0, on_delivery=report)
    p.flush(30)
    return result.get("r", "no report")


def delete(admin, topic):
    f = admin.delete_topics([topic], operation_timeout=10)[topic]
    try:
        f.result(timeout=30)
        return "ok"
    except KafkaException as e:
        return e.args[0].name()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--changelog", required=True)
    a = ap.parse_args()
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "g-internal",
                  "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(a.input, 0, 5)], asynchronous=False)
    out = {}
    for t in ["__consumer_offsets", a.changelog]:
        out["produce_" + t] = produce(a.bootstrap, t)
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for t in ["__consumer_offsets", a.changelog, a.input]:
        out["delete_" + t] = delete(admin, t)
    out["committed"] = c.committed([TopicPartition(a.input, 0)], timeout=30)[0].offset
    c.close()
    kp = KafkaAdminClient(bootstrap_servers=a.bootstrap, client_id="internal-topics")
    out["internal"] = {t.get("name", t.get("topic")): t["is_internal"] for t in kp.describe_topics()}
    kp.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
