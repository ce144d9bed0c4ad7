#!/usr/bin/python3
"""A complete payhook consumer (python3-zmq), as docs/consumers.md explains.

Prints every event as a JSON line, exactly once, in seq order, starting at
--from: subscribe to the live feed first, replay from the journal, then
follow the feed, dropping seq <= last and filling any gap (a seq jump or a
heartbeat ahead of us) from replay. Persist `last` to resume after a restart.
"""
import argparse
import json
import sys
import time

import zmq

p = argparse.ArgumentParser()
p.add_argument("--feed", default="tcp://127.0.0.1:5556")
p.add_argument("--replay", default="tcp://127.0.0.1:5557")
p.add_argument("--from", dest="start", type=int, default=1)
p.add_argument("--count", type=int, default=0, help="stop after N events")
p.add_argument("--idle-exit", type=float, default=0,
               help="stop when caught up and idle for this many seconds")
args = p.parse_args()

ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.LINGER, 0)
sub.setsockopt(zmq.SUBSCRIBE, b"")          # everything, heartbeats too
sub.connect(args.feed)                      # 1. subscribe first
dealer = ctx.socket(zmq.DEALER)
dealer.setsockopt(zmq.LINGER, 0)
dealer.setsockopt(zmq.SNDTIMEO, 5000)       # no peer: do not block for ever
dealer.connect(args.replay)

last = args.start - 1       # highest seq handled
head = 0                    # highest seq the server says exists
printed = 0
idle_since = time.monotonic()


def emit(seq, text):
    global last, printed, idle_since
    if seq <= last:
        return              # already have it (replay/live overlap)
    print(text, flush=True)
    last, printed, idle_since = seq, printed + 1, time.monotonic()
    if args.count and printed >= args.count:
        sys.exit(0)


def catch_up():
    """2. replay from last + 1 until a batch reaches head or is empty."""
    global head
    while True:
        try:
            dealer.send_multipart([b"", b"REPLAY", str(last + 1).encode(),
                                   b"1000"])
        except zmq.Again:
            sys.exit("replay endpoint not reachable")
        if not dealer.poll(5000):
            sys.exit("replay endpoint did not answer")
        reply = dealer.recv_multipart()[1:]     # drop the empty delimiter
        if reply[0] != b"BATCH":
            sys.exit("replay error: %r" % reply)
        head, count = max(head, int(reply[1])), int(reply[2])
        for i in range(count):
            text = reply[4 + 2 * i].decode()
            emit(json.loads(text)["seq"], text)
        if count == 0 or last >= head:     # a batch may be short (byte cap)
            return


catch_up()
while True:                                 # 3. follow the live feed
    if sub.poll(200):
        topic, body = sub.recv_multipart()
        if topic == b"heartbeat":
            head = max(head, json.loads(body)["head_seq"])
            if head > last:
                catch_up()                  # we lost something at the tail
            continue
        text = body.decode()
        seq = json.loads(text)["seq"]
        if seq > last + 1:
            catch_up()                      # a gap: fill it first
        emit(seq, text)
    elif args.idle_exit and last >= head and \
            time.monotonic() - idle_since > args.idle_exit:
        sys.exit(0)
