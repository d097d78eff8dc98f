#!/usr/bin/env python3
"""Produces or consumes with confluent-kafka over SASL_PLAINTEXT (SASL_SSL with --ca), and reports what happened:
records delivered and the error names of those that were not, records consumed, and whether
authentication failed. Used by tests/e2e/auth.rs and tests/e2e/secure.rs.

usage: sasl_client.py --bootstrap B --mechanism M --user U --password P produce TOPIC N
       sasl_client.py ... consume TOPIC N --group G
       sasl_client.py ... admin TOPIC N --group G
Prints one JSON line: {"delivered": n, "errors": [...], "consumed": n, "auth_failed": bool,
"topic_errors": [...]}; in admin mode {"admin": {api: error name or null}} for
DeleteRecords (below offset 1), CreatePartitions (to N), IncrementalAlterConfigs
(retention.ms) of TOPIC and DeleteGroups of G.
"""
import argparse
import json
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewPartitions)


def admin_errors(conf, topic, n, group):
    """The error name (or None) of each admin API called on `topic` and `group`."""
    admin = AdminClient(conf)

    def err(f):
        try:
            f.result(timeout=60)
            return None
        except KafkaException as e:
            return e.args[0].name()

    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    return {
        "delete_records": err(list(admin.delete_records(
            [TopicPartition(topic, 0, 1)], request_timeout=60).values())[0]),
        "create_partitions": err(admin.create_partitions(
            [NewPartitions(topic, n)], request_timeout=60)[topic]),
        "alter_configs": err(list(admin.incremental_alter_configs(
            [res], request_timeout=60).values())[0]),
        "delete_group": err(admin.delete_consumer_groups([group], request_timeout=60)[group]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--mechanism", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--group", default="sasl-test")
    ap.add_argument("--ca", help="CA certificate (PEM): SASL_SSL instead of SASL_PLAINTEXT")
    ap.add_argument("mode", choices=["produce", "consume", "admin"])
    ap.add_argument("topic")
    ap.add_argument("n", type=int)
    a = ap.parse_args()
    conf = {
        "bootstrap.servers": a.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": a.mechanism,
        "sasl.username": a.user,
        "sasl.password": a.password,
    }
    if a.ca:
        conf["security.protocol"] = "SASL_SSL"
        conf["ssl.ca.location"] = a.ca
    out = {"delivered": 0, "errors": [], "consumed": 0, "auth_failed": False, "topic_errors": []}

    def on_error(err):
        if err.code() == KafkaError._AUTHENTICATION:
            out["auth_failed"] = True

    conf["error_cb"] = on_error
    deadline = time.time() + 30
    if a.mode == "admin":
        out["admin"] = admin_errors(conf, a.topic, a.n, a.group)
    elif a.mode == "produce":
        p = Producer({**conf, "message.timeout.ms": 10000, "retries": 0})

        def done(err, _msg):
            if err is None:
                out["delivered"] += 1
            else:
                out["errors"].append(err.name())

        for i in range(a.n):
            p.produce(a.topic, key=f"k{i}", value=f"v{i}", on_delivery=done)
            p.poll(0)
        while len(p) > 0 and time.time() < deadline and not out["auth_failed"]:
            p.poll(0.2)
    else:
        c = Consumer({**conf, "group.id": a.group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe([a.topic])
        while out["consumed"] < a.n and time.time() < deadline and not out["auth_failed"]:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                out["topic_errors"].append(m.error().name())
                if m.error().code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                        KafkaError.GROUP_AUTHORIZATION_FAILED):
                    break
                continue
            out["consumed"] += 1
        c.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
