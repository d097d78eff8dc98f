#!/usr/bin/env python3
"""confluent-kafka's AdminClient against a cluster: DescribeCluster, DeleteGroups of a group
with a committed offset (at the group's coordinator), and the topic admin APIs a cluster
does not serve yet for replicated topics (DeleteRecords, CreatePartitions,
IncrementalAlterConfigs), whose errors it reports by name. Prints one JSON summary line.

usage: admin_cluster.py --bootstrap HOST:PORT[,…] --topic T
"""
import argparse
import json

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewPartitions)


def err(f):
    try:
        f.result(timeout=60)
        return None
    except KafkaException as e:
        return e.args[0].name()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    out = {"ok": True}
    cluster = admin.describe_cluster(request_timeout=60).result(timeout=60)
    out["nodes"] = sorted(n.id for n in cluster.nodes)
    out["controller"] = cluster.controller.id if cluster.controller else None
    out["delete_records"] = err(list(admin.delete_records(
        [TopicPartition(a.topic, 0, 1)], request_timeout=60).values())[0])
    out["create_partitions"] = err(admin.create_partitions(
        [NewPartitions(a.topic, 6)], request_timeout=60)[a.topic])
    res = ConfigResource("topic", a.topic, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    out["alter_configs"] = err(list(admin.incremental_alter_configs(
        [res], request_timeout=60).values())[0])
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "cluster-admin-group"})
    c.commit(offsets=[TopicPartition(a.topic, 0, 1)], asynchronous=False)
    c.close()
    g = "cluster-admin-group"
    out["delete_group"] = err(admin.delete_consumer_groups([g], request_timeout=60)[g])
    out["delete_group_again"] = err(admin.delete_consumer_groups([g], request_timeout=60)[g])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
