#!/usr/bin/python3
"""test_dispatch_feed.py: the live feed, heartbeats, topics, PII and order.

Starts `payhook serve` (cross_check = off, endpoints tcp://127.0.0.1:*),
subscribes with phtest.ZmqConsumer (written from docs/consumers.md only,
python3-zmq) and checks: every event arrives once, in seq order, 1..N with
no gap; the bytes equal the journal's events table; every event validates
against schemas/payment_event.v1.json; topics follow event types and
quarantined bodies become alert.quarantined; heartbeats come at least every
2 s with the head seq; a subscriber that connects late gets the history
from replay; PII stays inside unless include_pii = on; out_of_order is set;
payhook tail prints the same lines; metrics count what was published.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

EVENTS, HEARTBEATS = phtest.event_validator()
KINDS = ["started", "succeeded", "captured", "refunded", "failed",
         "expired", "settled", "disputed"]


def mixed_bodies(base, n):
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        out.append(phtest.webhook(phtest.pay_id(base + i),
                                  phtest.pay_id(base + 100000 + i % 7),
                                  "card_payment_" + kind))
    return out


def check_journal(r, svc, consumer, what):
    problems = phtest.verify_against_journal(svc, consumer.events)
    r.check(what + ": consumer holds exactly the journal's events",
            not problems, problems[:5])
    errors = phtest.schema_errors(EVENTS, phtest.journal_events(svc))
    r.check(what + ": every event validates against the schema",
            not errors, errors[:5])
    r.check(what + ": no seq was ever seen with different content",
            not getattr(consumer, "conflicts", 0))


def test_live_feed(r):
    with phtest.Service() as svc:
        feed, replay = phtest.dispatch_endpoints(svc)
        r.check("endpoints resolved from tcp://127.0.0.1:*",
                "*" not in feed and "*" not in replay, (feed, replay))
        c = phtest.ZmqConsumer(feed, replay)
        try:
            r.check("first heartbeat within 2.5 s",
                    c.run_until(lambda c: c.heartbeats, 2.5))
            bodies = mixed_bodies(1000, 40)
            bodies.append(b'{"not":"a webhook"}')
            st = phtest.post_many(svc, bodies)
            r.check("all accepted", all(s == 200 for s in st), st)
            n = len(bodies)
            r.check("consumer holds 1..%d" % n,
                    c.run_until(lambda c: c.holds(n), 15),
                    (len(c.events), c.pos, c.head))
            r.check("no replay was needed on a quiet loopback",
                    c.gap_fills == 0 and c.dups == 0,
                    (c.gap_fills, c.dups))
            r.check("order is by seq", c.order == list(range(1, n + 1)))
            check_journal(r, svc, c, "live")
            topics = [c.events[s][0] for s in range(1, n + 1)]
            want = ["payment." + (k if k != "disputed" else "other")
                    for k in (KINDS * 10)[:40]] + ["alert.quarantined"]
            r.check("topics follow the event type", topics == want,
                    list(zip(topics, want))[:3])
            q = json.loads(c.events[n][1])
            r.check("quarantined body is an alert without payment",
                    q["payment"] is None and q["alert"]["kind"] ==
                    "quarantined" and q["event_id"].startswith("q-"), q)
            # heartbeats: valid, at most 2 s apart, head reaches n
            c.run_until(lambda c: c.heartbeats and
                        c.heartbeats[-1]["head_seq"] == n, 3)
            c.heartbeats.clear()
            c.run_until(lambda c: len(c.heartbeats) >= 3, 5)
            hb = c.heartbeats
            r.check("heartbeats validate",
                    hb and all(not list(HEARTBEATS.iter_errors(h))
                               for h in hb), hb[:2])
            r.check("heartbeats carry the head seq",
                    hb and all(h["head_seq"] == n for h in hb), hb[:3])
            times = [phtest_ms(h["time"]) for h in hb]
            gaps = [b - a for a, b in zip(times, times[1:])]
            r.check("heartbeats at least every 2 s",
                    len(hb) >= 3 and max(gaps) <= 2000, gaps)
            rows = svc.rows("SELECT state, count(*) FROM webhooks "
                            "GROUP BY state")
            r.check("rows end published (quarantined stays)",
                    dict(rows) == {"published": n - 1, "quarantined": 1},
                    rows)
            m = svc.metrics()
            r.check("metrics count published events",
                    phtest.metric(m, "payhook_events_published_total",
                                  family="payment") == n - 1 and
                    phtest.metric(m, "payhook_events_published_total",
                                  family="alert") == 1, m)
            r.check("head seq and bus gauges",
                    phtest.metric(m, "payhook_head_seq") == n and
                    phtest.metric(m, "payhook_bus_up") == 1 and
                    phtest.metric(m, "payhook_publish_queue") == 0)
            # payhook tail prints exactly the journal's JSON lines
            out = subprocess.run(
                [phtest.BIN, "tail", "--from", "1", "--feed", feed,
                 "--replay", replay, "--count", str(n)],
                capture_output=True, timeout=20)
            lines = out.stdout.decode().splitlines()
            want_lines = [j for _, _, j in phtest.journal_events(svc)]
            r.check("payhook tail --from 1 prints the journal",
                    out.returncode == 0 and lines == want_lines,
                    (out.returncode, len(lines), out.stderr[-300:]))
            out = subprocess.run(
                [phtest.BIN, "tail", "--from", "1", "--topic", "alert.",
                 "--feed", feed, "--replay", replay, "--idle-exit", "1500"],
                capture_output=True, timeout=20)
            lines = out.stdout.decode().splitlines()
            r.check("payhook tail --topic alert. prints only the alert",
                    out.returncode == 0 and len(lines) == 1 and
                    json.loads(lines[0])["topic"] == "alert.quarantined",
                    (out.returncode, lines[:2], out.stderr[-300:]))
        finally:
            c.close()


def phtest_ms(ts):
    import calendar
    base = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    return base * 1000 + int(ts[20:23])


def test_late_subscriber(r):
    with phtest.Service() as svc:
        feed, replay = phtest.dispatch_endpoints(svc)
        st = phtest.post_many(svc, mixed_bodies(2000, 30))
        r.check("early webhooks accepted", all(s == 200 for s in st))
        phtest.wait_for(lambda: svc.rows(
            "SELECT count(*) FROM events")[0][0] == 30, 10)
        # connects late: subscribe first, then replay from 1, then live
        c = phtest.ZmqConsumer(feed, replay, start=1)
        try:
            c.catch_up()
            r.check("replay gave the history", len(c.events) == 30,
                    len(c.events))
            st = phtest.post_many(svc, mixed_bodies(3000, 30))
            r.check("late webhooks accepted", all(s == 200 for s in st))
            r.check("late subscriber holds 1..60",
                    c.run_until(lambda c: c.holds(60), 15),
                    (len(c.events), c.pos, c.head))
            r.check("in seq order", c.order == list(range(1, 61)))
            check_journal(r, svc, c, "late")
        finally:
            c.close()


def test_pii(r):
    body = phtest.example_body()    # carries email, name, address
    for pii in ("off", "on"):
        with phtest.Service(extra={"include_pii": pii}) as svc:
            st = phtest.post_many(svc, [body])
            phtest.wait_for(lambda: svc.rows(
                "SELECT count(*) FROM events")[0][0] == 1, 10)
            ev = phtest.journal_events(svc)
            text = ev[0][2] if ev else ""
            leaked = [s for s in ("sherlock", "Sherlock", "Baker",
                                  "NW1 6XE", "04/27") if s in text]
            if pii == "off":
                r.check("include_pii = off: no email, name or address",
                        st == [200] and text and not leaked, leaked)
            else:
                e = json.loads(text)
                r.check("include_pii = on: email, name and address",
                        e["payment"].get("email") ==
                        "sherlock.holmes@example.com" and
                        e["payment"]["card_details"]["cardholder_name"] ==
                        "Sherlock Holmes" and "Baker" in text and
                        "04/27" not in text, text[:200])
            card = json.loads(text)["payment"]["card_details"]
            r.check("include_pii = %s: brand, type, masked digits" % pii,
                    card["card_brand"] == "Visa" and
                    card["last_digits_card_number"] == "4242")
            errors = phtest.schema_errors(EVENTS, ev)
            r.check("include_pii = %s: schema" % pii, not errors, errors)


def test_out_of_order(r):
    with phtest.Service() as svc:
        pid = phtest.pay_id(777)
        later = phtest.webhook_at(phtest.pay_id(4001), pid,
                                  "card_payment_captured",
                                  "2026-01-01T10:10:00.000Z")
        earlier = phtest.webhook_at(phtest.pay_id(4002), pid,
                                    "card_payment_succeeded",
                                    "2026-01-01T10:05:00.000Z")
        st = phtest.post_many(svc, [later])
        phtest.wait_for(lambda: svc.rows(
            "SELECT count(*) FROM events")[0][0] == 1, 10)
        st += phtest.post_many(svc, [earlier])
        phtest.wait_for(lambda: svc.rows(
            "SELECT count(*) FROM events")[0][0] == 2, 10)
        ev = [json.loads(j) for _, _, j in phtest.journal_events(svc)]
        r.check("two events", st == [200, 200] and len(ev) == 2, st)
        r.check("the later-happened one first is in order",
                ev and ev[0]["out_of_order"] is False)
        r.check("the earlier-happened one after it is out_of_order",
                len(ev) == 2 and ev[1]["out_of_order"] is True and
                ev[1]["occurred_at"] == "2026-01-01T10:05:00.000Z")


def main():
    r = phtest.Runner("test_dispatch_feed")
    r.run(test_live_feed)
    r.run(test_late_subscriber)
    r.run(test_pii)
    r.run(test_out_of_order)
    r.done()


if __name__ == "__main__":
    main()
