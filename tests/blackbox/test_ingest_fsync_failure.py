#!/usr/bin/python3
"""test_ingest_fsync_failure.py: the WAL's fdatasync fails (EIO), injected
into the real payhook with tests/fault/fsyncfail.c (LD_PRELOAD) while a
trigger file exists. What docs/journal.md promises:
- after a failed fsync no webhook is answered 200 (a reply claims
  durability, and the failure may have left a hole in the WAL on disk that
  recovery would stop at): 503 + Retry-After + a JSON error; the log names
  journal_fsync_failed and journal_lost action=exit status=3; no event past
  the last durable one is sent; payhook drains and exits with status 3 by
  itself (the service manager restarts it);
- at the restart, with the disk working, what the WAL held is moved into
  the database file and synced before anything is answered
  (journal_lost_recovered); webhooks refused meanwhile are accepted when
  GOV.UK Pay retries them and new ones are accepted;
- every event is then published once, seq 1..N with no gap, and the
  journal passes PRAGMA integrity_check.
Then the same with the database file's fsync failing during a WAL
checkpoint instead (PAYHOOK_FSYNCFAIL_SUFFIX=journal.db), with durability
full and process: the journal is lost all the same, its WAL is kept at
exit (journal_wal_kept, no final checkpoint) and payhook exits 3; started
again while the disk still fails, its recovery of the WAL fails and it
exits 3 before listening. An operator's SIGTERM during the drain after a
loss still ends with status 3. A loss leaves journal.db-lost beside the
journal, and while another program that had the journal open before the
loss keeps it open, payhook refuses to start (exit 3) and moves nothing;
once that program is gone the restart recovers the whole WAL alone.
Last, with cross_check = on against payhook-sim, accepted webhooks wait
for a slow cross-check and the disk fails before the answers come: either
only the syncer's fsyncs fail, so the publisher commits the events their
verdicts make but their fsync fails, or every WAL fsync fails and the
verdicts' own commit fails on SQLite's sync of a new WAL header, storing
nothing. Either way no event reaches a subscriber and payhook exits 3;
after the restart each webhook has exactly one event, seq 1..N, which a
new consumer gets, byte for byte as the journal holds it.
Skipped (exit 77) if the shim was not built (PAYHOOK_FSYNCFAIL unset).
Prints "fsyncfail: N passed, N failed"."""
import json
import os
import re
import sqlite3
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phtest import (BIN, SECRET, SLOW, Runner, Service,  # noqa: E402
                    ZmqConsumer, check_503, dispatch_endpoints,
                    integrity_check, journal_ids, pay_id, preload, readyz,
                    sign, verify_against_journal, wait_for, webhook)
import simharness  # noqa: E402
import xcheck  # noqa: E402

PATH = "/webhooks/govuk-pay"
SHIM = os.environ.get("PAYHOOK_FSYNCFAIL", "")
_n = [0]


def fresh_id():
    _n[0] += 1
    return pay_id(0xF500 + _n[0])


def post(s, mid):
    body = webhook(mid)
    try:
        st, h, b = s.request("POST", PATH, body, {
            "Content-Type": "application/json",
            "Pay-Signature": sign(body)}, timeout=5)
    except OSError as e:
        return "timeout", {}, repr(e).encode()
    return st, h, b


def lost_mark(s):
    return os.path.join(s.state_dir, "journal.db-lost")


def check_lost_mark(r, tag, s):
    """After a loss: the mark is beside the journal, and says why."""
    try:
        with open(lost_mark(s)) as f:
            text = f.read()
    except OSError as e:
        text = repr(e)
    r.check(tag + "the loss is marked beside the journal (journal.db-lost)",
            re.match(r'lost_at=\S+Z reason="fsync[^"]*"\n', text)
            is not None, text[:300])


def sent_and_head(s):
    return s.rows("SELECT (SELECT upto FROM events_sent), (SELECT"
                  " coalesce(max(seq), 0) FROM events), (SELECT count(*)"
                  " FROM events)")[0]


class FailingDisk:
    """A payhook under the fault shim: from fail() on, fsyncs of the files
    whose names end in suffix (the shim's default: the WAL) fail; heal()
    mends the disk and drops the shim, for the restart. As a context
    manager it always removes the trigger and stops and removes payhook.
    thread: only that payhook thread's fsyncs fail. service: a Service
    made by the caller instead of a plain one."""

    def __init__(self, extra=None, suffix=None, service=None, thread=None):
        self.s = service or Service(extra=extra)
        self.trigger = os.path.join(self.s.tmp, "fail-fsync-now")
        self.s.env["LD_PRELOAD"] = preload(SHIM)
        self.s.env["PAYHOOK_FSYNCFAIL_TRIGGER"] = self.trigger
        if suffix:
            self.s.env["PAYHOOK_FSYNCFAIL_SUFFIX"] = suffix
        if thread:
            self.s.env["PAYHOOK_FSYNCFAIL_THREAD"] = thread

    def fail(self):
        open(self.trigger, "w").close()

    def heal(self):
        os.unlink(self.trigger)
        del self.s.env["LD_PRELOAD"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if os.path.exists(self.trigger):
            os.unlink(self.trigger)
        if self.s.proc is not None and self.s.alive():
            self.s.kill()
        self.s.cleanup()


def post_new(s, ok, refused):
    """Post a new webhook; its id goes to ok if answered 200, to refused
    if 503. Returns (id, status, headers, body)."""
    mid = fresh_id()
    st, h, b = post(s, mid)
    if st == 200:
        ok.append(mid)
    elif st == 503:
        refused.append(mid)
    return mid, st, h, b


def accept(r, tag, s, n, ok):
    """Before the disk fails: post n new webhooks, check that every one is
    answered 200; their ids are added to ok."""
    had = len(ok)
    for _ in range(n):
        post_new(s, ok, [])
    r.check(tag + "before, %d webhooks accepted" % n, len(ok) - had == n,
            repr(ok))


def check_restart(r, s, ok, refused):
    """payhook restarted on a working disk after it lost its journal: the
    WAL it kept is moved into the database file at open, the refused
    webhooks are accepted when retried and new ones too, every event is
    sent once with no gap, every id answered 200 is stored once."""
    s.start()
    r.check("restart: the lost journal's WAL was moved into the database "
            "file alone and synced at open",
            "event=journal_lost_found" in s.log() and
            re.search(r"event=journal_lost_recovered wal_bytes=[1-9]\d* "
                      r"result=synced", s.log()) is not None,
            s.log()[-600:])
    r.check("restart: the loss mark is gone", not os.path.exists(
        lost_mark(s)))
    retried = [post(s, m) for m in refused]
    r.check("restart: refused webhooks retried get 200 (%d)" %
            len(refused), all(a[0] == 200 for a in retried),
            repr([(a[0], a[2]) for a in retried]))
    ok.extend(refused)
    _, st, h, b = post_new(s, ok, [])
    r.check("restart: a new webhook is accepted", st == 200 and
            b == b'{"status":"accepted"}', "%s %r" % (st, b))

    # Every event sent once, no gap.
    r.check("restart: every event sent (watermark at the head)",
            wait_for(lambda: sent_and_head(s)[0] ==
                     sent_and_head(s)[1], 10), repr(sent_and_head(s)))
    up, head, count = sent_and_head(s)
    r.check("restart: seq 1..%d, one event per row, no gap" % head,
            count == head and head == len(journal_ids(s)),
            repr((up, head, count, len(journal_ids(s)))))
    st, obj = readyz(s)
    r.check("restart: /readyz 200", st == 200, repr(obj))
    r.check("restart: PRAGMA integrity_check ok",
            integrity_check(s) == ["ok"])
    ids = journal_ids(s)
    r.check("restart: every id answered 200 is stored once (%d)" %
            len(ok), all(ids.get(m) == 1 for m in ok),
            repr([m for m in ok if ids.get(m) != 1][:5]))
    r.check("restart: payhook stopped cleanly", s.stop() == 0)


def t_fsync_failure(r):
    ok, refused = [], []
    with FailingDisk() as disk:
        s = disk.s
        s.start()
        # Before: accepted and published.
        accept(r, "", s, 5, ok)
        r.check("before: their events sent", wait_for(
            lambda: sent_and_head(s)[0] == 5, 10), repr(sent_and_head(s)))

        # The disk loses writes.
        disk.fail()
        answers = []
        for _ in range(6):
            answers.append(post_new(s, ok, refused))
            if not s.alive():
                break
        r.check("failing: no webhook answered 200 after the failed fsync",
                answers and all(a[1] != 200 for a in answers),
                repr([a[1] for a in answers]))
        r.check("failing: the first one is refused (503)",
                answers[0][1] == 503, repr(answers[0][1:3]))
        check_503(r, "failing", answers[0][1:])
        r.check("failing: the log names journal_fsync_failed",
                wait_for(lambda: "event=journal_fsync_failed" in s.log(),
                         5), s.log()[-400:])
        r.check("failing: the log says the journal is lost and payhook "
                "exits 3", wait_for(lambda: re.search(
                    r"event=journal_lost .*action=exit status=3",
                    s.log()) is not None, 5), s.log()[-600:])
        r.check("failing: payhook exits by itself",
                wait_for(lambda: not s.alive(), 10), s.log()[-400:])
        rc = s.stop()
        first_log = s.log()
        r.check("failing: exit status 3 (restart it)", rc == 3, repr(rc))
        r.check("failing: nothing past the last durable event was sent",
                sent_and_head(s)[0] == 5, repr(sent_and_head(s)))
        r.check("failing: no secret, body or signature in the log",
                SECRET not in first_log and "Pay-Signature" not in
                first_log and "sherlock" not in first_log.lower() and
                not any(sign(webhook(a[0])) in first_log for a in answers),
                first_log[-400:])
        check_lost_mark(r, "failing: ", s)

        # The disk works again and the service manager restarts payhook.
        disk.heal()
        check_restart(r, s, ok, refused)


def t_db_fsync_failure(r, durability):
    """The database file's fsync fails during a WAL checkpoint (the WAL's
    own fsyncs work): SQLite already counts the copied frames as done, so
    the journal is lost all the same. payhook stops checkpointing, keeps
    the WAL at exit and exits 3; the restart copies the WAL again. With
    durability = process as well (no WAL fsyncs, but checkpoints sync the
    database file all the same)."""
    tag = "db/%s: " % durability
    ok, refused = [], []
    with FailingDisk({"durability": durability}, "journal.db") as disk:
        s = disk.s
        s.start()
        accept(r, tag, s, 5, ok)

        # The disk loses the database file's writes. The checkpointer
        # copies the WAL within a second (checkpoint period) of a commit.
        disk.fail()
        answers = []
        deadline = time.monotonic() + 15
        while s.alive() and time.monotonic() < deadline:
            answers.append(post_new(s, ok, refused))
            time.sleep(0.05)
        # Stopping starts at once: a webhook that comes in meanwhile is
        # refused (503) or finds the listener closed, never answered 200.
        codes = [a[1] for a in answers]
        first = next((i for i, c in enumerate(codes) if c != 200),
                     len(codes))
        r.check(tag + "once one webhook is refused none is answered 200",
                200 not in codes[first:] and set(codes) <=
                {200, 503, "timeout"}, repr(codes))
        if 503 in codes:
            check_503(r, tag.rstrip(": "), answers[codes.index(503)][1:])
        r.check(tag + "payhook exits by itself",
                wait_for(lambda: not s.alive(), 10), s.log()[-400:])
        rc = s.stop()       # also waits for the rest of its log
        log = s.log()
        r.check(tag + "the log names the failed fsync of the database file",
                "event=journal_checkpoint_fsync_failed" in log, log[-600:])
        r.check(tag + "the log says the journal is lost and payhook exits 3",
                re.search(r"event=journal_lost error=\"fsync[^\"]*"
                          r"(database file|checkpoint)[^\"]*\" action=exit "
                          r"status=3", log) is not None, log[-600:])
        r.check(tag + "the WAL is kept for the restart",
                "event=journal_wal_kept" in log, log[-600:])
        r.check(tag + "no final checkpoint was attempted",
                "event=journal_final_checkpoint" not in log, log[-600:])
        r.check(tag + "exit status 3 (restart it)", rc == 3, repr(rc))
        wal = os.path.join(s.state_dir, "journal.db-wal")
        r.check(tag + "the WAL is on disk, not empty",
                os.path.exists(wal) and os.path.getsize(wal) > 0,
                repr(os.path.exists(wal)))

        # Restarted while the disk still fails: the recovery's sync of the
        # database file fails, and payhook exits 3 before it listens.
        p = subprocess.run(s.command(), env=s.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=60 * SLOW)
        err = p.stderr.decode("utf-8", "replace")
        r.check(tag + "restarted on the failing disk: exit 3 before "
                "listening", p.returncode == 3 and "fsync failed again" in
                err and "event=listening" not in err,
                "%r %s" % (p.returncode, err[-400:]))
        r.check(tag + "the WAL is still there",
                os.path.exists(wal) and os.path.getsize(wal) > 0)
        check_lost_mark(r, tag, s)

        disk.heal()
        check_restart(r, s, ok, refused)


def t_sigterm_after_loss(r):
    """An operator's SIGTERM right after the loss, while payhook drains:
    the drain finishes, the exit status stays 3 (not 0), and the restart
    recovers."""
    ok, refused = [], []
    with FailingDisk() as disk:
        s = disk.s
        s.start()
        accept(r, "sigterm: ", s, 3, ok)
        disk.fail()
        st = post_new(s, ok, refused)[1]
        r.check("sigterm: the webhook after the failure is refused",
                st == 503, repr(st))
        rc = s.stop()       # SIGTERM at once, during the drain
        log = s.log()
        r.check("sigterm: exit status 3, not 0", rc == 3, repr(rc))
        r.check("sigterm: journal_lost was logged, the stop was not forced",
                "event=journal_lost" in log and "shutdown_forced" not in
                log, log[-600:])
        disk.heal()
        check_restart(r, s, ok, refused)


def t_bystander(r):
    """Another program (a stand-in for an sqlite3 shell: a process that
    read the journal) has it open when it is lost. Its WAL index says the
    checkpointed frames are in the database file, which on a failing disk
    they may not be; recovering beside it would copy only the rest. So
    payhook refuses to start (exit 3, naming the cause) and moves nothing
    until the program is gone. Meanwhile `payhook journal status` and
    `backup` read the journal alone (status with a warning) and move
    nothing, and `payhook journal redrive` is refused. Once the program is
    killed (it leaves without checkpointing), the restart recovers every
    frame."""
    ok, refused = [], []
    with FailingDisk() as disk:
        s = disk.s
        s.start()
        accept(r, "bystander: ", s, 5, ok)
        db = os.path.join(s.state_dir, "journal.db")
        other = subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys, time\n"
             "c = sqlite3.connect(sys.argv[1])\n"
             "print(c.execute('SELECT count(*) FROM webhooks')"
             ".fetchone()[0], flush=True)\n"
             "time.sleep(120)\n", db],
            stdout=subprocess.PIPE)
        line = other.stdout.readline().strip()
        try:
            r.check("bystander: the other program read the journal",
                    line == b"5", repr(line))
            disk.fail()
            st = post_new(s, ok, refused)[1]
            r.check("bystander: the webhook after the failure is refused",
                    st == 503, repr(st))
            r.check("bystander: payhook exits by itself",
                    wait_for(lambda: not s.alive(), 10), s.log()[-400:])
            r.check("bystander: exit status 3", s.stop() == 3)
            wal = os.path.join(s.state_dir, "journal.db-wal")
            size = os.path.getsize(wal) if os.path.exists(wal) else -1
            disk.heal()

            t0 = time.monotonic()
            p = subprocess.run(s.command(), env=s.env,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=60 * SLOW)
            took = time.monotonic() - t0
            err = p.stderr.decode("utf-8", "replace")
            r.check("bystander: restarted beside the other program: exit 3 "
                    "before listening, naming it",
                    p.returncode == 3 and "another program (pid %d) has "
                    "the journal open: kill it" % other.pid in err and
                    "event=listening" not in err,
                    "%r %s" % (p.returncode, err[-400:]))
            r.check("bystander: it gave up within seconds (%.1f s)" % took,
                    took < 15 * SLOW)
            r.check("bystander: the WAL is untouched (%d bytes)" % size,
                    size > 0 and os.path.exists(wal) and
                    os.path.getsize(wal) == size)
            check_lost_mark(r, "bystander: ", s)
        finally:
            other.kill()    # it leaves without a checkpoint
            other.wait()

        jc = [BIN, "journal", "--state-dir", s.state_dir]
        p = subprocess.run(jc + ["status"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60 * SLOW)
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        r.check("bystander: payhook journal status reads it alone, with a "
                "warning", p.returncode == 0 and "not recovered yet" in err
                and re.search(r"published=[56] ", out) is not None,
                "%r %s %s" %
                (p.returncode, out, err))
        copy = os.path.join(s.tmp, "copy.db")
        p = subprocess.run(jc + ["backup", copy], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60 * SLOW)
        out = p.stdout.decode("utf-8", "replace")
        rows = -1
        if p.returncode == 0 and os.path.exists(copy):
            c = sqlite3.connect(copy)
            rows = c.execute("SELECT count(*) FROM webhooks").fetchone()[0]
            c.close()
        r.check("bystander: payhook journal backup copies it alone (%d "
                "rows)" % rows, rows >= 5,
                "%r %s %s" % (p.returncode, out,
                              p.stderr.decode("utf-8", "replace")))
        r.check("bystander: ... and nothing moved",
                os.path.getsize(wal) == size and
                os.path.exists(lost_mark(s)))
        p = subprocess.run(jc + ["redrive", "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60 * SLOW)
        err = p.stderr.decode("utf-8", "replace")
        r.check("bystander: payhook journal redrive is refused until then",
                p.returncode != 0 and "recover it first" in err,
                "%r %s" % (p.returncode, err))
        check_restart(r, s, ok, refused)


def wal_backfilled(s):
    """True once SQLite's WAL index (journal.db-shm, laid out as
    https://sqlite.org/walformat.html says) counts every frame of the WAL
    as copied into the database file: nBackfill (offset 96) = mxFrame
    (offset 16 of the index header). The header is kept twice (bytes 0-47
    and 48-95); a read between a writer's two copies is not trusted."""
    try:
        with open(os.path.join(s.state_dir, "journal.db-shm"), "rb") as f:
            h = f.read(100)
    except OSError:
        return False
    return len(h) == 100 and h[0:48] == h[48:96] and \
        struct.unpack_from("=I", h, 16)[0] == \
        struct.unpack_from("=I", h, 96)[0]


class FeedWatch:
    """A subscriber to the whole live feed that only counts: events, and
    the head_seq of each heartbeat."""

    def __init__(self, endpoint):
        import zmq
        self.events, self.heads = 0, []
        self.ctx = zmq.Context()
        try:
            self.sub = self.ctx.socket(zmq.SUB)
            self.sub.setsockopt(zmq.LINGER, 0)
            self.sub.setsockopt(zmq.SUBSCRIBE, b"")
            self.sub.connect(endpoint)
        except Exception:
            self.ctx.destroy(0)
            raise

    def poll(self, timeout):
        """Take in what arrives within timeout seconds; False if none."""
        if not self.sub.poll(int(timeout * 1000)):
            return False
        topic, body = self.sub.recv_multipart()
        if topic == b"heartbeat":
            self.heads.append(json.loads(body)["head_seq"])
        else:
            self.events += 1
        return True

    def drain(self):
        """Everything received so far: (events, [head_seq, ...])."""
        while self.poll(0.1):
            pass
        return self.events, self.heads

    def close(self):
        self.sub.close(0)
        self.ctx.term()


def t_cross_check_fsync_failure(r, which):
    """cross_check = on: a webhook's row is synced before its 200; its
    verdict is stored when the API answers (not synced: it can be redone),
    then its event, in the publisher's own commit, synced before the event
    is sent (a seq a consumer saw must never be reused).
    which = "publish": only the syncer thread's fsyncs fail, so the first
    to fail is the publisher's. which = "verdict": every WAL fsync fails
    once the checkpointer has copied the whole WAL, so the next commit (the
    verdicts') starts the WAL over, and SQLite's own sync of the new WAL
    header fails inside that commit.
    The disk must fail after the checkpointer's pass (within a second of
    the last webhook) and before the first answer (lag after the first):
    a harness check says so if a slow machine missed that window."""
    tag = "%s: " % which
    n = 4
    lag = min(4000 * SLOW, 60000)      # the API's answers, ms
    with simharness.Sim() as sim:
        svc = xcheck.service_for(sim, extra={
            "durability": "full", "api_timeout": "%ds" % (lag // 1000 + 30)})
        with FailingDisk(service=svc, thread="ph-sync" if which ==
                         "publish" else None) as disk:
            s = disk.s
            s.start()
            sub = FeedWatch(dispatch_endpoints(s)[0])
            try:
                pids = [xcheck.successful_payment(sim) for _ in range(n)]
                sim.ctl("POST", "/faults", {"latency_ms": lag})
                r.check(tag + "the subscriber hears the feed's heartbeat",
                        wait_for(lambda: sub.poll(0.1) and sub.heads,
                                 5 * SLOW))
                ok = []
                t0 = time.monotonic()     # the first check starts now
                for i, pid in enumerate(pids):
                    mid = pay_id(0xF5B000 + i)
                    st, _, b = s.post(xcheck.sim_webhook_body(
                        sim, pid, "card_payment_captured", mid))
                    if st == 200:
                        ok.append(mid)
                r.check(tag + "%d webhooks accepted, their checks slowed "
                        "to %d ms" % (n, lag), len(ok) == n, repr(ok))
                # The checkpointer copies those rows within a second.
                r.check(tag + "the WAL is checkpointed before the disk "
                        "fails", wait_for(lambda: wal_backfilled(s),
                                          lag / 2000))
                disk.fail()
                r.check(tag + "harness: the disk failed before the first "
                        "answer could come", time.monotonic() - t0 <
                        lag / 1000 - 0.5)
                r.check(tag + "payhook exits by itself once the answers "
                        "come", wait_for(lambda: not s.alive(),
                                         lag / 1000 + 15 * SLOW),
                        s.log()[-400:])
                events, heads = sub.drain()
            finally:
                sub.close()
            rc = s.stop()
            log = s.log()
            r.check(tag + "exit status 3", rc == 3, repr(rc))
            r.check(tag + "the log says the journal is lost, exit 3",
                    re.search(r"event=journal_lost .*action=exit status=3",
                              log) is not None, log[-600:])
            up, head, count = sent_and_head(s)
            if which == "publish":
                r.check(tag + "the log names the syncer's failed fsync",
                        "event=journal_fsync_failed" in log, log[-600:])
                r.check(tag + "the publisher committed events (head %d) "
                        "whose fsync failed" % head, head >= 1 and
                        count == head, repr((up, head, count)))
            else:
                r.check(tag + "the verdicts' commit failed on the fsync "
                        "(SQLITE_IOERR_FSYNC) and stored nothing",
                        re.search(r"event=crosscheck_write_failed rows=\d+ "
                                  r"reason=\"[^\"]*sqlite code 1034\)", log)
                        is not None and head == 0 and not s.rows(
                            "SELECT 1 FROM webhooks WHERE verdict IS NOT"
                            " NULL"), log[-600:])
            r.check(tag + "none of them was sent: none reached the "
                    "subscriber, none is marked sent, no heartbeat counted "
                    "one", events == 0 and up == 0 and heads and
                    set(heads) == {0}, repr((events, up, heads)))
            r.check(tag + "no secret or signature in the log",
                    SECRET not in log and simharness.TEST_KEY not in log
                    and "Pay-Signature" not in log, log[-400:])
            check_lost_mark(r, tag, s)

            disk.heal()
            sim.ctl("DELETE", "/faults")
            s.start()
            r.check(tag + "restart: the WAL was recovered alone and synced",
                    re.search(r"event=journal_lost_recovered "
                              r"wal_bytes=[1-9]\d* result=synced", s.log())
                    is not None, s.log()[-600:])
            r.check(tag + "restart: the loss mark is gone",
                    not os.path.exists(lost_mark(s)))
            sub = ZmqConsumer(*dispatch_endpoints(s), start=1)
            try:
                sub.catch_up()
                got = sub.run_until(lambda c: c.holds(n), 20 * SLOW)
                held = dict(sub.events)
            finally:
                sub.close()
            r.check(tag + "restart: a new consumer gets seq 1..%d" % n,
                    got and sorted(held) == list(range(1, n + 1)),
                    repr(sorted(held)))
            problems = verify_against_journal(s, held)
            r.check(tag + "restart: ... byte for byte as the journal holds "
                    "them", not problems, repr(problems[:3]))
            per = dict(s.rows("SELECT w.message_id, count(e.seq) FROM"
                              " webhooks w LEFT JOIN events e ON"
                              " e.row_id = w.id GROUP BY w.id"))
            r.check(tag + "restart: one event per webhook",
                    sorted(per) == sorted(ok) and
                    set(per.values()) == {1}, repr(per))
            verdicts = {v["verdict"] for v in xcheck.verdicts(s).values()}
            r.check(tag + "restart: every verdict is confirmed",
                    verdicts == {"confirmed"}, repr(verdicts))
            r.check(tag + "restart: PRAGMA integrity_check ok",
                    integrity_check(s) == ["ok"])
            r.check(tag + "restart: payhook stopped cleanly", s.stop() == 0)


def main():
    r = Runner("fsyncfail")
    if not SHIM or not os.path.exists(SHIM):
        print("fsyncfail: skipped, the fault shim was not built "
              "(PAYHOOK_FSYNCFAIL)")
        sys.exit(77)
    r.run(t_fsync_failure)
    r.run(t_db_fsync_failure, "full")
    r.run(t_db_fsync_failure, "process")
    r.run(t_sigterm_after_loss)
    r.run(t_bystander)
    r.run(t_cross_check_fsync_failure, "publish")
    r.run(t_cross_check_fsync_failure, "verdict")
    r.done()


if __name__ == "__main__":
    main()
