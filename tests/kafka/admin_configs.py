#!/usr/bin/env python3
"""confluent-kafka's AdminClient alters and describes a topic's configs
(IncrementalAlterConfigs, DescribeConfigs). Prints one JSON summary line with what the broker
answered: "configs" maps each config to [value, source]; "errors" maps each refused change
to the error's name.

--mode set:   SET segment.bytes=1024, retention.bytes=3000, retention.ms=86400000,
              min.insync.replicas=1; then changes the broker must refuse (each alone).
--mode reset: DELETE retention.bytes and segment.bytes, APPEND compact to cleanup.policy.

usage: admin_configs.py --bootstrap HOST:PORT --topic T --mode set|reset
"""
import argparse
import json

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource)

SET = AlterConfigOpType.SET
DELETE = AlterConfigOpType.DELETE
APPEND = AlterConfigOpType.APPEND


def alter(admin, topic, changes):
    """Applies [(name, value, op)] to `topic`; returns None or the error's name."""
    entries = [ConfigEntry(n, v, incremental_operation=op) for n, v, op in changes]
    res = ConfigResource("topic", topic, incremental_configs=entries)
    fut = admin.incremental_alter_configs([res], request_timeout=60)
    try:
        list(fut.values())[0].result(timeout=60)
        return None
    except KafkaException as e:
        return e.args[0].name()


def describe(admin, topic):
    fut = admin.describe_configs([ConfigResource("topic", topic)], request_timeout=60)
    configs = list(fut.values())[0].result(timeout=60)
    return {n: [c.value, int(getattr(c.source, "value", c.source))] for n, c in configs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--mode", required=True, choices=["set", "reset"])
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    out = {"ok": True, "errors": {}}
    if a.mode == "set":
        out["error"] = alter(admin, a.topic, [
            ("segment.bytes", "1024", SET),
            ("retention.bytes", "3000", SET),
            ("retention.ms", "86400000", SET),
            ("min.insync.replicas", "1", SET),
        ])
        for name, value, op in [
            ("no.such.config", "1", SET),
            ("min.insync.replicas", "2", SET),
            ("retention.ms", "soon", SET),
            ("segment.bytes", "10", SET),
            ("segment.bytes", "4096", APPEND),
        ]:
            out["errors"][f"{name}={value}/{op.name}"] = alter(admin, a.topic, [(name, value, op)])
        out["errors"]["unknown topic"] = alter(admin, "no-such-topic", [("retention.ms", "1", SET)])
    else:
        out["error"] = alter(admin, a.topic, [
            ("retention.bytes", None, DELETE),
            ("segment.bytes", None, DELETE),
            ("cleanup.policy", "compact", APPEND),
        ])
    out["configs"] = describe(admin, a.topic)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
