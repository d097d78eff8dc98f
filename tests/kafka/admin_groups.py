#!/usr/bin/env python3
"""confluent-kafka's AdminClient on consumer groups: ListGroups and DescribeGroups (protocol
type `consumer` while the group has members and after it is empty), DeleteGroups refused for
a group with members and done for an empty one, OffsetDelete (KIP-496, through kafka-python's
KafkaAdminClient: confluent-kafka's Python API lacks it) refused for a topic the group
subscribes to and done once it does not, and the committed offsets of a deleted topic gone
when it is created again. The caller created --topic with 3 partitions holding
records. Prints one JSON summary line.

usage: admin_groups.py --bootstrap HOST:PORT --topic T --group G
"""
import argparse
import json
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient
from kafka.structs import TopicPartition as KTopicPartition


def offset_delete(kp, group, topic, partition):
    """OffsetDelete through kafka-python: None or the error's class name."""
    try:
        res = kp.delete_group_offsets(group, [KTopicPartition(topic, partition)])
    except Exception as e:  # a group-level error
        return type(e).__name__
    e = list(res.values())[0]
    return None if e.__name__ == "NoError" else e.__name__


def err(f):
    try:
        f.result(timeout=60)
        return None
    except KafkaException as e:
        return e.args[0].name()


def describe(admin, group):
    d = admin.describe_consumer_groups([group], request_timeout=60)[group].result(timeout=60)
    return {"state": d.state.name, "simple": d.is_simple_consumer_group,
            "members": len(d.members), "assignor": d.partition_assignor}


def listed(admin, group):
    res = admin.list_consumer_groups(request_timeout=60).result(timeout=60)
    for g in res.valid:
        if g.group_id == group:
            return {"state": g.state.name, "simple": g.is_simple_consumer_group}
    return None


def committed(admin, group, topic):
    req = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(3)])]
    res = list(admin.list_consumer_group_offsets(req, request_timeout=60).values())[0]
    return sorted([tp.partition, tp.offset] for tp in res.result(timeout=60).topic_partitions)


def consume_all(bootstrap, group, topic, want):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000})
    c.subscribe([topic])
    n, deadline = 0, time.time() + 60
    while n < want and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            n += 1
    c.commit(asynchronous=False)
    return c, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--records", type=int, default=30)
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    out = {"ok": True}

    c, out["consumed"] = consume_all(a.bootstrap, a.group, a.topic, a.records)
    out["active_describe"] = describe(admin, a.group)
    out["active_list"] = listed(admin, a.group)
    out["delete_active_group"] = err(admin.delete_consumer_groups([a.group], request_timeout=60)[a.group])
    kp = KafkaAdminClient(bootstrap_servers=a.bootstrap)
    out["delete_subscribed_offsets"] = offset_delete(kp, a.group, a.topic, 0)
    c.close()

    out["empty_describe"] = describe(admin, a.group)
    out["empty_list"] = listed(admin, a.group)
    out["offset_delete"] = offset_delete(kp, a.group, a.topic, 0)
    out["committed_after_offset_delete"] = committed(admin, a.group, a.topic)
    out["delete_group"] = err(admin.delete_consumer_groups([a.group], request_timeout=60)[a.group])
    out["deleted_describe"] = describe(admin, a.group)
    out["deleted_list"] = listed(admin, a.group)
    out["delete_again"] = err(admin.delete_consumer_groups([a.group], request_timeout=60)[a.group])
    out["offset_delete_unknown_group"] = offset_delete(kp, "no-such-group", a.topic, 0)
    kp.close()

    # A deleted topic takes its committed offsets with it.
    c, _ = consume_all(a.bootstrap, a.group, a.topic, a.records)
    c.close()
    out["committed_before_topic_delete"] = committed(admin, a.group, a.topic)
    out["delete_topic"] = err(admin.delete_topics([a.topic], request_timeout=60)[a.topic])
    time.sleep(0.5)
    out["create_topic"] = err(admin.create_topics([NewTopic(a.topic, 3, 1)], request_timeout=60)[a.topic])
    out["committed_after_recreate"] = committed(admin, a.group, a.topic)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
