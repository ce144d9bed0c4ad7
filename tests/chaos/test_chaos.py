#!/usr/bin/python3
"""test_chaos.py: fault injection for payhook (issue 7), one scenario driver.

Every scenario runs the real binaries on loopback:

  payhook-sim   the GOV.UK Pay simulator: API (payhook cross-checks against
                it) and webhook sender with GOV.UK Pay's retry schedule
                (60 s, 5 min, 1 h, 1 d, 2 d; --time-scale 1000), 20
                deliveries in flight (so reordering), optional duplicates;
  payhook serve cross_check = on against the sim, durability = full, fixed
                (free) ports so a restarted process is found again;
  payhook tail  the audit consumer (`tail --from 1`, JSON lines parsed here;
                restarted from last + 1 whenever it dies or says it could
                not fill a gap);

drives a realistic mix of payments through the sim (created, paid,
declined, PSP error, cancelled by the user and by the service, abandoned and
expired through the clock, delayed capture, refunds, and deliberate lies:
/_sim/webhooks/send with resource_overrides), injects its fault, waits until
the simulator has delivered everything (pushing the simulated clock over
long retry gaps), and then checks against the SIMULATOR's delivery log
(/_sim/webhooks) that every message it delivered successfully appears
exactly once in the audit consumer's output (event_id =
webhook_message_id), that the output is seq 1..N in order with no gap and
byte-identical to the journal, and that every verdict is right (confirmed;
mismatch for the lies). The journal must pass PRAGMA integrity_check.

Scenarios: kills (SIGKILL at seeded random moments, during commits, during
cross-checks with the API slow, and during publishing), api (down: 5xx,
resets, timeouts; slow; 429; partial 5xx; recovery), diskfull (a small
tmpfs as state_dir, filled then freed; journal_max_bytes if mounting is
refused), subscribers (tail killed and restarted, tail stopped so its queue
overflows, a slow Python subscriber that overflows and repairs from replay),
duplicates (--duplicate-rate 0.3 with reordering), rotation (two signing
secrets during the overlap, SIGHUP, sim key changed, old key removed: 401),
walcap (journal_max_bytes must bound the journal's disk use, WAL included).

Environment: PAYHOOK_BIN, PAYHOOK_SIM_BIN, PAYHOOK_SRC, PAYHOOK_REF (as the
black-box tests); PAYHOOK_CHAOS_SEED (default time-based, printed);
PAYHOOK_CHAOS_LONG=1 (40 kills instead of 12); PAYHOOK_CHAOS_ONLY=a,b
(run only the named scenarios). Ends with "chaos: N passed, N failed".
Python 3 stdlib + python3-zmq + python3-jsonschema (Debian), /usr/bin/python3.
"""
import collections
import contextlib
import datetime
import errno
import http.client
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "blackbox"))
import phtest  # noqa: E402
import simharness  # noqa: E402

SEED = int(os.environ.get("PAYHOOK_CHAOS_SEED") or
           (int(time.time() * 1000) % 1000000))
LONG = os.environ.get("PAYHOOK_CHAOS_LONG", "") not in ("", "0")
ONLY = [s for s in os.environ.get("PAYHOOK_CHAOS_ONLY", "").split(",") if s]
SCALE = 1000                # 60 s -> 60 ms, 1 h -> 3.6 s, 90 min -> 5.4 s
KILLS = 40 if LONG else 12
# payhook's WAL alone reaches tens of MB under load (see sc_walcap), so the
# tmpfs leaves it room; the filler takes the rest.
TMPFS_MB = 160
API_KEY = simharness.TEST_KEY
SECRET_A = phtest.SECRET
WEBHOOK_PATH = "/webhooks/govuk-pay"

FIG = collections.Counter()     # figures over the whole run


def log(msg):
    print(msg, flush=True)


def iso_ms(text):
    """'2026-11-21T20:23:33.015Z' -> epoch ms."""
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    d = d.replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp() * 1000)


# --- a keep-alive HTTP client (driver threads, sim control) ----------------
class Client:
    def __init__(self, port, timeout=4.0):
        self.port, self.timeout, self.conn = port, timeout, None

    def req(self, method, path, body=None, key=None):
        """(status, parsed json or None); status None on a transport
        error (the connection is dropped and made again next time)."""
        h = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if key:
            h["Authorization"] = "Bearer " + key
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(
                        "127.0.0.1", self.port, timeout=self.timeout)
                self.conn.request(method, path, data, h)
                r = self.conn.getresponse()
                raw = r.read()
                if (r.getheader("Connection") or "").lower() == "close":
                    self.close()
                try:
                    return r.status, json.loads(raw) if raw else None
                except ValueError:
                    return r.status, None
            except (OSError, http.client.HTTPException):
                self.close()
        return None, None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --- the audit consumer: `payhook tail --from N`, restarted as needed ------
class Auditor:
    GAP_WORDS = ("continuing with a gap", "no longer in the journal")

    def __init__(self, world):
        self.w = world
        self.lock = threading.Lock()
        self.plock = threading.RLock()     # start, end, ensure
        self.events = []            # (seq, event dict, raw line) in order
        self.proc = None
        self.reader = None
        self.errfile = None
        self.starts = 0
        self.restarts = collections.Counter()   # why
        self.bad_lines = 0

    def last(self):
        with self.lock:
            return self.events[-1][0] if self.events else 0

    def start(self):
        with self.plock:
            self._start()

    def _start(self):
        self.starts += 1
        path = os.path.join(self.w.tmp, "tail-%d.err" % self.starts)
        self.errfile = path
        with open(path, "wb") as err:
            self.proc = subprocess.Popen(
                [phtest.BIN, "tail", "--from", str(self.last() + 1),
                 "--feed", self.w.feed, "--replay", self.w.replay],
                stdout=subprocess.PIPE, stderr=err)
        self.reader = threading.Thread(target=self._read,
                                       args=(self.proc,), daemon=True)
        self.reader.start()

    def _read(self, proc):
        for raw in proc.stdout:
            if not raw.endswith(b"\n"):
                break           # a partial line from a killed tail
            line = raw[:-1].decode("utf-8", "replace")
            try:
                ev = json.loads(line)
                seq = ev["seq"]
            except (ValueError, KeyError, TypeError):
                self.bad_lines += 1
                continue
            with self.lock:
                self.events.append((seq, ev, line))

    def stderr_text(self):
        try:
            with open(self.errfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def _end(self, sig):
        # The watcher thread (ensure) and a scenario may both end the
        # tail: one at a time.
        with self.plock:
            return self._end_locked(sig)

    def _end_locked(self, sig):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self.reader.join(10)
        self.proc.stdout.close()
        self.proc = None
        return rc

    def kill(self):
        return self._end(signal.SIGKILL)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        return self._end(signal.SIGTERM)

    def suspend(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def ensure(self):
        """Restart the tail if it died or said it continued past a gap."""
        with self.plock:
            self._ensure()

    def _ensure(self):
        if self.proc is None:
            return
        why = None
        if self.proc.poll() is not None:
            why = "exited %s" % self.proc.returncode
        elif any(wd in self.stderr_text() for wd in self.GAP_WORDS):
            why = "reported a gap"
        if why:
            self.kill()
            self.restarts[why] += 1
            log("  audit tail %s; restarted from %d (stderr: %s)" % (
                why, self.last() + 1, self.stderr_text().strip()[-200:]))
            self.start()


# --- the workload: a realistic mix of payments ------------------------------
CARD_OK = ["4444333322221111", "4242424242424242", "4000056655665556",
           "5105105105105100", "371449635398431"]
CARD_DECLINED = ["4000000000000002", "4000000000000069", "4000000000000127"]
CARD_ERROR = "4000000000000119"

MIX = [("success", 40), ("refund", 15), ("declined", 8), ("error", 4),
       ("user_cancel", 6), ("cancel", 6), ("abandon", 6), ("expire", 4),
       ("delayed", 6), ("lie", 3)]


class Driver:
    """Threads that play services and paying users against the sim."""

    def __init__(self, world, rng, rate=60.0, threads=2):
        self.w = world
        self.seed = rng.randrange(1 << 30)
        self.rate = rate            # payments/s per thread
        self.nthreads = threads
        self.stop_ev = threading.Event()
        self.threads = []
        self.lock = threading.Lock()
        self.done = collections.Counter()
        self.errors = collections.Counter()
        self.succeeded = []         # payment ids that reached success
        self.pool = []              # created, unused (for API-down phases)
        self.api_ok = True          # False: no /v1 calls (API faults on)
        self.n = 0

    def start(self):
        for i in range(self.nthreads):
            th = threading.Thread(target=self._run,
                                  args=(random.Random(self.seed + i),),
                                  daemon=True)
            th.start()
            self.threads.append(th)
        return self

    def stop(self):
        self.stop_ev.set()
        for th in self.threads:
            th.join(30)
        self.threads = []
        self.stop_ev = threading.Event()

    def _create(self, c, rng, delayed=False, tries=3):
        with self.lock:
            self.n += 1
            n = self.n
        body = {"amount": rng.randrange(100, 250000),
                "reference": "chaos-%d-%d" % (SEED, n),
                "description": "Chaos payment %d" % n,
                "return_url": "https://example.service.gov.uk/done",
                "metadata": {"ledger_code": "CH%d" % (n % 97)}}
        if delayed:
            body["delayed_capture"] = True
        if rng.random() < 0.3:
            body["email"] = "payer%d@example.com" % n
        for _ in range(tries):
            st, j = c.req("POST", "/v1/payments", body, API_KEY)
            if st == 201:
                return j["payment_id"]
            self.errors["create %s" % st] += 1
            if self.stop_ev.is_set():
                return None
            time.sleep(0.1)
        return None

    def _api(self, c, method, path, body=None, ok=(200, 202, 204),
             tries=5):
        for _ in range(tries):
            st, j = c.req(method, path, body, API_KEY)
            if st in ok:
                return True
            self.errors["%s %s" % (path.rsplit("/", 1)[-1], st)] += 1
            if st is not None and st < 500 and st != 429:
                return False
            time.sleep(0.1)
        return False

    def prefill(self, n):
        """Create n payments now (for phases where the API is down)."""
        c = Client(self.w.sim.port)
        rng = random.Random(self.seed ^ 0x5eed)
        for _ in range(n):
            pid = self._create(c, rng)
            if pid:
                self.pool.append(pid)
        c.close()

    def _pid(self, c, rng, delayed=False):
        if not self.api_ok or (self.pool and rng.random() < 0.2):
            with self.lock:
                if self.pool:
                    return self.pool.pop()
            if not self.api_ok:
                return None
        return self._create(c, rng, delayed)

    def _run(self, rng):
        c = Client(self.w.sim.port)
        names = [m for m, _ in MIX]
        weights = [w for _, w in MIX]
        refunds = collections.deque()
        gap = 1.0 / self.rate
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            nxt += gap
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            elif now - nxt > 1.0:
                nxt = now           # behind: do not burst to catch up
            while refunds and refunds[0][0] <= now and self.api_ok:
                _, pid, amount = refunds.popleft()
                if self._api(c, "POST", "/v1/payments/%s/refunds" % pid,
                             {"amount": amount}, ok=(202,)):
                    self.done["refund"] += 1
            op = rng.choices(names, weights)[0]
            needs_api = op in ("cancel", "delayed", "refund")
            if needs_api and not self.api_ok:
                op = rng.choice(["success", "declined", "user_cancel",
                                 "expire"])
            try:
                self._op(c, rng, op, refunds)
            except (KeyError, TypeError, ValueError) as e:
                self.errors["%s raised %r" % (op, e)] += 1
        c.close()

    def _op(self, c, rng, op, refunds):
        sim = "/_sim/payments/%s/"
        if op == "lie":
            with self.lock:
                pid = rng.choice(self.succeeded) if self.succeeded else None
            if pid is None:
                return
            over = rng.choice([{"amount": 1}, {"reference": "forged"},
                               {"amount": 7, "description": "forged"}])
            st, _ = c.req("POST", "/_sim/webhooks/send", {
                "payment_id": pid, "event_type": "card_payment_captured",
                "resource_overrides": over})
            if st == 200:
                self.done["lie"] += 1
            else:
                self.errors["lie %s" % st] += 1
            return
        pid = self._pid(c, rng, delayed=(op == "delayed"))
        if pid is None:
            return
        if op in ("success", "refund"):
            st, _ = c.req("POST", sim % pid + "card",
                          {"card_number": rng.choice(CARD_OK)})
            if st == 200:
                with self.lock:
                    self.succeeded.append(pid)
                if op == "refund":
                    refunds.append((time.monotonic() + 0.05, pid,
                                    rng.randrange(1, 100)))
        elif op == "declined":
            st, _ = c.req("POST", sim % pid + "card",
                          {"card_number": rng.choice(CARD_DECLINED)})
        elif op == "error":
            st, _ = c.req("POST", sim % pid + "card",
                          {"card_number": CARD_ERROR})
        elif op == "user_cancel":
            c.req("POST", sim % pid + "visit")
            st, _ = c.req("POST", sim % pid + "user-cancel")
        elif op == "cancel":
            st = 204 if self._api(c, "POST", "/v1/payments/%s/cancel" % pid,
                                  ok=(204,)) else None
        elif op == "abandon":
            st, _ = c.req("POST", sim % pid + "abandon")
        elif op == "expire":
            st, _ = c.req("POST", sim % pid + "expire")
        elif op == "delayed":
            st, _ = c.req("POST", sim % pid + "card",
                          {"card_number": rng.choice(CARD_OK)})
            if st == 200:
                ok = self._api(c, "POST", "/v1/payments/%s/capture" % pid,
                               ok=(204,))
                st = 204 if ok else None
        if st in (200, 204):
            self.done[op] += 1
        else:
            self.errors["%s %s" % (op, st)] += 1


# --- one world: sim + payhook + audit consumer ------------------------------
class World:
    def __init__(self, name, rng, sim_args=(), cfg=None, state_dir=None,
                 tmp=None):
        self.name = name
        self.rng = rng
        self.own_tmp = tmp is None
        self.tmp = tmp or tempfile.mkdtemp(prefix="payhook-chaos-%s-" % name)
        self.port = phtest.free_port()
        self.feed = "tcp://127.0.0.1:%d" % phtest.free_port()
        self.replay = "tcp://127.0.0.1:%d" % phtest.free_port()
        self.sim = simharness.Sim(
            webhook_url="http://127.0.0.1:%d%s" % (self.port, WEBHOOK_PATH),
            time_scale=SCALE,
            extra=["--seed", str(rng.randrange(1 << 30))] + list(sim_args))
        self.ctl = Client(self.sim.port, timeout=20)
        keyfile = os.path.join(self.tmp, "api-key")
        with open(keyfile, "w") as f:
            f.write(API_KEY + "\n")
        os.chmod(keyfile, 0o600)
        conf = {
            "listen": "127.0.0.1:%d" % self.port,
            "cross_check": "on",
            "api_base_url": self.sim.base(),
            "api_key_file": keyfile,
            "api_pool_size": "8",
            "api_rate_limit": "2000",
            "api_timeout": "2s",
            "api_connect_timeout": "1s",
            "durability": "full",
            "publish_endpoint": self.feed,
            "replay_endpoint": self.replay,
            "log_level": "info",
        }
        if state_dir:
            conf["state_dir"] = state_dir
        conf.update(cfg or {})
        self.svc = phtest.Service(extra=conf, tmp=self.tmp)
        if state_dir:
            self.svc.state_dir = state_dir
        self.logs = []
        self.starts = 0
        self.auditor = Auditor(self)
        self.watch_stop = threading.Event()
        self.watcher = None
        self.extra_ok = {}          # own webhooks accepted: id -> verdict
        self.forbidden = set()      # own webhooks refused

    def start(self):
        self.start_svc()
        self.auditor.start()
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()
        return self

    def _watch(self):
        while not self.watch_stop.wait(0.5):
            self.auditor.ensure()

    def start_svc(self):
        self.starts += 1
        self.svc.start(timeout=20)

    def kill_svc(self):
        self.svc.kill()
        self.logs.append(list(self.svc.log_lines))

    def stop_svc(self):
        rc = self.svc.stop()
        self.logs.append(list(self.svc.log_lines))
        return rc

    def all_logs(self):
        out = []
        for lines in self.logs:
            out += lines
        if self.svc.proc is not None:
            out += self.svc.log_lines
        return out

    # sim helpers
    def faults(self, **kw):
        st, _ = self.ctl.req("POST", "/_sim/faults", kw)
        assert st == 200, st

    def clear_faults(self):
        self.ctl.req("DELETE", "/_sim/faults")

    def stats(self):
        return self.ctl.req("GET", "/_sim/stats")[1]

    def sim_log(self):
        st, j = self.ctl.req("GET", "/_sim/webhooks?limit=0")
        assert st == 200, st
        return j["messages"]

    def sim_now(self):
        return self.ctl.req("GET", "/_sim/time")[1]["now_ms"]

    def advance(self, ms):
        st, _ = self.ctl.req("POST", "/_sim/time/advance", {"ms": int(ms)})
        assert st == 200, st
        FIG["sim_ms_advanced"] += int(ms)

    def settle(self, timeout=60.0):
        """Wait until the sim has nothing left to deliver, pushing its
        clock over long retry gaps and expiring abandoned payments.
        Then wait until payhook published everything and the audit tail
        holds it. Returns a list of problems (empty when settled)."""
        deadline = time.monotonic() + timeout
        self.advance(2 * 3600 * 1000)       # expire every abandoned payment
        quiet = 0
        while time.monotonic() < deadline:
            st = self.stats()
            wh = st["webhooks"]
            msgs = self.sim_log()
            pending = [m for m in msgs if m["status"] == "pending"]
            if not pending and wh["in_flight"] == 0 and wh["queued"] == 0:
                quiet += 1
                if quiet >= 3:
                    break
                time.sleep(0.2)
                continue
            quiet = 0
            now = self.sim_now()
            due = [iso_ms(m["next_attempt_at"]) for m in pending
                   if m.get("next_attempt_at")]
            if due and min(due) - now > 1500 * SCALE / 1000:
                self.advance(min(due) - now + 10)
            time.sleep(0.25)
        else:
            return ["the sim still had messages pending after %.0f s" %
                    timeout]
        # payhook: every row published, the audit tail has the head.
        def published():
            try:
                r = self.svc.rows(
                    "SELECT (SELECT count(*) FROM webhooks WHERE state IN "
                    "('received','checked')), (SELECT count(*) FROM events "
                    "WHERE seq > (SELECT upto FROM events_sent)), (SELECT "
                    "max(seq) FROM events)")[0]
            except sqlite3.Error:
                return None
            return r if r[0] == 0 and r[1] == 0 else None
        r = phtest.wait_for(published, max(5.0, deadline -
                                           time.monotonic()), 0.2)
        if not r:
            rows = self.svc.rows("SELECT state, count(*) FROM webhooks "
                                 "GROUP BY state")
            return ["payhook did not publish everything: %s" % rows]
        head = r[2] or 0
        if not phtest.wait_for(lambda: self.auditor.last() >= head,
                               max(10.0, deadline - time.monotonic()), 0.1):
            return ["the audit tail stopped at %d of %d" % (
                self.auditor.last(), head)]
        return []

    def close(self):
        self.watch_stop.set()
        if self.watcher:
            self.watcher.join(5)
        self.auditor.stop()
        if self.svc.proc is not None:
            self.stop_svc()
        self.ctl.close()
        self.sim.stop()
        self.sim.dir.cleanup()
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --- the closing check of every scenario ----------------------------------
_VALIDATOR = []


def validator():
    if not _VALIDATOR:
        try:
            _VALIDATOR.append(phtest.event_validator()[0])
        except Exception:           # python3-jsonschema missing
            _VALIDATOR.append(None)
    return _VALIDATOR[0]


def own_webhook(w, pid, mid, secret, t, name):
    """POST our own webhook for pid (built from the sim's webhook view);
    returns the HTTP status."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "blackbox"))
    import xcheck
    body = xcheck.sim_webhook_body(w.sim, pid, "card_payment_captured", mid)
    st, _, _ = w.svc.post(body, secret=secret)
    return st


def final_check(t, w, name, settle_timeout=60.0):
    """Settle, then compare the sim's log, the audit output and the
    journal. Returns the number of events checked."""
    problems = w.settle(settle_timeout)
    t.check("%s: the sim delivered everything and payhook published it "
            "all" % name, not problems, problems)
    msgs = w.sim_log()
    by_id = {m["webhook_message_id"]: m for m in msgs}
    delivered = [m for m in msgs if m["status"] == "delivered"]
    given_up = [m for m in msgs if m["status"] == "failed"]
    attempts = sum(len(m["attempts"]) for m in msgs)
    outcomes = collections.Counter(a["outcome"] for m in msgs
                                   for a in m["attempts"])
    dups = sum(1 for m in msgs for a in m["attempts"] if a["duplicate"])
    lies = sum(1 for m in delivered if m["lie"])
    with w.auditor.lock:
        events = list(w.auditor.events)
    seqs = [s for s, _, _ in events]
    ids = collections.Counter(ev["event_id"] for _, ev, _ in events)
    by_event = {ev["event_id"]: ev for _, ev, _ in events}

    log("  %s: sim messages=%d delivered=%d given_up=%d attempts=%d "
        "duplicate_deliveries=%d lies=%d outcomes=%s; audit events=%d "
        "tail starts=%d" % (name, len(msgs), len(delivered), len(given_up),
                            attempts, dups, lies, dict(outcomes),
                            len(events), w.auditor.starts))
    FIG["sim_messages"] += len(msgs)
    FIG["delivered"] += len(delivered)
    FIG["attempts"] += attempts
    FIG["events_checked"] += len(events)
    FIG["lies"] += lies

    t.check("%s: the sim gave up on nothing (every message delivered in "
            "the end)" % name, not given_up,
            [(m["webhook_message_id"], [a["outcome"] for a in m["attempts"]])
             for m in given_up[:5]])
    t.check("%s: there was traffic (%d messages)" % (name, len(delivered)),
            len(delivered) > 0)
    t.check("%s: audit output is seq 1..%d in order, no gap, no repeat" % (
        name, len(seqs)), seqs == list(range(1, len(seqs) + 1)),
        [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1][:5])
    missing = [m["webhook_message_id"] for m in delivered
               if ids.get(m["webhook_message_id"], 0) == 0]
    t.check("%s: every delivered message is in the audit output (%d)" % (
        name, len(delivered)), not missing,
        "%d missing, e.g. %s" % (len(missing), missing[:5]))
    twice = [i for i, n in ids.items() if n > 1]
    t.check("%s: no event_id appears twice" % name, not twice, twice[:5])
    unknown = [i for i in ids if i not in by_id and i not in w.extra_ok]
    t.check("%s: nothing in the output that nobody sent" % name,
            not unknown, unknown[:5])
    forged = [i for i in w.forbidden if i in ids]
    t.check("%s: no refused webhook was published" % name, not forged,
            forged)
    own = [i for i in w.extra_ok if ids.get(i) != 1]
    t.check("%s: our own accepted webhooks published once" % name,
            not own, own)
    wrong = []
    for m in delivered:
        ev = by_event.get(m["webhook_message_id"])
        if ev is None:
            continue
        want = "mismatch" if m["lie"] else "confirmed"
        got = ev["verification"]["cross_check"]
        topic_ok = (ev["topic"] == "alert.mismatch") if m["lie"] else \
            ev["topic"].startswith("payment.")
        if got != want or not topic_ok or \
                ev.get("event_type") != m["event_type"] or \
                ev.get("payment_id") != m["resource_id"]:
            wrong.append((m["webhook_message_id"], m["event_type"], want,
                          got, ev["topic"], ev["verification"]))
    for mid, verdict in w.extra_ok.items():
        ev = by_event.get(mid)
        if ev is not None and ev["verification"]["cross_check"] != verdict:
            wrong.append((mid, verdict, ev["verification"]))
    t.check("%s: every verdict right (confirmed; mismatch for %d lies)" % (
        name, lies), not wrong, "%d wrong, e.g. %s" % (len(wrong),
                                                       wrong[:3]))
    held = {s: (ev["topic"], line) for s, ev, line in events}
    problems = phtest.verify_against_journal(w.svc, held)
    t.check("%s: audit output is byte-identical to the journal" % name,
            not problems, problems[:3])
    rows = w.svc.rows("SELECT state, count(*) FROM webhooks GROUP BY state")
    t.check("%s: every journal row published, one event each" % name,
            dict(rows) == {"published": len(events)} or
            (not events and not rows), rows)
    v = validator()
    if v is not None:
        sample = events if len(events) <= 300 else \
            random.Random(SEED).sample(events, 300)
        errs = []
        for s, ev, _ in sample:
            errs += ["seq %d: %s" % (s, e.message)
                     for e in v.iter_errors(ev)]
        t.check("%s: events validate against payment_event.v1 (%d "
                "sampled)" % (name, len(sample)), not errs, errs[:3])
    t.check("%s: the audit tail never printed a bad line" % name,
            w.auditor.bad_lines == 0, w.auditor.bad_lines)
    return len(events)


def integrity(t, w, name):
    """Stop payhook and check its journal."""
    rc = w.stop_svc()
    t.check("%s: payhook stops cleanly (exit 0)" % name, rc == 0, rc)
    res = phtest.integrity_check(w.svc)
    t.check("%s: PRAGMA integrity_check ok" % name, res == ["ok"], res[:3])


def journal_snapshot(svc):
    """Copy the journal as a killed process left it; (integrity, counts)."""
    tmp = tempfile.mkdtemp(prefix="payhook-chaos-copy-")
    try:
        src = os.path.join(svc.state_dir, "journal.db")
        dst = os.path.join(tmp, "journal.db")
        shutil.copyfile(src, dst)
        for ext in ("-wal",):
            if os.path.exists(src + ext):
                shutil.copyfile(src + ext, dst + ext)
        with contextlib.closing(sqlite3.connect(dst)) as db:
            integ = db.execute("PRAGMA integrity_check").fetchall()
            counts = dict(db.execute(
                "SELECT state, count(*) FROM webhooks GROUP BY state"))
            counts["unsent"] = db.execute(
                "SELECT count(*) FROM events WHERE seq > (SELECT upto "
                "FROM events_sent)").fetchone()[0]
        return [r[0] for r in integ], counts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- (a) SIGKILL at random moments ------------------------------------------
def sc_kills(t, rng):
    name = "kills"
    w = World(name, rng, sim_args=["--duplicate-rate", "0.05"])
    d = Driver(w, rng, rate=70, threads=2)
    kills = []
    try:
        w.start()
        d.start()
        time.sleep(1.0)
        for k in range(KILLS):
            phase = ("commit", "crosscheck", "publish")[k % 3]
            if phase == "crosscheck":
                # the API is slow: checks are in flight when we kill
                w.faults(latency_ms=rng.choice([300, 600, 900]))
                time.sleep(rng.uniform(0.5, 1.5))
            elif phase == "publish":
                # checks pile up behind a stalled API, then a burst of
                # verdicts is being published when we kill
                w.faults(latency_ms=1500)
                time.sleep(rng.uniform(1.0, 2.0))
                w.clear_faults()
                # kill as soon as verdicts wait for their seq or events
                # wait to be sent (bounded: 1.5 s)
                with contextlib.closing(w.svc.db()) as db:
                    end = time.monotonic() + 1.5
                    while time.monotonic() < end:
                        try:
                            n = db.execute(
                                "SELECT (SELECT count(*) FROM webhooks "
                                "WHERE state = 'checked') + (SELECT "
                                "count(*) FROM events WHERE seq > (SELECT "
                                "upto FROM events_sent))").fetchone()[0]
                        except sqlite3.Error:
                            n = 0
                        if n > 0:
                            break
                        time.sleep(0.001)
            else:
                time.sleep(rng.uniform(0.3, 1.2))
            inflight = w.stats()["webhooks"]["in_flight"]
            if phase == "commit":
                # a delivery takes a few ms at 70/s: a random moment
                # often falls between two, so kill as soon as one is in
                # flight (bounded: 1 s)
                end = time.monotonic() + 1.0
                while inflight == 0 and time.monotonic() < end:
                    inflight = w.stats()["webhooks"]["in_flight"]
            w.kill_svc()
            w.clear_faults()
            integ, counts = journal_snapshot(w.svc)
            down = rng.uniform(0.05, 0.6)
            time.sleep(down)
            w.start_svc()
            kills.append((phase, inflight, integ, counts))
            log("  kill %d (%s): %d deliveries in flight, journal at kill: "
                "received=%d checked=%d published=%d unsent events=%d, "
                "integrity=%s, down %d ms" % (
                    k + 1, phase, inflight, counts.get("received", 0),
                    counts.get("checked", 0), counts.get("published", 0),
                    counts["unsent"], integ[0], down * 1000))
        time.sleep(1.0)
        d.stop()
        FIG["kills"] += len(kills)
        log("  driver: %s errors: %s" % (dict(d.done), dict(d.errors)))
        t.check("kills: %d SIGKILLs (>= 10)" % len(kills), len(kills) >= 10)
        t.check("kills: the journal left by every kill passes "
                "integrity_check", all(k[2] == ["ok"] for k in kills),
                [k[2] for k in kills if k[2] != ["ok"]][:3])
        # committed but not acknowledged: the journal row was written
        # during a delivery attempt that the kill turned into a
        # connection error (the sim retried it; payhook must not publish
        # it twice)
        recv = dict(w.svc.rows("SELECT message_id, received_ms FROM "
                               "webhooks"))
        unacked = 0
        for m in w.sim_log():
            r = recv.get(m["webhook_message_id"])
            for a in m["attempts"]:
                # an attempt's "time" is when it ended
                end = iso_ms(a["time"])
                if a["outcome"] == "connection_error" and r is not None \
                        and end - a["duration_ms"] - 1 <= r <= end:
                    unacked += 1
        log("  kills: %d webhooks were committed by a delivery the kill "
            "cut off (retried by the sim, answered duplicate)" % unacked)
        FIG["committed_unacked"] += unacked
        t.check("kills: some kills hit deliveries in flight (commits)",
                any(k[1] > 0 for k in kills) or unacked > 0,
                ([k[1] for k in kills], unacked))
        t.check("kills: some kills hit pending cross-checks",
                any(k[3].get("received", 0) > 0 for k in kills
                    if k[0] == "crosscheck"))
        t.check("kills: some kills hit rows checked but not yet published "
                "or events not yet sent (publishing)",
                any(k[3].get("checked", 0) + k[3]["unsent"] > 0
                    for k in kills), [k[3] for k in kills][:4])
        final_check(t, w, name)
        errs = [l for l in w.all_logs() if "level=error" in l]
        t.check("kills: payhook logged no errors", not errs, errs[:3])
        integrity(t, w, name)
    finally:
        d.stop()
        w.close()


# --- (b) the API down, slow, 429, 5xx, then back ---------------------------
def sc_api(t, rng):
    name = "api"
    w = World(name, rng)
    d = Driver(w, rng, rate=40, threads=1)
    try:
        w.start()
        d.prefill(250)
        d.start()
        time.sleep(1.0)
        phases = [("down: every request 500", {"rate_5xx": 1}),
                  ("down: every connection reset", {"rate_reset": 1}),
                  ("down: no answer (timeouts)", {"rate_timeout": 1}),
                  ("slow: 1.5 s answers", {"latency_ms": 1500}),
                  ("429 storm (60 %)", {"rate_429": 0.6}),
                  ("flaky: 503 for 50 %, 200 ms",
                   {"rate_5xx": 0.5, "error_status": 503,
                    "latency_ms": 200})]
        before = w.svc.metrics()
        for what, f in phases:
            d.api_ok = False
            w.faults(**f)
            time.sleep(2.5)
            pending = w.svc.rows("SELECT count(*) FROM webhooks WHERE "
                                 "state = 'received'")[0][0]
            log("  api %s: %d rows waiting for a verdict" % (what, pending))
            w.clear_faults()
        d.api_ok = True
        time.sleep(1.0)
        d.stop()
        log("  driver: %s errors: %s" % (dict(d.done), dict(d.errors)))
        after = w.svc.metrics()
        delta = phtest.metrics_delta(before, after)
        for outcome in ("5xx", "error", "timeout", "429"):
            n = delta.get(phtest.metric_key(
                "payhook_crosscheck_requests_total", outcome=outcome), 0)
            t.check("api: cross-check requests failed as %s (%d)" % (
                outcome, n), n > 0)
        final_check(t, w, name, settle_timeout=90)
        res = w.svc.metrics()
        unver = phtest.metric(res, "payhook_crosscheck_results_total",
                              verdict="unverified")
        t.check("api: no verdict given up (unverified = 0)", unver == 0,
                unver)
        integrity(t, w, name)
    finally:
        d.stop()
        w.close()


# --- (c) the disk full ------------------------------------------------------
def fill(path):
    """Write until ENOSPC, with shrinking block sizes; returns bytes."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        for size in (256 * 1024, 4096, 512, 1):
            block = b"\0" * size
            while True:
                try:
                    n += f.write(block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return n


def sc_diskfull(t, rng):
    name = "diskfull"
    tmp = tempfile.mkdtemp(prefix="payhook-chaos-diskfull-")
    mnt = os.path.join(tmp, "mnt")
    os.mkdir(mnt)
    mounted = False
    if os.geteuid() == 0:
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % TMPFS_MB,
                            "tmpfs", mnt], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=10)
        mounted = p.returncode == 0
        if not mounted:
            log("  diskfull: mount -t tmpfs failed (%s); using "
                "journal_max_bytes as an injected write failure" %
                p.stdout.decode("utf-8", "replace").strip())
    else:
        log("  diskfull: not root; using journal_max_bytes as an injected "
            "write failure")
    state = os.path.join(mnt, "state")
    w = d = None
    try:
        if mounted:
            w = World(name, rng, state_dir=state, tmp=tmp)
        else:
            w = World(name, rng, tmp=tmp,
                      cfg={"journal_max_bytes": "1m"})
        d = Driver(w, rng, rate=60, threads=2)
        w.start()
        d.start()
        time.sleep(2.0)
        filler = os.path.join(mnt, "filler")
        if mounted:
            nbytes = fill(filler)
            st = os.statvfs(mnt)
            log("  diskfull: tmpfs filled with %d bytes, %d bytes free" % (
                nbytes, st.f_bavail * st.f_frsize))
        # keep the load on while nothing can be written
        full_t0 = time.monotonic()
        t503 = phtest.wait_for(lambda: any(
            a["outcome"] == "http_503" for m in w.sim_log()
            for a in m["attempts"]), 15, 0.5)
        time.sleep(3.0)
        full_s = time.monotonic() - full_t0
        ready = w.svc.request("GET", "/readyz", port=w.svc.admin_port,
                              timeout=3)[0]
        alive = w.svc.alive()
        if mounted:
            os.unlink(filler)
        else:
            # raise the cap and restart: the injected failure is removed
            sys.path.insert(0, os.path.join(os.path.dirname(HERE),
                                            "blackbox"))
            import xcheck
            w.stop_svc()
            xcheck.rewrite_conf(w.svc, {"journal_max_bytes": "0"})
            w.start_svc()
        time.sleep(2.0)
        d.stop()
        log("  driver: %s errors: %s" % (dict(d.done), dict(d.errors)))
        t.check("diskfull: webhooks answered 503 while the disk was full",
                t503)
        t.check("diskfull: /readyz not ready while full", ready != 200,
                ready)
        t.check("diskfull: payhook stayed up while full", alive,
                "\n".join(w.svc.log_lines[-5:]))
        msgs = w.sim_log()
        outcomes = collections.Counter(a["outcome"] for m in msgs
                                       for a in m["attempts"]
                                       if a["outcome"] != "delivered")
        log("  diskfull: full for %.1f s; failed attempts by outcome: %s"
            % (full_s, dict(outcomes)))
        t.check("diskfull: failed deliveries were all 503 (no 500, no "
                "hang, no reset)", set(outcomes) <= {"http_503"},
                dict(outcomes))
        final_check(t, w, name, settle_timeout=90)
        integrity(t, w, name)
    finally:
        if d is not None:
            d.stop()
        if w is not None:
            w.close()
        if mounted:
            for _ in range(20):
                if subprocess.run(["umount", mnt]).returncode == 0:
                    break
                time.sleep(0.5)
        shutil.rmtree(tmp, ignore_errors=True)


# --- (d) subscribers disconnected, slow, restarted --------------------------
def sc_subscribers(t, rng):
    name = "subscribers"
    w = World(name, rng)
    d = Driver(w, rng, rate=90, threads=2)
    slow = None
    try:
        w.start()
        slow = phtest.ZmqConsumer(w.feed, w.replay, start=1, rcvhwm=1,
                                  rcvbuf=2048)
        slow.run_until(lambda c: c.heartbeats, 5)
        d.start()
        time.sleep(2.0)
        # disconnected: the audit tail is killed, down a while, restarted
        before = w.auditor.last()
        w.auditor.kill()
        time.sleep(rng.uniform(1.0, 2.0))
        w.auditor.start()
        log("  subscribers: tail killed at seq %d, restarted from %d" % (
            before, before + 1))
        # slow: the audit tail stops reading (SIGSTOP) for a while
        time.sleep(1.0)
        w.auditor.suspend()
        stopped_at = w.auditor.last()
        time.sleep(5.0)
        head_then = w.svc.rows("SELECT max(seq) FROM events")[0][0]
        w.auditor.resume()
        log("  subscribers: tail stopped at seq %d while the head went to "
            "%s" % (stopped_at, head_then))
        time.sleep(2.0)
        d.stop()
        n = final_check(t, w, name)
        # the slow Python subscriber never read until now
        ok = slow.run_until(lambda c: c.holds(n), 60)
        t.check("subscribers: the slow subscriber holds everything after "
                "draining", ok, (len(slow.events), slow.pos, slow.head))
        t.check("subscribers: its queue overflowed (live %d < %d) and gaps "
                "were filled from replay (%d)" % (slow.live, n,
                                                  slow.gap_fills),
                slow.live < n and slow.gap_fills > 0)
        problems = phtest.verify_against_journal(w.svc, slow.events)
        t.check("subscribers: slow subscriber identical to the journal",
                not problems and slow.conflicts == 0, problems[:3])
        t.check("subscribers: the stopped tail fell behind (> 300 events)",
                (head_then or 0) - stopped_at > 300,
                (stopped_at, head_then))
        FIG["subscriber_restarts"] += 1
        integrity(t, w, name)
    finally:
        d.stop()
        if slow is not None:
            slow.close()
        w.close()


# --- (e) duplicates and reordering ------------------------------------------
def sc_duplicates(t, rng):
    name = "duplicates"
    # Each delivery waits a random 0-200 ms before it is sent, as GOV.UK
    # Pay's sender threads each pick messages up on their own schedule:
    # deliveries emitted close together arrive in another order.
    w = World(name, rng, sim_args=["--duplicate-rate", "0.3",
                                   "--webhook-jitter-ms", "200"])
    d = Driver(w, rng, rate=80, threads=2)
    try:
        w.start()
        d.start()
        time.sleep(2.0)
        # Short stalls of payhook (SIGSTOP, well under the sender's 3 s
        # timeout): the sender's 20 deliveries pile up in flight.
        for _ in range(4):
            os.kill(w.svc.proc.pid, signal.SIGSTOP)
            time.sleep(rng.uniform(0.3, 0.8))
            os.kill(w.svc.proc.pid, signal.SIGCONT)
            time.sleep(rng.uniform(0.8, 1.5))
        time.sleep(1.0)
        d.stop()
        n = final_check(t, w, name)
        msgs = w.sim_log()
        dup_ok = sum(1 for m in msgs for a in m["attempts"]
                     if a["duplicate"] and a["outcome"] == "delivered")
        # reordering: journal order (payhook's arrival order) against the
        # sim's emission order
        emitted = {m["webhook_message_id"]: i for i, m in enumerate(msgs)}
        arrival = [emitted.get(r[0], -1) for r in w.svc.rows(
            "SELECT message_id FROM webhooks ORDER BY id")]
        inversions = sum(1 for a, b in zip(arrival, arrival[1:]) if b < a)
        ooo = sum(1 for _, ev, _ in w.auditor.events if ev["out_of_order"])
        log("  duplicates: %d duplicate deliveries answered 2xx, %d "
            "arrivals out of emission order, %d events out_of_order" % (
                dup_ok, inversions, ooo))
        FIG["duplicates_delivered"] += dup_ok
        t.check("duplicates: the sim delivered duplicates (%d)" % dup_ok,
                dup_ok > n // 10)
        t.check("duplicates: deliveries were reordered (%d)" % inversions,
                inversions > 0)
        dupmetric = phtest.metric(w.svc.metrics(), "payhook_webhooks_total",
                                  result="duplicate")
        log("  duplicates: payhook_webhooks_total{result=duplicate} = %d "
            "(this process)" % dupmetric)
        integrity(t, w, name)
    finally:
        d.stop()
        w.close()


# --- (f) the signing secret rotated mid-stream ------------------------------
def sc_rotation(t, rng):
    name = "rotation"
    w = World(name, rng)
    d = Driver(w, rng, rate=60, threads=2)
    secret_b = "webhook_test_" + "".join(
        rng.choice(phtest.ALPHABET) for _ in range(26))
    mid_n = [0]

    def own(secret, want, what):
        with d.lock:
            pid = d.succeeded[-1] if d.succeeded else None
        if pid is None:
            return
        mid_n[0] += 1
        mid = phtest.pay_id(0x7e570000 + rng.randrange(1 << 20) * 64 +
                            mid_n[0])
        st = own_webhook(w, pid, mid, secret, t, name)
        t.check("rotation: %s -> %d" % (what, want), st == want, st)
        if st == 200:
            w.extra_ok[mid] = "confirmed"
        else:
            w.forbidden.add(mid)

    def reload(n):
        k = sum("event=secrets_reloaded" in l for l in w.svc.log_lines)
        os.kill(w.svc.proc.pid, signal.SIGHUP)
        ok = phtest.wait_for(lambda: sum(
            "event=secrets_reloaded" in l and "secrets=%d" % n in l
            for l in w.svc.log_lines) > 0 and sum(
            "event=secrets_reloaded" in l for l in w.svc.log_lines) > k, 5)
        t.check("rotation: SIGHUP reloaded %d secret(s)" % n, ok,
                w.svc.log_lines[-3:])

    try:
        w.start()
        d.start()
        time.sleep(2.0)
        own(SECRET_A, 200, "before: old key accepted")
        # the overlap: payhook accepts both
        w.svc.write_secrets([SECRET_A, secret_b])
        reload(2)
        time.sleep(0.5)
        st, j = w.ctl.req("POST", "/_sim/webhooks/signing-key",
                          {"signing_secret": secret_b})
        t.check("rotation: the sim changed its signing key", st == 200 and
                j and j.get("signing_secret") == secret_b, (st, j))
        time.sleep(1.0)
        own(SECRET_A, 200, "overlap: old key accepted")
        own(secret_b, 200, "overlap: new key accepted")
        time.sleep(2.0)
        # the old key removed
        w.svc.write_secrets([secret_b])
        reload(1)
        time.sleep(2.0)
        own(SECRET_A, 401, "after: old key refused")
        own(secret_b, 200, "after: new key accepted")
        d.stop()
        final_check(t, w, name)
        msgs = w.sim_log()
        refused = sum(1 for m in msgs for a in m["attempts"]
                      if a["outcome"] == "http_401")
        t.check("rotation: no delivery of the sim was refused (no 401) "
                "through the rotation", refused == 0, refused)
        integrity(t, w, name)
    finally:
        d.stop()
        w.close()


# --- (g) journal_max_bytes must bound the journal on disk ------------------
def sc_walcap(t, rng):
    """Found by the disk-full scenario: payhook's WAL grows far past both
    JOURNAL_WAL_LIMIT_BYTES (4 MiB, journal/journal.c) and
    journal_max_bytes, which caps only the main database file. With
    journal_max_bytes = 1m a few hundred webhooks leave a WAL of tens of
    MB, so the cap does not keep payhook from filling the disk."""
    name = "walcap"
    cap = 1024 * 1024
    svc = phtest.Service(extra={"durability": "full", "cross_check": "off",
                                "journal_max_bytes": "1m"})
    try:
        svc.start()
        st = collections.Counter()
        worst = 0
        wal = os.path.join(svc.state_dir, "journal.db-wal")
        db = os.path.join(svc.state_dir, "journal.db")
        for r in range(3):
            bodies = [phtest.webhook(phtest.pay_id(0x3a10000 + r * 1000 + i),
                                     phtest.pay_id(0x3a20000 + r * 1000 + i))
                      for i in range(200)]
            for x in phtest.post_many(svc, bodies):
                st[x] += 1
            time.sleep(1.2)     # the checkpointer runs every second
            size = os.path.getsize(db) + (os.path.getsize(wal)
                                          if os.path.exists(wal) else 0)
            worst = max(worst, size)
        log("  %s: answers %s; journal on disk (db + WAL) up to %d "
            "bytes with journal_max_bytes = %d" % (name, dict(st), worst,
                                                   cap))
        t.check("walcap: the cap was reached (503s)", st.get(503, 0) > 0,
                dict(st))
        t.check("walcap: journal on disk (db + WAL) <= journal_max_bytes "
                "+ the 4 MiB WAL limit", worst <= cap + 4 * 1024 * 1024,
                "%d bytes" % worst)
    finally:
        svc.cleanup()


SCENARIOS = [("kills", sc_kills), ("api", sc_api),
             ("diskfull", sc_diskfull), ("subscribers", sc_subscribers),
             ("duplicates", sc_duplicates), ("rotation", sc_rotation),
             ("walcap", sc_walcap)]


def main():
    if not os.access(phtest.BIN, os.X_OK) or not os.access(
            phtest.SIM_BIN or "", os.X_OK):
        print("chaos: PAYHOOK_BIN / PAYHOOK_SIM_BIN not built; skipping")
        print("chaos: 0 passed, 0 failed")
        sys.exit(77)
    simharness.SIM_BIN = phtest.SIM_BIN
    t0 = time.monotonic()
    log("chaos: seed=%d (PAYHOOK_CHAOS_SEED=%d to repeat) long=%s "
        "kills=%d time_scale=%d" % (SEED, SEED, LONG, KILLS, SCALE))
    t = phtest.Runner("chaos")
    ran = 0
    for i, (name, fn) in enumerate(SCENARIOS):
        if ONLY and name not in ONLY:
            continue
        ts = time.monotonic()
        log("--- scenario %s" % name)
        before = t.failed
        t.run(fn, random.Random(SEED * 31 + i))
        ran += 1
        log("--- scenario %s: %s in %.1f s" % (
            name, "ok" if t.failed == before else "FAILED",
            time.monotonic() - ts))
    log("figures: scenarios=%d kills_survived=%d events_checked=%d "
        "sim_messages=%d delivered=%d delivery_attempts=%d lies=%d "
        "duplicate_deliveries=%d committed_unacked=%d elapsed=%.1fs seed=%d" % (
            ran, FIG["kills"], FIG["events_checked"], FIG["sim_messages"],
            FIG["delivered"], FIG["attempts"], FIG["lies"],
            FIG["duplicates_delivered"], FIG["committed_unacked"],
            time.monotonic() - t0, SEED))
    t.done()


if __name__ == "__main__":
    main()
