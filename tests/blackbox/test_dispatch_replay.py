#!/usr/bin/python3
"""test_dispatch_replay.py: the ROUTER replay endpoint, as CONTRACT.md frames
it, from python3-zmq DEALER and REQ clients: BATCH/<head>/<count> then
(topic, json) pairs in seq order from the first seq >= from_seq, the batch
cap (1000) and asking again, the topic prefix filter, malformed requests
answered ERROR/<reason> while the server keeps serving, oversized frames
dropped, and replay clients that ask a lot and vanish never stalling the
live feed.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

EVENTS, _ = phtest.event_validator()
N = 1100


def setup(svc):
    bodies = []
    for i in range(N):
        if i % 100 == 99:
            bodies.append(('{"broken":%d}' % i).encode())   # quarantined
        else:
            bodies.append(phtest.webhook(phtest.pay_id(50000 + i),
                                         phtest.pay_id(90000 + i % 13)))
    st = phtest.post_many(svc, bodies)
    phtest.wait_for(lambda: svc.rows(
        "SELECT count(*) FROM events")[0][0] == N, 30)
    return st


def test_replay(r):
    import zmq
    with phtest.Service() as svc:
        feed, replay = phtest.dispatch_endpoints(svc)
        st = setup(svc)
        r.check("setup: all accepted", all(s == 200 for s in st))
        journal = phtest.journal_events(svc)
        c = phtest.ZmqConsumer(feed, replay)
        try:
            head, batch = c.replay(1, 5000)
            r.check("batch is capped at 1000", len(batch) == 1000 and
                    head == N, (len(batch), head))
            head2, batch2 = c.replay(batch[-1][0] + 1, 5000)
            r.check("asking again from last + 1 gets the rest",
                    [b[0] for b in batch + batch2] ==
                    list(range(1, N + 1)))
            r.check("replayed bytes equal the journal",
                    [(s, t, j) for s, t, j in batch + batch2] == journal)
            _, some = c.replay(500, 3)
            r.check("from_seq and max_count", [b[0] for b in some] ==
                    [500, 501, 502])
            _, alerts = c.replay(1, 1000, "alert.")
            r.check("topic prefix filter",
                    len(alerts) == N // 100 and
                    all(t == "alert.quarantined" for _, t, _ in alerts),
                    len(alerts))
            _, none = c.replay(N + 1, 10)
            r.check("past the head: BATCH with count 0", none == [])
            reply = c.request(["REPLAY", "1", "0"])
            r.check("max_count 0 tells the head", reply ==
                    [b"BATCH", str(N).encode(), b"0"], reply)
            errors = phtest.schema_errors(EVENTS, batch + batch2)
            r.check("replayed events validate", not errors, errors[:3])

            bad = [["FETCH", "1", "2"], ["REPLAY", "x", "2"],
                   ["REPLAY", "1", "-1"], ["REPLAY", "1"],
                   ["REPLAY", "1", "2", "payment.", "more"], ["REPLAY"],
                   [""], ["REPLAY", "1e3", "2"], ["REPLAY", " 1", "2"],
                   ["REPLAY", "1", "2", "x" * 100],
                   ["REPLAY", "99999999999999999999999", "2"]]
            before = svc.metrics()
            ok = True
            for frames in bad:
                reply = c.request(frames)
                if not (reply and len(reply) == 2 and reply[0] == b"ERROR"
                        and reply[1]):
                    ok = False
                    print("bad request %r got %r" % (frames, reply))
            r.check("malformed requests get ERROR/<reason>", ok)
            after = svc.metrics()
            r.check("replay errors are counted",
                    phtest.metric(after, "payhook_replay_requests_total",
                                  result="error") -
                    phtest.metric(before, "payhook_replay_requests_total",
                                  result="error") == len(bad))
            _, again = c.replay(1, 2)
            r.check("the server keeps serving after errors",
                    [b[0] for b in again] == [1, 2])

            # REQ works too (the reply carries no delimiter for REQ users)
            ctx = zmq.Context.instance()
            req = ctx.socket(zmq.REQ)
            req.setsockopt(zmq.LINGER, 0)
            req.connect(replay)
            req.send_multipart([b"REPLAY", b"1", b"2", b"alert."])
            ok = req.poll(3000)
            reply = req.recv_multipart() if ok else None
            r.check("REQ client", reply and reply[:3] ==
                    [b"BATCH", str(N).encode(), b"2"] and
                    reply[3] == b"alert.quarantined", reply and reply[:4])
            req.close(0)

            # an oversized frame is dropped by MAXMSGSIZE; others go on
            big = ctx.socket(zmq.DEALER)
            big.setsockopt(zmq.LINGER, 0)
            big.connect(replay)
            big.send_multipart([b"", b"REPLAY", b"1", b"1", b"p" * 100000])
            r.check("oversized request gets nothing", not big.poll(1000))
            big.close(0)
            _, again = c.replay(3, 1)
            r.check("still serving after an oversized request",
                    [b[0] for b in again] == [3])

            # many big requests from a client that never reads, then goes
            c.run_until(lambda c: c.heartbeats, 3)
            c.pos = N + 1
            hog = ctx.socket(zmq.DEALER)
            hog.setsockopt(zmq.LINGER, 0)
            hog.connect(replay)
            for _ in range(300):
                hog.send_multipart([b"", b"REPLAY", b"1", b"1000"])
            t0 = time.monotonic()
            st = phtest.post_many(svc, [phtest.webhook(
                phtest.pay_id(70000 + i)) for i in range(20)])
            got = c.run_until(lambda c: c.pos > N + 20, 20)
            took = time.monotonic() - t0
            hog.close(0)
            r.check("a replay hog does not stall the live feed",
                    got and all(s == 200 for s in st), (took, c.pos))
            print("live feed delivered 20 events in %.2fs beside the hog"
                  % took)
            head, tail = c.replay(N + 1, 100)
            r.check("and replay still answers", len(tail) == 20 and
                    head == N + 20)
        finally:
            c.close()


def main():
    r = phtest.Runner("test_dispatch_replay")
    r.run(test_replay)
    r.done()


if __name__ == "__main__":
    main()
