#!/usr/bin/python3
"""test_crash.py: nothing acknowledged is lost across kill -9.

Several sender threads behave like GOV.UK Pay: each webhook is POSTed until
it gets a 2xx (connection errors, timeouts and 5xx are failures, retried
after a short scaled delay), and some acknowledged webhooks are re-sent on
purpose. Meanwhile `payhook serve` (durability = full) is killed with
SIGKILL at seeded random moments while requests are in flight and started
again on the same state directory. After each kill a copy of the journal as
the dead process left it must pass `PRAGMA integrity_check` and hold every
id acknowledged so far; after each restart ids acknowledged before the kill
must be answered {"status":"duplicate"}. At the end every id is in the
journal exactly once with the exact bytes sent, nothing else is, and the
journal passes `PRAGMA integrity_check`.

Environment: PAYHOOK_CRASH_SEED (default: time-based, printed),
PAYHOOK_CRASH_WEBHOOKS (default 4000), PAYHOOK_CRASH_KILLS (default 5),
PAYHOOK_CRASH_THREADS (default 12). Bounded: senders give up at a deadline.
"""
import collections
import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

SEED = int(os.environ.get("PAYHOOK_CRASH_SEED") or
           (int(time.time() * 1000) % 1000000))
NWEBHOOKS = int(os.environ.get("PAYHOOK_CRASH_WEBHOOKS", "4000"))
NKILLS = int(os.environ.get("PAYHOOK_CRASH_KILLS", "5"))
NTHREADS = int(os.environ.get("PAYHOOK_CRASH_THREADS", "12"))
DEADLINE_S = 120.0          # senders give up after this (test fails)
TIMEOUT_S = 3.0             # GOV.UK Pay waits 3 s for a reply
SCALE = 1.0 / 1500.0        # 60 s, 5 min ... become 40 ms, 200 ms ...
RETRY_S = [60 * SCALE, 300 * SCALE, 600 * SCALE]
DUP_RATE = 0.04             # share of acknowledged ids re-sent on purpose
PROBE_IDS = 25              # ids re-sent after each restart


def message_id(n):
    return phtest.pay_id(0x40000000 + n)


class Shared:
    """State shared by the sender threads, the killer and the checks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.bodies = {}            # id -> bytes sent
        self.acked = {}             # id -> first 2xx status text
        self.ack_order = []         # ids in order of first 2xx
        self.failures = collections.Counter()
        self.statuses = collections.Counter()
        self.retries = 0
        self.requests = 0
        self.inflight = 0
        self.dup_pool = []          # acknowledged ids to re-send
        self.dups_sent = 0
        self.dup_answers = collections.Counter()
        self.bad = []               # protocol violations seen by senders
        self.stop = threading.Event()
        self.port = None


def post_once(conn_holder, sh, body, sig):
    """One POST; returns (status, parsed json or None) or raises."""
    port = sh.port
    conn = conn_holder.get("conn")
    if conn is None or conn_holder.get("port") != port:
        if conn is not None:
            conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port,
                                          timeout=TIMEOUT_S)
        conn_holder["conn"], conn_holder["port"] = conn, port
    with sh.lock:
        sh.inflight += 1
        sh.requests += 1
    try:
        conn.request("POST", "/webhooks/govuk-pay", body=body,
                     headers={"Content-Type": "application/json",
                              "Pay-Signature": sig})
        r = conn.getresponse()
        data = r.read()
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
    except Exception:
        conn.close()
        conn_holder["conn"] = None
        raise
    finally:
        with sh.lock:
            sh.inflight -= 1
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    return r.status, doc


def deliver(sh, rng, holder, mid, deadline):
    """Send mid until a 2xx, like GOV.UK Pay. Returns the status text."""
    body = sh.bodies[mid]
    sig = phtest.sign(body)
    attempt = 0
    while time.monotonic() < deadline:
        try:
            status, doc = post_once(holder, sh, body, sig)
        except (socket.timeout, TimeoutError):
            kind = "timeout"
            status = None
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            kind = type(e).__name__
            status = None
        if status is not None:
            with sh.lock:
                sh.statuses[status] += 1
            if 200 <= status < 300:
                text = doc.get("status") if isinstance(doc, dict) else None
                if text not in ("accepted", "duplicate"):
                    with sh.lock:
                        sh.bad.append("%s: 2xx with body %r" % (mid, doc))
                return text
            kind = "http_%d" % status
            if status < 500:
                with sh.lock:
                    sh.bad.append("%s: answered %d" % (mid, status))
        with sh.lock:
            sh.failures[kind] += 1
            sh.retries += 1
        delay = RETRY_S[min(attempt, len(RETRY_S) - 1)]
        time.sleep(delay * rng.uniform(0.5, 1.5))
        attempt += 1
    return None


def sender(sh, work, tid, deadline):
    rng = random.Random(SEED * 1000 + tid)
    holder = {}
    while not sh.stop.is_set():
        # Now and then re-send an acknowledged id: it must be a duplicate.
        dup = None
        with sh.lock:
            if sh.dup_pool and rng.random() < 0.3:
                dup = sh.dup_pool.pop(rng.randrange(len(sh.dup_pool)))
        if dup is not None:
            text = deliver(sh, rng, holder, dup, deadline)
            with sh.lock:
                sh.dups_sent += 1
                sh.dup_answers[text] += 1
            continue
        try:
            mid = work.popleft()
        except IndexError:
            break
        text = deliver(sh, rng, holder, mid, deadline)
        if text is None:
            break                       # deadline passed
        with sh.lock:
            if mid not in sh.acked:
                sh.acked[mid] = text
                sh.ack_order.append(mid)
            if rng.random() < DUP_RATE:
                sh.dup_pool.append(mid)
    if holder.get("conn") is not None:
        holder["conn"].close()


def journal_copy_check(svc, expect_ids):
    """Copy journal.db(+wal) as the killed process left it, open the copy
    (SQLite recovers from the WAL) and return (integrity, missing ids)."""
    tmp = tempfile.mkdtemp(prefix="payhook-crash-copy-")
    try:
        src = os.path.join(svc.state_dir, "journal.db")
        dst = os.path.join(tmp, "journal.db")
        shutil.copyfile(src, dst)
        if os.path.exists(src + "-wal"):
            shutil.copyfile(src + "-wal", dst + "-wal")
        with contextlib.closing(sqlite3.connect(dst)) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchall()
            have = set(r[0] for r in db.execute(
                "SELECT message_id FROM webhooks"))
        return integrity, [m for m in expect_ids if m not in have]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def probe_duplicates(svc, ids):
    """Re-send ids acknowledged before a kill; collect the answers."""
    answers = collections.Counter()
    for mid in ids:
        status, text = None, None
        for _ in range(20):
            try:
                status, _, data = svc.post(svc_bodies[mid])
                text = json.loads(data).get("status")
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(0.05)
                continue
            if status == 200:
                break
            time.sleep(0.05)
        answers["%s %s" % (status, text)] += 1
    return answers


svc_bodies = {}


def crash_test(t):
    t0 = time.monotonic()
    print("seed=%d webhooks=%d kills=%d threads=%d" %
          (SEED, NWEBHOOKS, NKILLS, NTHREADS))
    sys.stdout.flush()
    rng = random.Random(SEED)
    sh = Shared()
    for i in range(NWEBHOOKS):
        mid = message_id(i)
        sh.bodies[mid] = phtest.webhook(
            mid, payment_id=phtest.pay_id(7 * i + 3),
            amount=100 + rng.randrange(100000))
    svc_bodies.update(sh.bodies)
    work = collections.deque(sh.bodies)
    # Kill once in each of NKILLS equal slices of 8%..85% of the webhooks
    # acknowledged (seeded position inside the slice, plus a little time).
    width = 0.77 / NKILLS
    marks = [0.08 + (k + rng.random()) * width for k in range(NKILLS)]

    svc = phtest.Service(extra={"durability": "full", "log_level": "info"})
    logs, kills = [], []
    try:
        svc.start()
        sh.port = svc.port
        deadline = time.monotonic() + DEADLINE_S
        threads = [threading.Thread(target=sender,
                                    args=(sh, work, i, deadline),
                                    daemon=True) for i in range(NTHREADS)]
        for th in threads:
            th.start()
        for k, mark in enumerate(marks):
            while (len(sh.acked) < mark * NWEBHOOKS and
                   time.monotonic() < deadline and
                   any(th.is_alive() for th in threads)):
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.03))
            # The kill must hit requests in flight: between two of them
            # (senders backing off after the last kill) wait up to 1 s.
            wait_end = time.monotonic() + 1
            while True:
                with sh.lock:
                    inflight = sh.inflight
                if inflight > 0 or time.monotonic() >= wait_end:
                    break
                time.sleep(0.001)
            svc.kill()
            with sh.lock:
                before = list(sh.ack_order)
            logs.append(list(svc.log_lines))
            integrity, missing = journal_copy_check(svc, before)
            down = rng.uniform(0.02, 0.3)
            time.sleep(down)
            svc.start()
            sh.port = svc.port
            sample = rng.sample(before, min(PROBE_IDS, len(before)))
            probe = probe_duplicates(svc, sample)
            kills.append({"acked": len(before), "inflight": inflight,
                          "integrity": integrity, "missing": missing,
                          "probe": probe, "down_ms": int(down * 1000)})
            print("kill %d: after %d acknowledged, %d requests in flight, "
                  "down %d ms; copy integrity=%s missing=%d; probe %s" %
                  (k + 1, len(before), inflight, int(down * 1000),
                   integrity[0][0] if integrity else "?", len(missing),
                   dict(probe)))
            sys.stdout.flush()
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()) + TIMEOUT_S + 1)
        sh.stop.set()
        senders_done = not any(th.is_alive() for th in threads)
        # Whatever is left in the re-send pool is sent now.
        holder = {}
        for mid in sh.dup_pool:
            text = deliver(sh, rng, holder, mid, time.monotonic() + 10)
            sh.dups_sent += 1
            sh.dup_answers[text] += 1
        if holder.get("conn") is not None:
            holder["conn"].close()
        rc = svc.stop()
        logs.append(list(svc.log_lines))
        elapsed = time.monotonic() - t0

        rows = svc.rows("SELECT message_id, body FROM webhooks")
        counts = svc.rows("SELECT message_id, COUNT(*) FROM webhooks "
                          "GROUP BY message_id")
        with contextlib.closing(svc.db()) as db:
            integrity = db.execute("PRAGMA integrity_check").fetchall()
    finally:
        sh.stop.set()
        svc.cleanup()

    print("figures: webhooks=%d acknowledged=%d requests=%d retries=%d "
          "kills=%d duplicates_sent=%d (+%d probes) elapsed=%.1fs" %
          (NWEBHOOKS, len(sh.acked), sh.requests, sh.retries, len(kills),
           sh.dups_sent, sum(sum(k["probe"].values()) for k in kills),
           elapsed))
    print("failures by kind: %s" % dict(sh.failures))
    print("replies by status: %s" % dict(sh.statuses))
    print("first 2xx answers: %s" %
          dict(collections.Counter(sh.acked.values())))
    sys.stdout.flush()

    t.check("senders finished before the deadline", senders_done)
    t.check("every webhook got a 2xx", len(sh.acked) == NWEBHOOKS,
            "%d of %d" % (len(sh.acked), NWEBHOOKS))
    t.check("no 4xx and no 2xx without a status", not sh.bad,
            "; ".join(sh.bad[:5]))
    t.check("at least 3 kills", len(kills) >= 3, str(len(kills)))
    t.check("every kill hit requests in flight",
            all(k["inflight"] > 0 for k in kills),
            str([k["inflight"] for k in kills]))
    t.check("retries happened (kills were felt)", sh.retries > 0)
    for i, k in enumerate(kills, 1):
        t.check("kill %d: journal left behind passes integrity_check" % i,
                k["integrity"] == [("ok",)], str(k["integrity"][:3]))
        t.check("kill %d: journal left behind holds all %d ids "
                "acknowledged before it" % (i, k["acked"]),
                not k["missing"], "missing %d, e.g. %s" %
                (len(k["missing"]), k["missing"][:3]))
        t.check("kill %d: acknowledged ids re-sent after restart are "
                "duplicates" % i,
                set(k["probe"]) == {"200 duplicate"}, str(dict(k["probe"])))
    t.check("every deliberate re-send was answered duplicate",
            sh.dups_sent > 0 and set(sh.dup_answers) == {"duplicate"},
            "%d sent: %s" % (sh.dups_sent, dict(sh.dup_answers)))
    for i, lines in enumerate(logs):
        what = "start %d" % (i + 1)
        t.check("%s logged listening" % what,
                any("event=listening" in l for l in lines))
        errs = [l for l in lines if "level=error" in l or "fatal" in l]
        t.check("%s logged no errors" % what, not errs, "; ".join(errs[:3]))
    t.check("graceful stop at the end exits 0", rc == 0, str(rc))

    dup_rows = [r for r in counts if r[1] != 1]
    t.check("every message id is in the journal exactly once",
            not dup_rows, str(dup_rows[:5]))
    stored = {r[0]: r[1] for r in rows}
    missing = [m for m in sh.bodies if m not in stored]
    extra = [m for m in stored if m not in sh.bodies]
    t.check("every id sent is in the journal", not missing,
            "missing %d, e.g. %s" % (len(missing), missing[:3]))
    t.check("no extra rows", not extra and len(rows) == NWEBHOOKS,
            "%d rows, extra %s" % (len(rows), extra[:3]))
    lost = [m for m in sh.acked if m not in stored]
    t.check("every id that got a 200 is in the journal", not lost,
            str(lost[:3]))
    differ = [m for m, b in stored.items() if m in sh.bodies and
              (b.encode() if isinstance(b, str) else b) != sh.bodies[m]]
    t.check("every stored body is byte-identical to the one sent",
            not differ, "%d differ, e.g. %s" % (len(differ), differ[:3]))
    t.check("journal passes PRAGMA integrity_check",
            integrity == [("ok",)], str(integrity[:3]))
    t.check("test finished within 150 s", elapsed < 150, "%.1f" % elapsed)


def main():
    if not os.access(phtest.BIN, os.X_OK):
        print("crash: %s not built" % phtest.BIN)
        sys.exit(77)
    t = phtest.Runner("crash")
    t.run(crash_test)
    t.done()


if __name__ == "__main__":
    main()
