#!/usr/bin/env python3
"""Commits offsets for a group, or prints the group's committed offsets, with kafka-python
(no group membership: a "simple" commit). Used to check that commits survive a restart.

usage: committed_offsets.py --bootstrap B --topic T --group G commit P=O [P=O ...]
       committed_offsets.py --bootstrap B --topic T --group G show P [P ...]
Prints one JSON line {"P": offset-or-null, ...}.
"""
import argparse
import json

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("mode", choices=["commit", "show"])
    ap.add_argument("items", nargs="+")
    a = ap.parse_args()
    c = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group, enable_auto_commit=False)
    if a.mode == "commit":
        offsets = {}
        for item in a.items:
            p, o = item.split("=")
            offsets[TopicPartition(a.topic, int(p))] = OffsetAndMetadata(int(o), "", -1)
        c.commit(offsets)
        parts = [tp.partition for tp in offsets]
    else:
        parts = [int(p) for p in a.items]
    print(json.dumps({str(p): c.committed(TopicPartition(a.topic, p)) for p in parts}))
    c.close()


if __name__ == "__main__":
    main()
