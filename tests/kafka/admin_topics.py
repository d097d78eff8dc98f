#!/usr/bin/env python3
"""confluent-kafka's AdminClient on a topic the caller filled with 10 records in partition 0:
DeleteRecords up to --delete-before, ListOffsets earliest, a consumer from the earliest
offset, CreatePartitions (a grow to 3 and a shrink to 1) and DescribeCluster. Prints one JSON
summary line; "ok" is false only when the client itself fails in a way the test did not
expect.

usage: admin_topics.py --bootstrap HOST:PORT --topic T --delete-before N
"""
import argparse
import json

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, OffsetSpec


def error_name(f):
    try:
        f.result(timeout=60)
        return None
    except KafkaException as e:
        return e.args[0].name()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--delete-before", type=int, required=True)
    a = ap.parse_args()
    out = {"ok": True}
    admin = AdminClient({"bootstrap.servers": a.bootstrap})

    tp = TopicPartition(a.topic, 0, a.delete_before)
    deleted = admin.delete_records([tp], request_timeout=60)
    out["low_watermark"] = list(deleted.values())[0].result(timeout=60).low_watermark
    # Past the end: the broker's error, as the client reports it.
    past = admin.delete_records([TopicPartition(a.topic, 0, 1_000_000)])
    out["past_end_error"] = error_name(list(past.values())[0])

    listed = admin.list_offsets({TopicPartition(a.topic, 0): OffsetSpec.earliest()})
    out["earliest"] = list(listed.values())[0].result(timeout=60).offset

    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": "admin-topics-reader",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.assign([TopicPartition(a.topic, 0, -2)])  # OFFSET_BEGINNING
    offsets = []
    while len(offsets) < 10:
        m = c.poll(5.0)
        if m is None:
            break
        if m.error():
            out["consume_error"] = m.error().name()
            break
        offsets.append(m.offset())
    c.close()
    out["consumed_offsets"] = offsets

    grow = admin.create_partitions([NewPartitions(a.topic, 3)])
    out["grow_error"] = error_name(grow[a.topic])
    shrink = admin.create_partitions([NewPartitions(a.topic, 1)])
    out["shrink_error"] = error_name(shrink[a.topic])
    md = admin.list_topics(topic=a.topic, timeout=30)
    out["partitions"] = len(md.topics[a.topic].partitions)

    cluster = admin.describe_cluster(request_timeout=60).result(timeout=60)
    out["cluster_id"] = cluster.cluster_id
    out["controller"] = cluster.controller.id if cluster.controller else None
    out["nodes"] = [n.id for n in cluster.nodes]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
