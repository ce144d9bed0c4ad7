#!/usr/bin/python3
"""test_dispatch_reliability.py: consumers end holding every event exactly
once, in seq order, verified against the journal, when

  * a subscriber is too slow: its queue overflows (the publisher drops for
    it, ZEROMQ.md §2) and it must notice the seq gap and fill it from replay;
  * a subscriber (`payhook tail`) is killed with SIGKILL mid-stream and
    restarted with --from last+1: the two outputs concatenate to the journal;
  * the service itself is killed with SIGKILL mid-stream and restarted on
    the same state directory and endpoints while a consumer stays connected
    and a sender retries unacknowledged webhooks like GOV.UK Pay does.

The feed and replay ports for the restart case are picked free at run time
(phtest.free_port), never fixed. Every event is also validated against
schemas/payment_event.v1.json.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

EVENTS, _ = phtest.event_validator()


def bodies(base, n, size=0):
    out = []
    for i in range(n):
        b = json.loads(phtest.webhook(phtest.pay_id(base + i),
                                      phtest.pay_id(base + 500000 + i % 97)))
        if size:
            b["resource"]["description"] = "x" * size
        out.append(json.dumps(b, separators=(",", ":")).encode())
    return out


def verify(r, svc, held, what, consumer=None):
    problems = phtest.verify_against_journal(svc, held)
    r.check(what + ": holds every journal event exactly once",
            not problems, problems[:5])
    errors = phtest.schema_errors(EVENTS, phtest.journal_events(svc))
    r.check(what + ": every event validates", not errors, errors[:5])
    if consumer is not None:
        r.check(what + ": applied in seq order",
                consumer.order == sorted(consumer.order) and
                len(set(consumer.order)) == len(consumer.order))
        r.check(what + ": no seq seen with different content",
                consumer.conflicts == 0)


def test_slow_subscriber(r):
    n = 4000
    with phtest.Service() as svc:
        feed, replay = phtest.dispatch_endpoints(svc)
        # Tiny receive queue and socket buffer, and it stops reading.
        c = phtest.ZmqConsumer(feed, replay, start=1, rcvhwm=1,
                               rcvbuf=2048)
        try:
            r.check("slow: connected",
                    c.run_until(lambda c: c.heartbeats, 3))
            st = phtest.post_many(svc, bodies(10000, n, 600))
            r.check("slow: all accepted", all(s == 200 for s in st))
            phtest.wait_for(lambda: svc.rows(
                "SELECT count(*) FROM events WHERE seq <= (SELECT upto "
                "FROM events_sent)")[0][0] == n, 30)
            r.check("slow: holds all after draining",
                    c.run_until(lambda c: c.holds(n), 60),
                    (len(c.events), c.pos, c.head))
            r.check("slow: its queue overflowed (live < %d) and gaps were "
                    "filled from replay" % n,
                    c.live < n and c.gap_fills > 0,
                    (c.live, c.gap_fills, c.replays))
            verify(r, svc, c.events, "slow", c)
        finally:
            c.close()


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    # a killed process may leave a partial last line
    lines = data.split(b"\n")
    return [l.decode() for l in lines[:-1]]


def test_subscriber_killed_and_restarted(r):
    n = 1500
    with phtest.Service() as svc:
        feed, replay = phtest.dispatch_endpoints(svc)
        out1 = os.path.join(svc.tmp, "tail1.jsonl")
        out2 = os.path.join(svc.tmp, "tail2.jsonl")
        sender = threading.Thread(target=phtest.post_many,
                                  args=(svc, bodies(20000, n)))
        with open(out1, "wb") as f:
            p1 = subprocess.Popen([phtest.BIN, "tail", "--from", "1",
                                   "--feed", feed, "--replay", replay],
                                  stdout=f, stderr=subprocess.DEVNULL)
        sender.start()
        phtest.wait_for(lambda: len(read_lines(out1)) >= n // 3, 30)
        p1.send_signal(signal.SIGKILL)
        p1.wait(10)
        first = read_lines(out1)
        r.check("killed tail had printed part of the stream",
                0 < len(first) < n, len(first))
        last = json.loads(first[-1])["seq"] if first else 0
        with open(out2, "wb") as f:
            p2 = subprocess.Popen([phtest.BIN, "tail", "--from",
                                   str(last + 1), "--feed", feed,
                                   "--replay", replay, "--idle-exit",
                                   "2000"], stdout=f,
                                  stderr=subprocess.PIPE)
        sender.join(60)
        try:
            _, err = p2.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p2.kill()
            _, err = p2.communicate()
        second = read_lines(out2)
        r.check("restarted tail exited by itself", p2.returncode == 0,
                (p2.returncode, err[-300:]))
        held = {}
        dup = 0
        for line in first + second:
            e = json.loads(line)
            dup += e["seq"] in held
            held[e["seq"]] = (e["topic"], line)
        seqs = [json.loads(l)["seq"] for l in first + second]
        r.check("tail: in order, no duplicate across the restart",
                dup == 0 and seqs == list(range(1, len(seqs) + 1)),
                (dup, seqs[:3], seqs[-3:]))
        verify(r, svc, held, "tail restart")


def test_service_sigkill(r):
    n = 3000
    feed = "tcp://127.0.0.1:%d" % phtest.free_port()
    replay = "tcp://127.0.0.1:%d" % phtest.free_port()
    svc = phtest.Service(extra={"publish_endpoint": feed,
                                "replay_endpoint": replay})
    c = None
    try:
        svc.start()
        c = phtest.ZmqConsumer(feed, replay, start=1)
        r.check("sigkill: connected", c.run_until(lambda c: c.heartbeats, 3))
        deadline = time.monotonic() + 90
        result = {}
        sender = threading.Thread(target=lambda: result.update(
            st=phtest.post_many(svc, bodies(30000, n),
                                retry_until=deadline)))
        sender.start()
        # consume while the stream flows, then kill -9 mid-stream
        c.run_until(lambda c: len(c.events) >= n // 3, 30)
        svc.kill()
        killed_at = len(c.events)
        time.sleep(0.3)
        svc.start()
        sender.join(100)
        r.check("sigkill: every webhook acknowledged (with retries)",
                result.get("st") and all(s == 200 for s in result["st"]))
        phtest.wait_for(lambda: svc.rows(
            "SELECT count(*) FROM webhooks WHERE state = 'published'")[0][0]
            == n, 30)
        total = svc.rows("SELECT count(*) FROM events")[0][0]
        r.check("sigkill: one event per webhook", total == n, total)
        r.check("sigkill: the kill came mid-stream", 0 < killed_at < total,
                killed_at)
        r.check("sigkill: consumer holds all after the restart",
                c.run_until(lambda c: c.holds(total), 60),
                (killed_at, len(c.events), c.pos, c.head))
        verify(r, svc, c.events, "sigkill", c)
    finally:
        if c is not None:
            c.close()
        svc.cleanup()


def main():
    r = phtest.Runner("test_dispatch_reliability")
    r.run(test_slow_subscriber)
    r.run(test_subscriber_killed_and_restarted)
    r.run(test_service_sigkill)
    r.done()


if __name__ == "__main__":
    main()
