#!/usr/bin/env python3
"""confluent-kafka (librdkafka) transactions against Weir. Prints one JSON summary line;
exits 1 on any failure.

usage: confluent_transactions.py MODE --bootstrap HOST:PORT --topic T [options]

modes:
  commit-abort  three transactions (commit, abort, commit) of --num records each, then a
                read_committed and a read_uncommitted consumer read the topic to its end
  ctp           consume-transform-produce: reads --topic (filled first, outside any
                transaction) with group --group, writes to --out in transactions with
                send_offsets_to_transaction; aborts the first transaction and checks the
                group's committed offsets did not move, commits the rest
  fence         two producers with one transactional.id: the second fences the first
  begin         opens a transaction, produces --num records, flushes and exits without
                ending it (the test then kills the server)
  timeout       a transaction left open past its timeout is aborted and its producer fenced
  commit-kill   one record per partition, commit, and SIGKILL of --kill-pid after --delay-ms
  atomic        read_committed sees that transaction (--prefix) in all --expect partitions or none
  refused       (a cluster) init_transactions must fail fast, not hang
  read          a read_committed consumer reads the topic to the end (--expect records,
                with values starting with --prefix only), then a new producer with
                --txn-id commits a transaction
  updates       an exactly-once word count's topics read with read_committed: --topic
                (the counts, word -> count) and --out (its repartition topic, word -> how
                many times the word occurs in a batch); per word: the sum of the
                repartitioned additions, the number of updates, the last count, and whether
                the counts are exactly the running sums of the additions in order (each
                addition counted once: none repeated, none missing)
  abort-input   a committed transaction of --num records "c-<i>", an aborted one of --num
                records "ab-<i>", then another committed one: input for a processor
"""
import argparse
import json
import sys
import time

from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)


def fail(msg, **extra):
    print(json.dumps({"ok": False, "error": msg, **extra}))
    sys.exit(1)


def producer(a, txn_id, **extra):
    conf = {
        "bootstrap.servers": a.bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
    }
    conf.update(extra)
    return Producer(conf)


def consume_all(a, topic, isolation, group=None, timeout=30.0, expect=None):
    """Every record of `topic` from the beginning up to the end the consumer sees
    (read_committed: the last stable offset), as (partition, offset, value) tuples."""
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": group or f"reader-{isolation}-{time.time()}",
        "isolation.level": isolation,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions.keys())
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    got = []
    eof = set()
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            if len(eof) == len(parts) and (expect is None or len(got) >= expect):
                break
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                if len(eof) == len(parts) and (expect is None or len(got) >= expect):
                    break
                continue
            fail(f"consumer error: {m.error()}")
        eof.discard(m.partition())
        got.append((m.partition(), m.offset(), m.value().decode()))
    c.close()
    return got, len(eof) == len(parts)


def produce_txn(p, topic, values, commit):
    p.begin_transaction()
    for v in values:
        p.produce(topic, key=v.encode(), value=v.encode())
    p.flush(30)
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)


def mode_commit_abort(a):
    p = producer(a, a.txn_id)
    p.init_transactions(30)
    n = a.num
    produce_txn(p, a.topic, [f"c1-{i}" for i in range(n)], True)
    produce_txn(p, a.topic, [f"ab-{i}" for i in range(n)], False)
    produce_txn(p, a.topic, [f"c2-{i}" for i in range(n)], True)
    committed, eof_c = consume_all(a, a.topic, "read_committed")
    uncommitted, eof_u = consume_all(a, a.topic, "read_uncommitted")
    cv = [v for _, _, v in committed]
    uv = [v for _, _, v in uncommitted]
    if not eof_c or not eof_u:
        fail("a consumer did not reach the end", committed=len(cv), uncommitted=len(uv))
    if sorted(cv) != sorted([f"c1-{i}" for i in range(n)] + [f"c2-{i}" for i in range(n)]):
        fail("read_committed saw the wrong records", sample=cv[:5], count=len(cv))
    if len(uv) != 3 * n or sum(v.startswith("ab-") for v in uv) != n:
        fail("read_uncommitted did not see every record", count=len(uv))
    print(json.dumps({"ok": True, "read_committed": len(cv), "read_uncommitted": len(uv),
                      "aborted_seen_by_committed": sum(v.startswith("ab-") for v in cv)}))


def committed_offsets(a, group, topic, parts):
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    offs = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
    c.close()
    return {tp.partition: tp.offset for tp in offs}


def mode_ctp(a):
    # Input, outside any transaction.
    plain = Producer({"bootstrap.servers": a.bootstrap})
    for i in range(a.num):
        plain.produce(a.topic, key=f"k{i}".encode(), value=f"in-{i}".encode())
    plain.flush(30)
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([a.topic])
    p = producer(a, a.txn_id)
    p.init_transactions(30)
    md = c.list_topics(a.topic, timeout=10)
    parts = sorted(md.topics[a.topic].partitions.keys())
    seen = 0
    rounds = 0
    aborted_round_checked = False
    deadline = time.time() + 60
    while seen < a.num and time.time() < deadline:
        msgs = c.consume(100, 1.0)
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            continue
        p.begin_transaction()
        for m in msgs:
            p.produce(a.out, key=m.key(), value=b"out-" + m.value())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
        if rounds == 0:
            before = committed_offsets(a, a.group, a.topic, parts)
            p.abort_transaction(30)
            after = committed_offsets(a, a.group, a.topic, parts)
            if before != after or any(o >= 0 for o in after.values()):
                fail("an aborted transaction moved the group's offsets", before=before, after=after)
            aborted_round_checked = True
            # Rewind to the last committed position (none: the beginning).
            for tp in c.assignment():
                c.seek(TopicPartition(tp.topic, tp.partition, 0))
            rounds += 1
            continue
        p.commit_transaction(30)
        seen += len(msgs)
        rounds += 1
    c.close()
    if seen < a.num:
        fail(f"transformed {seen} of {a.num} records")
    final = committed_offsets(a, a.group, a.topic, parts)
    ends = {}
    lc = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "probe"})
    for part in parts:
        ends[part] = lc.get_watermark_offsets(TopicPartition(a.topic, part), timeout=10)[1]
    lc.close()
    if final != ends:
        fail("the group's committed offsets are not at the end", committed=final, ends=ends)
    out, eof = consume_all(a, a.out, "read_committed")
    values = sorted(v for _, _, v in out)
    want = sorted(f"out-in-{i}" for i in range(a.num))
    if values != want:
        fail("the output is not each input exactly once", count=len(values),
             dupes=len(values) - len(set(values)))
    raw, _ = consume_all(a, a.out, "read_uncommitted")
    print(json.dumps({"ok": True, "rounds": rounds, "output": len(values),
                      "output_uncommitted": len(raw), "aborted_round_checked": aborted_round_checked,
                      "committed": {str(k): v for k, v in final.items()}}))


def mode_fence(a):
    p1 = producer(a, a.txn_id)
    p1.init_transactions(30)
    p1.begin_transaction()
    p1.produce(a.topic, value=b"zombie-1")
    p1.flush(30)
    p2 = producer(a, a.txn_id)
    p2.init_transactions(30)  # fences p1 and aborts its transaction
    error = None
    try:
        p1.produce(a.topic, value=b"zombie-2")
        p1.flush(10)
        p1.commit_transaction(10)
    except KafkaException as e:
        err = e.args[0]
        error = {"name": err.name(), "fatal": err.fatal(), "str": err.str()}
    if error is None:
        fail("the fenced producer committed")
    produce_txn(p2, a.topic, ["live-0", "live-1"], True)
    got, _ = consume_all(a, a.topic, "read_committed")
    values = sorted(v for _, _, v in got)
    if values != ["live-0", "live-1"]:
        fail("read_committed saw the zombie's records", values=values)
    print(json.dumps({"ok": True, "zombie_error": error, "committed": values}))


def mode_begin(a):
    p = producer(a, a.txn_id)
    p.init_transactions(30)
    produce_txn(p, a.topic, [f"before-{i}" for i in range(a.num)], True)
    p.begin_transaction()
    for i in range(a.num):
        p.produce(a.topic, value=f"inflight-{i}".encode())
    p.flush(30)
    print(json.dumps({"ok": True, "in_flight": a.num}))
    sys.stdout.flush()
    # Exit without ending the transaction, as a crashed producer would.
    import os
    os._exit(0)


def mode_read(a):
    start = time.time()
    got, eof = consume_all(a, a.topic, "read_committed", timeout=30, expect=a.expect)
    took = time.time() - start
    values = [v for _, _, v in got]
    if not eof:
        fail("read_committed did not reach the end (stuck below an open transaction?)",
             count=len(values))
    bad = [v for v in values if not v.startswith(a.prefix)]
    if bad or len(values) != a.expect:
        fail("read_committed saw the wrong records", count=len(values), bad=bad[:5])
    p = producer(a, a.txn_id)
    p.init_transactions(30)
    produce_txn(p, a.topic, ["after-0"], True)
    got, _ = consume_all(a, a.topic, "read_committed", expect=a.expect + 1)
    after = [v for _, _, v in got]
    if "after-0" not in after or len(after) != a.expect + 1:
        fail("the new producer's transaction is not visible", count=len(after))
    print(json.dumps({"ok": True, "read_committed": len(values), "seconds": round(took, 2)}))


def mode_timeout(a):
    """A transaction left open past its transaction.timeout.ms is aborted by the
    coordinator: read_committed consumers are not held up, and the producer is fenced."""
    p = producer(a, a.txn_id, **{"transaction.timeout.ms": 2000, "message.timeout.ms": 2000})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(a.num):
        p.produce(a.topic, value=f"stalled-{i}".encode())
    p.flush(30)
    time.sleep(4)  # past the timeout; the coordinator checks every second
    got, eof = consume_all(a, a.topic, "read_committed", timeout=20)
    if not eof or got:
        fail("read_committed saw the timed-out transaction or did not reach the end",
             count=len(got), eof=eof)
    error = None
    try:
        p.commit_transaction(10)
    except KafkaException as e:
        err = e.args[0]
        error = {"name": err.name(), "fatal": err.fatal(),
                 "abortable": err.txn_requires_abort(), "str": err.str()}
    if error is None:
        fail("the timed-out transaction committed")
    print(json.dumps({"ok": True, "commit_error": error}))


def mode_commit_kill(a):
    """One record per partition in a transaction, then commit_transaction while the server
    (--kill-pid) gets SIGKILL after --delay-ms: wherever the kill lands, the transaction must
    come back all committed or all aborted."""
    import os
    import signal
    import threading
    p = producer(a, a.txn_id, **{"transaction.timeout.ms": 10000})
    p.init_transactions(30)
    md = p.list_topics(a.topic, timeout=10)
    parts = sorted(md.topics[a.topic].partitions.keys())
    p.begin_transaction()
    for part in parts:
        p.produce(a.topic, value=f"{a.prefix}{part}".encode(), partition=part)
    p.flush(30)
    result = {}

    def commit():
        try:
            p.commit_transaction(5)
            result["committed"] = True
        except KafkaException as e:
            result["error"] = e.args[0].str()

    t = threading.Thread(target=commit, daemon=True)
    t.start()
    time.sleep(a.delay_ms / 1000.0)
    os.kill(a.kill_pid, signal.SIGKILL)
    t.join(10)
    print(json.dumps({"ok": True, "partitions": len(parts), "client": result}))
    sys.stdout.flush()
    os._exit(0)


def mode_atomic(a):
    """After a kill during commit: read_committed reaches the end and sees the transaction's
    records in every partition or in none."""
    got, eof = consume_all(a, a.topic, "read_committed", timeout=30)
    if not eof:
        fail("read_committed did not reach the end", count=len(got))
    mine = [v for _, _, v in got if v.startswith(a.prefix)]
    if len(mine) not in (0, a.expect):
        fail("the transaction is half visible", visible=len(mine), partitions=a.expect)
    print(json.dumps({"ok": True, "visible": len(mine), "committed": len(mine) == a.expect}))


def mode_updates(a):
    counts, eof_c = consume_all_keyed(a, a.topic, timeout=60.0)
    adds, eof_a = consume_all_keyed(a, a.out, timeout=60.0)
    if not eof_c or not eof_a:
        fail("a consumer did not reach the end", counts=len(counts), adds=len(adds))
    by_word_adds = {}
    for (_p, _o, k, v) in sorted(adds, key=lambda r: (r[0], r[1])):
        by_word_adds.setdefault(k, []).append(int(v))
    by_word_counts = {}
    for (_p, _o, k, v) in sorted(counts, key=lambda r: (r[0], r[1])):
        by_word_counts.setdefault(k, []).append(int(v))
    out = {}
    for w in set(by_word_adds) | set(by_word_counts):
        a_ = by_word_adds.get(w, [])
        c_ = by_word_counts.get(w, [])
        running, sums = 0, []
        for x in a_:
            running += x
            sums.append(running)
        out[w] = {"added": sum(a_), "updates": len(c_), "last": c_[-1] if c_ else 0,
                  "running_sums": c_ == sums}
    print(json.dumps({"ok": True, "words": out}))


def consume_all_keyed(a, topic, timeout=30.0):
    """Every record of `topic` read_committed, as (partition, offset, key, value)."""
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": f"reader-keyed-{time.time()}",
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions.keys())
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    got, eof = [], set()
    deadline = time.time() + timeout
    while time.time() < deadline and len(eof) < len(parts):
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            fail(f"consumer error: {m.error()}")
        eof.discard(m.partition())
        got.append((m.partition(), m.offset(), m.key().decode(), m.value().decode()))
    c.close()
    return got, len(eof) == len(parts)


def mode_abort_input(a):
    p = producer(a, a.txn_id)
    p.init_transactions(30)
    n = a.num
    produce_txn(p, a.topic, [f"c-{i}" for i in range(n)], True)
    produce_txn(p, a.topic, [f"ab-{i}" for i in range(n)], False)
    produce_txn(p, a.topic, [f"c-{n + i}" for i in range(n)], True)
    print(json.dumps({"ok": True, "committed": 2 * n, "aborted": n}))


def mode_refused(a):
    """A cluster does not serve transactions: init_transactions fails at once, fatally."""
    p = producer(a, a.txn_id)
    start = time.time()
    try:
        p.init_transactions(60)
    except KafkaException as e:
        err = e.args[0]
        print(json.dumps({"ok": True, "name": err.name(), "fatal": err.fatal(),
                          "retriable": err.retriable(), "str": err.str(),
                          "seconds": round(time.time() - start, 2)}))
        return
    fail("init_transactions succeeded on a cluster")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out", default="")
    ap.add_argument("--group", default="ctp-group")
    ap.add_argument("--txn-id", default="weir-txn")
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--expect", type=int, default=0)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--kill-pid", type=int, default=0)
    ap.add_argument("--delay-ms", type=int, default=0)
    a = ap.parse_args()
    modes = {"commit-abort": mode_commit_abort, "ctp": mode_ctp, "fence": mode_fence,
             "begin": mode_begin, "read": mode_read, "refused": mode_refused,
             "timeout": mode_timeout, "updates": mode_updates,
             "abort-input": mode_abort_input,
             "commit-kill": mode_commit_kill, "atomic": mode_atomic}
    if a.mode not in modes:
        fail(f"unknown mode {a.mode}")
    try:
        modes[a.mode](a)
    except KafkaException as e:
        fail(f"{a.mode}: {e}")


if __name__ == "__main__":
    main()
