#!/usr/bin/env python3
"""A confluent-kafka consumer of group G commits offsets on a three-node cluster; the group's
coordinator is killed with SIGKILL (by the test, when this script asks); the same consumer
keeps consuming and committing through the coordinator's replacement, and a new consumer of
G then finds every offset committed.

Talks to the test over stdin/stdout:
  prints   {"phase": "kill", "coordinator": ID, "committed": {P: OFFSET}}
  waits    for one line on stdin (the coordinator is dead)
  prints   the JSON summary (last line; "ok": false and exit 1 on any failure)

Checked: nothing is skipped (every offset below the end is consumed), nothing committed
before the kill is consumed again after it (only what Kafka's at-least-once allows: records
after the last successful commit), and the commits made after the kill reached the new
coordinator (a fresh consumer of G sees the end offsets committed).

usage: group_coordinator_failover.py --bootstrap H:P[,H:P...] --topic T --group G [--records N]
"""
import argparse
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient


def fail(msg, **extra):
    print(json.dumps({"ok": False, "error": msg, **extra}), flush=True)
    sys.exit(1)


def consumer(a):
    return Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        # One record at a time per partition, so the consumer is mid-way when the
        # coordinator dies.
        "max.partition.fetch.bytes": 1024,
    })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--records", type=int, default=300)
    a = ap.parse_args()

    p = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "enable.idempotence": True})
    for i in range(a.records):
        p.produce(a.topic, key=b"k%d" % i, value=b"v%d" % i)
    if p.flush(60):
        fail("records were not all delivered")
    c = consumer(a)
    md = c.list_topics(a.topic, timeout=30).topics[a.topic]
    nparts = len(md.partitions)
    ends = {pt: c.get_watermark_offsets(TopicPartition(a.topic, pt), timeout=30)[1]
            for pt in range(nparts)}
    if sum(ends.values()) != a.records:
        fail("unexpected end offsets", ends=ends)

    c.subscribe([a.topic])
    consumed = []  # (phase, partition, offset)
    committed = {}  # partition -> offset acknowledged by the coordinator
    commit_errors = []
    phase = "before"

    def step():
        m = c.poll(0.2)
        if m is None:
            return
        if m.error():
            commit_errors.append("consume: %s" % m.error())
            return
        consumed.append((phase, m.partition(), m.offset()))
        try:
            for tp in c.commit(message=m, asynchronous=False):
                if tp.error is None:
                    committed[tp.partition] = max(committed.get(tp.partition, 0), tp.offset)
                else:
                    commit_errors.append("%s" % tp.error)
        except KafkaException as e:
            # Retriable while the coordinator moves; a later commit covers this record.
            commit_errors.append("%s" % e)
        if phase == "before" and committed.get(m.partition(), 0) >= ends[m.partition()] // 2:
            # Every partition stops half-way, so the coordinator dies mid-way in each.
            c.pause([TopicPartition(a.topic, m.partition())])

    # Before the kill: about half of every partition consumed and committed.
    deadline = time.time() + 60
    while not all(committed.get(pt, 0) >= ends[pt] // 2 for pt in range(nparts)):
        if time.time() > deadline:
            fail("the consumer never committed half of each partition", committed=committed)
        step()

    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    described = admin.describe_consumer_groups([a.group])[a.group].result(timeout=30)
    coordinator = described.coordinator.id
    before_kill = dict(committed)
    print(json.dumps({"phase": "kill", "coordinator": coordinator,
                      "committed": {str(k): v for k, v in before_kill.items()}}), flush=True)
    if not sys.stdin.readline():
        fail("the test went away")
    phase = "after"
    try:
        c.resume([TopicPartition(a.topic, pt) for pt in range(nparts)])
    except KafkaException:
        pass  # the assignment may already be gone (revoked on the way to the new coordinator)

    deadline = time.time() + 60
    while not all(committed.get(pt, 0) >= ends[pt] for pt in range(nparts)):
        if time.time() > deadline:
            fail("the consumer did not reach the end after the coordinator died",
                 committed=committed, ends=ends, errors=commit_errors[-10:])
        step()
    c.close()

    problems = []
    for pt in range(nparts):
        got = {o for (_, q, o) in consumed if q == pt}
        missing = [o for o in range(ends[pt]) if o not in got]
        if missing:
            problems.append("partition %d: %d offsets never consumed, first %s"
                            % (pt, len(missing), missing[:5]))
        again = [o for (ph, q, o) in consumed if ph == "after" and q == pt and o < before_kill[pt]]
        if again:
            problems.append("partition %d: offsets committed before the kill consumed again: %s"
                            % (pt, again[:5]))

    # A new member of the group finds everything committed.
    fresh = consumer(a)
    seen = {tp.partition: tp.offset for tp in fresh.committed(
        [TopicPartition(a.topic, pt) for pt in range(nparts)], timeout=30)}
    fresh.close()
    if seen != ends:
        problems.append("committed offsets seen by a new member %s, expected %s" % (seen, ends))

    redelivered = len(consumed) - len({(q, o) for (_, q, o) in consumed})
    print(json.dumps({
        "ok": not problems,
        "partitions": nparts,
        "ends": {str(k): v for k, v in ends.items()},
        "committed_before_kill": {str(k): v for k, v in before_kill.items()},
        "coordinator": coordinator,
        "consumed": len(consumed),
        "redelivered": redelivered,
        "retried_commit_errors": len(commit_errors),
        "sample_errors": commit_errors[:5],
        "problems": problems,
    }), flush=True)
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
