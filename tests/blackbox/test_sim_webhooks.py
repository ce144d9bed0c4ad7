"""payhook-sim webhook delivery: retry schedule under --time-scale, give up
after 6 attempts, byte-identical bodies, 20 in flight, duplicates, signing
key regeneration, timeouts and connection errors, all in the delivery log.
"""

import json
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
from simharness import SECRET, Checks, Receiver, Sim, openssl_hmac, wait_for

c = Checks("test_sim_webhooks")


def msg_id(body):
    return json.loads(body)["webhook_message_id"]


def pay_new(sim, n):
    """n new payments, each paid: one card_payment_succeeded each."""
    for _ in range(n):
        sim.pay(sim.create()["payment_id"])


# --- retry schedule: 500, 500, then 200, at 60 s and 5 min scaled -------
SCALE = 120.0  # 60 s -> 0.5 s: 100 ms of slack for a loaded machine
fails = {}


def fail_twice(i, body, headers):
    mid = msg_id(body)
    fails[mid] = fails.get(mid, 0) + 1
    return 500 if fails[mid] <= 2 else 200


with Receiver(fail_twice) as rx, Sim(webhook_url=rx.url,
                                     time_scale=SCALE) as sim:
    pid = sim.create()["payment_id"]
    sim.pay(pid)
    wait_for(lambda: rx.count() >= 6, timeout=15)
    reqs = rx.snapshot()
    byid = {}
    for r in reqs:
        byid.setdefault(msg_id(r["body"]), []).append(r)
    c.eq(len(byid), 2, "two messages (succeeded, captured)")
    for mid, rs in byid.items():
        c.eq(len(rs), 3, "three attempts for %s" % mid)
        if len(rs) != 3:
            continue
        c.check(rs[0]["body"] == rs[1]["body"] == rs[2]["body"],
                "body bytes identical across retries")
        sigs = {r["headers"]["pay-signature"] for r in rs}
        c.eq(len(sigs), 1, "same signature on every retry (same key)")
        d1 = rs[1]["t"] - rs[0]["t"]
        d2 = rs[2]["t"] - rs[1]["t"]
        c.check(60 / SCALE * 0.8 <= d1 <= 60 / SCALE + 0.5,
                "1st retry after 60 s scaled", d1)
        c.check(300 / SCALE * 0.8 <= d2 <= 300 / SCALE + 0.5,
                "2nd retry after 5 min scaled", d2)
    time.sleep(0.2)
    c.eq(rx.count(), 6, "no further attempts after a 2xx")
    log = sim.webhook_log(payment_id=pid)
    for m in log:
        c.eq([a["outcome"] for a in m["attempts"]],
             ["http_500", "http_500", "delivered"], "log outcomes")
        c.eq([a["status_code"] for a in m["attempts"]], [500, 500, 200],
             "log status codes")
        c.eq(m["status"], "delivered", "log status")
    c.eq(sim.stop(), 0, "clean exit")

# --- full schedule then give up (driven by /_sim/time/advance) ---------
with Receiver(lambda i, b, h: 503) as rx, Sim(
        webhook_url=rx.url, extra=[
            "--webhook-events", "card_payment_succeeded"]) as sim:
    pid = sim.create()["payment_id"]
    sim.pay(pid)
    c.check(wait_for(lambda: rx.count() == 1, 5), "first attempt")

    def recorded(n):
        # the delay runs from when the sim recorded the failure, so wait
        # for the record, not just for the receiver to see the request
        log = sim.webhook_log()
        return log and len(log[0]["attempts"]) == n and (
            n == 6 or "next_attempt_at" in log[0])

    for n, secs in enumerate([60, 300, 3600, 86400, 172800], start=2):
        c.check(wait_for(lambda: recorded(n - 1), 5),
                "attempt %d recorded" % (n - 1))
        sim.advance(seconds=secs - 1)
        time.sleep(0.15)
        c.eq(rx.count(), n - 1, "no attempt before the delay (%d)" % n)
        sim.advance(seconds=1.5)
        c.check(wait_for(lambda: rx.count() == n, 5),
                "attempt %d after %d s" % (n, secs), rx.count())
    wait_for(lambda: sim.webhook_log()[0]["status"] == "failed", 5)
    sim.advance(days=30)
    time.sleep(0.2)
    c.eq(rx.count(), 6, "gives up after 6 attempts")
    m = sim.webhook_log()[0]
    c.eq(m["status"], "failed", "terminal failure in the log")
    c.eq(len(m["attempts"]), 6, "six attempts logged")
    c.eq(len({r["body"] for r in rx.snapshot()}), 1,
         "one body for all six attempts")

# --- 20 deliveries in flight ------------------------------------------
gate = threading.Event()


def hold(i, body, headers):
    gate.wait(15)
    return 200


with Receiver(hold) as rx, Sim(webhook_url=rx.url, extra=[
        "--webhook-timeout-ms", "20000",
        "--webhook-events", "card_payment_succeeded"]) as sim:
    pay_new(sim, 30)
    c.check(wait_for(lambda: rx.active >= 20, 10), "20 deliveries open")
    time.sleep(0.4)
    c.eq(rx.max_active, 20, "never more than 20 in flight")
    c.eq(rx.count(), 20, "the rest wait their turn")
    gate.set()
    c.check(wait_for(lambda: rx.count() >= 30, 10), "all 30 delivered")
    c.eq(rx.max_active, 20, "still at most 20")
    c.eq(len({msg_id(r["body"]) for r in rx.snapshot()}), 30,
         "30 distinct messages")

# --- --webhook-jitter-ms: each delivery waits 0..MS, so order varies ------
with Receiver() as rx, Sim(webhook_url=rx.url, extra=[
        "--webhook-jitter-ms", "300", "--seed", "11",
        "--webhook-events", "card_payment_succeeded"]) as sim:
    pay_new(sim, 40)
    c.check(wait_for(lambda: rx.count() >= 40, 10), "jitter: all 40 delivered")
    time.sleep(0.4)
    emitted = [m["webhook_message_id"] for m in sim.webhook_log()]
    arrived = [msg_id(r["body"]) for r in rx.snapshot()]
    c.eq(sorted(arrived), sorted(emitted), "jitter: each message once")
    rank = {mid: i for i, mid in enumerate(emitted)}
    inversions = sum(1 for a, b in zip(arrived, arrived[1:])
                     if rank.get(b, -1) < rank.get(a, -1))
    c.check(inversions > 0, "jitter: arrival order differs from emission "
            "order", inversions)
    c.check(all(m["status"] == "delivered" and len(m["attempts"]) == 1
                for m in sim.webhook_log()), "jitter: one attempt each")
    c.eq(rx.max_active <= 20, True, "jitter: still at most 20 in flight")

# --- a reset forgets deliveries still waiting out their jitter -------------
with Receiver() as rx, Sim(webhook_url=rx.url, extra=[
        "--webhook-jitter-ms", "2500", "--seed", "5",
        "--webhook-events", "card_payment_succeeded"]) as sim:
    pay_new(sim, 5)
    c.eq(sim.ctl("POST", "/reset").status, 200, "jitter: reset")
    time.sleep(3.0)
    c.eq(rx.count(), 0, "jitter: nothing sent after the reset")
    pay_new(sim, 1)
    c.check(wait_for(lambda: rx.count() >= 1, 6),
            "jitter: a new delivery after the reset still goes out")
    c.eq({msg_id(r["body"]) for r in rx.snapshot()},
         {m["webhook_message_id"] for m in sim.webhook_log()},
         "jitter: only the new message")

# --- duplicates ------------------------------------------------------------
with Receiver() as rx, Sim(webhook_url=rx.url, extra=[
        "--duplicate-rate", "1", "--seed", "7",
        "--webhook-events", "card_payment_succeeded"]) as sim:
    pid = sim.create()["payment_id"]
    sim.pay(pid)
    c.check(wait_for(lambda: rx.count() >= 2, 10), "duplicate delivered")
    rs = rx.snapshot()
    c.eq(len({r["body"] for r in rs}), 1, "duplicate has identical bytes")
    c.eq(len({msg_id(r["body"]) for r in rs}), 1,
         "duplicate keeps webhook_message_id")
    m = sim.webhook_log()[0]
    c.eq(sorted(a["duplicate"] for a in m["attempts"]), [False, True],
         "log marks the duplicate")
    r = sim.ctl("POST", "/webhooks/config", {"duplicate_rate": 0})
    c.eq(r.json.get("duplicate_rate"), 0, "duplicate rate set to 0")
    pid = sim.create()["payment_id"]
    sim.pay(pid)
    time.sleep(2.5)
    c.eq(len(rx.by_event(pid)), 1, "no duplicate at rate 0")

# --- signing key regeneration: new key on the next attempt ---------------
with Receiver(lambda i, b, h: 500 if i == 0 else 200) as rx, Sim(
        webhook_url=rx.url, extra=[
            "--webhook-events", "card_payment_succeeded"]) as sim:
    pid = sim.create()["payment_id"]
    sim.pay(pid)
    c.check(wait_for(lambda: rx.count() == 1, 5), "first attempt")
    c.check(wait_for(lambda: "next_attempt_at" in sim.webhook_log()[0], 5),
            "failure recorded")
    r = sim.ctl("POST", "/webhooks/signing-key")
    new = r.json.get("signing_secret", "")
    c.check(new.startswith("webhook_test_") and new != SECRET,
            "new signing key generated", new)
    sim.advance(seconds=61)
    c.check(wait_for(lambda: rx.count() == 2, 5), "retry after rotation")
    rs = rx.snapshot()
    if len(rs) == 2:
        c.eq(rs[0]["headers"]["pay-signature"],
             openssl_hmac(SECRET, rs[0]["body"]), "attempt 1: old key")
        c.eq(rs[1]["headers"]["pay-signature"],
             openssl_hmac(new, rs[1]["body"]), "attempt 2: new key")
        c.eq(rs[0]["body"], rs[1]["body"], "same body after rotation")
    r = sim.ctl("POST", "/webhooks/signing-key",
                {"signing_secret": "webhook_test_chosen"})
    c.eq(r.json.get("signing_secret"), "webhook_test_chosen",
         "explicit key accepted")

# --- timeouts and connection errors are failures that retry --------------
with Receiver(lambda i, b, h: (200, 1.0) if i == 0 else 200) as rx, Sim(
        webhook_url=rx.url, extra=[
            "--webhook-timeout-ms", "300",
            "--webhook-events", "card_payment_succeeded"]) as sim:
    pid = sim.create()["payment_id"]
    sim.pay(pid)
    wait_for(lambda: sim.webhook_log()[0]["attempts"], 5)
    time.sleep(0.2)
    m = sim.webhook_log()[0]
    c.eq([a["outcome"] for a in m["attempts"]], ["timeout"],
         "slow receiver times out")
    sim.advance(seconds=60)
    wait_for(lambda: sim.webhook_log()[0]["status"] == "delivered", 5)
    c.eq(sim.webhook_log()[0]["status"], "delivered",
         "delivered on retry after a timeout")

s = socket.socket()
s.bind(("127.0.0.1", 0))
dead = s.getsockname()[1]
s.close()
with Sim(webhook_url="http://127.0.0.1:%d/x" % dead) as sim:
    pid = sim.create()["payment_id"]
    sim.pay(pid)
    wait_for(lambda: all(m["attempts"] for m in sim.webhook_log()), 5)
    outs = {m["attempts"][0]["outcome"] for m in sim.webhook_log()}
    c.eq(outs, {"connection_error"}, "refused connection logged")
    c.check(all(m["status"] == "pending" and "next_attempt_at" in m
                for m in sim.webhook_log()), "retry scheduled")

# --- without --webhook-url nothing is sent --------------------------------
with Sim() as sim:
    pid = sim.create()["payment_id"]
    sim.pay(pid)
    c.eq(sim.webhook_log(), [], "no webhooks without --webhook-url")
    c.eq(sim.ctl("POST", "/webhooks/send", {"payment_id": pid}).status,
         409, "send refused without --webhook-url")

c.finish()
