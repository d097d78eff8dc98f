#!/usr/bin/env python3
"""Produces one record of arbitrary bytes (key and value given in hex; a key of "-" is none)
with confluent-kafka, to a partition; prints {"ok": true, "partition": P, "offset": O}.

usage: produce_bytes.py --bootstrap B --topic T --partition P --key-hex HEX --value-hex HEX
"""
import argparse
import json
import sys

from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partition", type=int, default=0)
    ap.add_argument("--key-hex", required=True)
    ap.add_argument("--value-hex", required=True)
    a = ap.parse_args()
    p = Producer({"bootstrap.servers": a.bootstrap, "acks": "all"})
    done = {}

    def report(err, msg):
        done["err"] = err
        if err is None:
            done["at"] = (msg.partition(), msg.offset())

    key = None if a.key_hex == "-" else bytes.fromhex(a.key_hex)
    p.produce(a.topic, value=bytes.fromhex(a.value_hex), key=key, partition=a.partition,
              on_delivery=report)
    p.flush(30)
    if done.get("err") is not None or "at" not in done:
        print(json.dumps({"ok": False, "error": str(done.get("err", "no delivery report"))}))
        sys.exit(1)
    print(json.dumps({"ok": True, "partition": done["at"][0], "offset": done["at"][1]}))


if __name__ == "__main__":
    main()
