"""A journal lock held for a moment (as a WAL restart checkpoint does) must
not turn into a 503: the batch is retried while the loop keeps serving, and
the webhook gets its 200 once the lock is gone. Held for good, it is a 503
after about half a second (test_ingest_journal_failure.py)."""
import sqlite3
import threading
import time

import phtest


def main():
    r = phtest.Runner("lock_retry")
    svc = phtest.Service({"durability": "full"})
    svc.start()
    try:
        st, _, _ = svc.post(phtest.webhook(phtest.pay_id(1)))
        r.check("a first webhook is stored", st == 200, st)
        before = phtest.metric(svc.metrics(),
                               "payhook_journal_busy_retries_total")
        db = sqlite3.connect("%s/journal.db" % svc.state_dir,
                             isolation_level=None, timeout=5)
        db.execute("BEGIN IMMEDIATE")       # the write lock
        result = {}

        def send():
            t0 = time.monotonic()
            result["status"] = svc.post(phtest.webhook(phtest.pay_id(2)))[0]
            result["took"] = time.monotonic() - t0

        t = threading.Thread(target=send)
        t.start()
        time.sleep(0.15)
        st, _, _ = svc.admin("/healthz")
        r.check("the loop keeps serving while the batch waits", st == 200,
                st)
        db.execute("COMMIT")                # released after ~150 ms
        t.join(10)
        db.close()
        r.check("the webhook gets 200, not 503", result.get("status") == 200,
                result)
        r.check("it waited for the lock (>= 0.1 s)",
                result.get("took", 0) >= 0.1, result)
        after = phtest.metric(svc.metrics(),
                              "payhook_journal_busy_retries_total")
        r.check("payhook_journal_busy_retries_total counts the retries",
                after > before, (before, after))
        ids = [m for (m,) in svc.rows("SELECT message_id FROM webhooks")]
        r.check("both webhooks stored once", len(ids) == 2 and
                len(set(ids)) == 2, ids)
    finally:
        svc.cleanup()
    r.done()


main()
