#!/usr/bin/python3
"""test_journal_cli.py: `payhook journal` beside a running `payhook serve`.

Checks, each against a real service on loopback: status counts and head seq
agree with /metrics; pending and errors list the rows a dead GOV.UK Pay API
leaves waiting, with their last cross-check error; quarantined lists id,
time and reason and never any body content (PII); show prints a body only
with --body and a warning; redrive of a quarantined row whose stored body is
a valid webhook moves it under its real webhook_message_id and the service
then cross-checks and publishes it (and refuses invalid bodies, rows that
are not quarantined, and message ids already stored); backups taken while
webhooks stream in pass integrity_check, hold every id acknowledged before
the backup began, and restore into a journal `payhook serve` starts on,
with no 503 during the backups; usage errors exit 2; a missing journal is
never created.
"""
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

EMAIL = "sherlock.holmes@example.com"


def journal(svc, *args, timeout=20):
    p = subprocess.run([phtest.BIN, "journal", "-c", svc.conf] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def kv_line(text, prefix):
    for line in text.splitlines():
        if line.startswith(prefix):
            return line
    return ""


def rw_db(svc):
    return sqlite3.connect(os.path.join(svc.state_dir, "journal.db"),
                           timeout=5)


def test_status_and_quarantined(r, svc):
    ids = [phtest.pay_id(1000 + i) for i in range(6)]
    for st in phtest.post_many(svc, [phtest.webhook(i) for i in ids]):
        r.check("webhook accepted", st == 200, st)
    bad = b'{"not":"a webhook","email":"%s"}' % EMAIL.encode()
    st, _, _ = svc.post(bad)
    r.check("invalid body quarantined (200)", st == 200, st)
    phtest.wait_for(lambda: phtest.metric(svc.metrics(), "payhook_head_seq")
                    >= 7 and svc.rows("SELECT count(*) FROM webhooks WHERE "
                                      "state = 'published'")[0][0] == 6)
    rc, out, err = journal(svc, "status")
    r.check("status exits 0", rc == 0, err)
    r.check("status counts", "rows: received=0 checked=0 published=6 "
            "quarantined=1" in out, out)
    head = phtest.metric(svc.metrics(), "payhook_head_seq")
    r.check("status head_seq equals /metrics payhook_head_seq",
            kv_line(out, "head_seq:").startswith("head_seq: %d " % head),
            (out, head))
    r.check("status: nothing pending", "pending: 0" in out, out)
    rc, out, err = journal(svc, "quarantined")
    key = phtest.quarantine_id(bad)[:18]
    r.check("quarantined lists the row with its key and reason",
            rc == 0 and key in out and 'reason "webhook_message_id: '
            'required field missing"' in out and "(1 row)" in out, out)
    r.check("quarantined output holds no body content",
            EMAIL not in out and "not a webhook" not in out, out)
    rc, out, err = journal(svc, "show", ids[2])
    r.check("show by event id", rc == 0 and "event_id:     %s" % ids[2] in out
            and "state:        published" in out and "verdict:      skipped"
            in out, out + err)
    r.check("show without --body prints no body",
            EMAIL not in out and "--- body ---" not in out, out)
    rc, out, err = journal(svc, "show", "--body", ids[2])
    r.check("show --body prints the body with a warning on stderr",
            rc == 0 and EMAIL in out and "WARNING" in err and
            "personal data" in err, err)
    rc, out, err = journal(svc, "pending", "--limit", "5")
    r.check("pending on a drained journal", rc == 0 and "(0 rows)" in out,
            out)
    return ids


def insert_quarantined(svc, body, reason):
    key = phtest.quarantine_id(body)
    with contextlib.closing(rw_db(svc)) as db:
        with db:
            cur = db.execute(
                "INSERT INTO webhooks (message_id, state, received_ms,"
                " secret_index, body, quarantine_reason) VALUES"
                " (?, 'quarantined', ?, 1, ?, ?)",
                (key, int(time.time() * 1000), body, reason))
            return cur.lastrowid


def alert_sent(svc, row):
    got = svc.rows("SELECT seq, published_ms FROM webhooks WHERE id = ?",
                   (row,))
    return got and got[0][0] is not None and got[0][1] is not None


def test_redrive(r, svc, ids):
    # A valid webhook that an older validator had quarantined.
    real = phtest.pay_id(777777)
    payment = phtest.pay_id(888888)
    body = phtest.webhook(real, payment, "card_payment_succeeded")
    row = insert_quarantined(svc, body, "resource.state.status: unknown "
                             "value (old validator)")
    # The body of an id already stored (GOV.UK Pay redelivered it).
    dup_row = insert_quarantined(svc, phtest.webhook(ids[0]) + b" ",
                                 "test: duplicate of a stored id")
    # Wake the publisher so both get their alert.quarantined.
    svc.post(phtest.webhook(phtest.pay_id(2000)))
    r.check("inserted rows get their alert.quarantined",
            phtest.wait_for(lambda: alert_sent(svc, row) and
                            alert_sent(svc, dup_row), 10))
    q_before = svc.rows("SELECT count(*) FROM webhooks WHERE state ="
                        " 'quarantined'")[0][0]

    rc, out, err = journal(svc, "redrive", str(row))
    r.check("redrive of a now-valid body succeeds", rc == 0 and
            "now received as event %s" % real in out, out + err)
    got = svc.rows("SELECT message_id, state, event_type, resource_id, seq"
                   " FROM webhooks WHERE id = ?", (row,))
    r.check("row is received under its real webhook_message_id, no seq",
            got and got[0][0] == real and got[0][2] ==
            "card_payment_succeeded" and got[0][3] == payment and
            got[0][4] is None and got[0][1] in ("received", "checked",
                                                 "published"), got)
    rc, out, err = journal(svc, "redrive", str(row))
    r.check("a second redrive is refused (no longer quarantined)",
            rc == 1 and "not quarantined" in err, err)
    rc, out, err = journal(svc, "redrive", str(dup_row))
    r.check("redrive refuses a message id already in the journal",
            rc == 1 and "already in the journal" in err, err)
    r.check("the duplicate's row is untouched",
            svc.rows("SELECT state FROM webhooks WHERE id = ?",
                     (dup_row,)) == [("quarantined",)])
    rc, out, err = journal(svc, "redrive", "1")
    r.check("redrive refuses a published row", rc == 1 and
            "not quarantined" in err, err)
    q1 = svc.rows("SELECT id FROM webhooks WHERE state = 'quarantined'"
                  " AND id NOT IN (?, ?)", (row, dup_row))
    rc, out, err = journal(svc, "redrive", str(q1[0][0]))
    r.check("redrive refuses a body that is still invalid", rc == 1 and
            "still not a valid webhook" in err, err)

    # The service picks the row up at its next pass (a webhook here).
    svc.post(phtest.webhook(phtest.pay_id(2001)))

    def published():
        got = svc.rows("SELECT w.state, e.topic, e.json FROM webhooks w"
                       " JOIN events e ON e.seq = w.seq WHERE w.id = ?",
                       (row,))
        return got if got and got[0][0] == "published" else None
    got = phtest.wait_for(published, 10)
    ev = json.loads(got[0][2]) if got else {}
    r.check("re-driven row is published as payment.succeeded",
            got and got[0][1] == "payment.succeeded" and
            ev.get("event_id") == real and ev.get("payment_id") == payment,
            got)
    r.check("quarantined gauge went down by one",
            phtest.wait_for(lambda: phtest.metric(
                svc.metrics(), "payhook_journal_rows", state="quarantined")
                == q_before - 1, 5))
    st, _, resp = svc.post(body)
    r.check("GOV.UK Pay redelivering it now is a duplicate",
            st == 200 and b"duplicate" in resp, (st, resp))
    ids_count = phtest.journal_ids(svc)
    r.check("no message id stored twice",
            all(v == 1 for v in ids_count.values()))
    rc, out, err = journal(svc, "show", real)
    r.check("show tells the row was re-driven",
            rc == 0 and "re-driven at" in out and "(old validator)" in out,
            out)


def test_backup_under_load(r, svc, tmp):
    acked = []          # (monotonic time of the 2xx, id)
    stop = threading.Event()

    def load():
        n = 0
        while not stop.is_set():
            batch = [phtest.pay_id(500000 + n + i) for i in range(20)]
            sts = phtest.post_many(svc, [phtest.webhook(i) for i in batch])
            now = time.monotonic()
            for i, st in zip(batch, sts):
                if st == 200:
                    acked.append((now, i))
            n += 20
    t = threading.Thread(target=load, daemon=True)
    t.start()
    time.sleep(0.5)
    backups = []
    for k in range(3):
        dest = os.path.join(tmp, "backup-%d.db" % k)
        t0 = time.monotonic()
        rc, out, err = journal(svc, "backup", dest)
        r.check("backup %d during load exits 0" % k, rc == 0 and
                "integrity_check ok" in out, out + err)
        backups.append((t0, dest))
        time.sleep(0.3)
    stop.set()
    t.join(20)
    r.check("the load got acknowledgements", len(acked) > 100, len(acked))
    m = svc.metrics()
    r.check("no 503 while backups ran", phtest.metric(
        m, "payhook_http_requests_total", status="503") == 0)
    for t0, dest in backups:
        if not os.path.exists(dest):
            r.check("backup file exists " + dest, False)
            continue
        r.check("backup is 0600", os.stat(dest).st_mode & 0o777 == 0o600,
                oct(os.stat(dest).st_mode))
        r.check("no -wal beside the backup",
                not os.path.exists(dest + "-wal"))
        with contextlib.closing(sqlite3.connect(
                "file:%s?mode=ro" % dest, uri=True)) as db:
            ic = [x[0] for x in db.execute("PRAGMA integrity_check")]
            have = {x[0] for x in db.execute(
                "SELECT message_id FROM webhooks")}
        r.check("backup passes integrity_check", ic == ["ok"], ic)
        want = [i for when, i in acked if when < t0]
        missing = [i for i in want if i not in have]
        r.check("backup holds every id acknowledged before it began "
                "(%d)" % len(want), not missing and want, missing[:5])
    # Restore the last one into a new state dir and serve from it.
    restore = phtest.Service(tmp=tempfile.mkdtemp(prefix="payhook-restore-"))
    try:
        os.makedirs(restore.state_dir, mode=0o700)
        shutil.copy(backups[-1][1], os.path.join(restore.state_dir,
                                                 "journal.db"))
        restore.start()
        rc, out, err = journal(restore, "status")
        r.check("payhook serve starts on the restored journal",
                restore.alive() and rc == 0, err)
        r.check("restored journal passes integrity_check",
                phtest.integrity_check(restore) == ["ok"])
    finally:
        restore.cleanup()
        shutil.rmtree(restore.tmp, ignore_errors=True)
    rc, out, err = journal(svc, "backup", backups[0][1])
    r.check("backup refuses to overwrite a file", rc == 1 and
            "already exists" in err, err)


def test_pending_and_errors(r):
    # The API is a closed port: rows wait in 'received' with an error.
    tmp = tempfile.mkdtemp(prefix="payhook-jcli-")
    key = os.path.join(tmp, "api-key")
    with open(key, "w") as f:
        f.write("api_test_0123456789abcdef\n")
    os.chmod(key, 0o600)
    svc = phtest.Service({"cross_check": "on", "api_key_file": key,
                          "api_base_url": "http://127.0.0.1:%d" %
                          phtest.free_port()}, tmp=tmp)
    try:
        svc.start()
        ids = [phtest.pay_id(3000 + i) for i in range(3)]
        phtest.post_many(svc, [phtest.webhook(i) for i in ids])
        phtest.wait_for(lambda: svc.rows(
            "SELECT count(*) FROM webhooks WHERE last_error IS NOT NULL")
            [0][0] == 3, 10)
        rc, out, err = journal(svc, "pending")
        r.check("pending lists the waiting rows", rc == 0 and
                all(i in out for i in ids) and "(3 rows)" in out and
                "last_error" in out, out + err)
        rc, out, err = journal(svc, "pending", "--limit", "2")
        r.check("pending --limit", "(2 rows)" in out, out)
        rc, out, err = journal(svc, "status")
        r.check("status shows pending age and the cross-check errors",
                rc == 0 and "pending: 3, oldest received" in out and
                "cross_check_errors: 3 row(s)" in out and
                "connection failed" in out, out)
        rc, out, err = journal(svc, "errors")
        r.check("errors lists every waiting row", rc == 0 and
                "(3 rows)" in out, out)
        r.check("no body content in pending/errors/status",
                EMAIL not in out)
    finally:
        svc.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_usage(r, tmp):
    p = subprocess.run([phtest.BIN, "journal", "status"],
                       capture_output=True, text=True)
    r.check("no -c/--state-dir: exit 2", p.returncode == 2, p.stderr)
    p = subprocess.run([phtest.BIN, "journal", "--state-dir", tmp, "frob"],
                       capture_output=True, text=True)
    r.check("unknown command: exit 2", p.returncode == 2, p.stderr)
    empty = os.path.join(tmp, "empty")
    os.mkdir(empty)
    p = subprocess.run([phtest.BIN, "journal", "--state-dir", empty,
                        "status"], capture_output=True, text=True)
    r.check("missing journal: exit 1, says so, creates nothing",
            p.returncode == 1 and "no journal" in p.stderr and
            os.listdir(empty) == [], p.stderr)
    p = subprocess.run([phtest.BIN, "journal", "--help"],
                       capture_output=True, text=True)
    r.check("--help exits 0", p.returncode == 0 and "redrive" in p.stdout)


def main():
    r = phtest.Runner("test_journal_cli")
    tmp = tempfile.mkdtemp(prefix="payhook-jcli-")
    svc = phtest.Service()
    try:
        svc.start()
        ids = []
        try:
            ids = test_status_and_quarantined(r, svc)
        except Exception as e:
            r.check("status/quarantined (raised)", False, repr(e))
        r.run(test_redrive, svc, ids or [phtest.pay_id(1000)])
        r.run(test_backup_under_load, svc, tmp)
        r.check("integrity_check of the live journal",
                phtest.integrity_check(svc) == ["ok"])
    finally:
        svc.cleanup()
    r.run(test_pending_and_errors)
    r.run(test_usage, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    r.done()


if __name__ == "__main__":
    main()
