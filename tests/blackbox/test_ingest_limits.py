#!/usr/bin/python3
"""test_ingest_limits.py: connection limits of the public listener against
the real `payhook serve`: a slowloris client (one header byte every 0.5 s)
and a slow body are cut off after request_timeout while normal clients keep
being served; an idle kept-alive connection is closed after request_timeout;
with max_connections = 8 a ninth client waits until one of the eight closes;
accept(2) failing with EMFILE (tests/fault/acceptfail.c) is counted, backed
off and survived; a disk whose fsyncs take longer than request_timeout still
gets every answer out; an open-files limit too small for max_connections lowers
the cap at start-up, with a warning, instead of running out of descriptors.
Prints "limits: N passed, N failed"."""
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phtest import (Runner, Service, metric, parse_http_responses,  # noqa
                    pay_id, preload, sign, signed_request_bytes, wait_for,
                    webhook)

PATH = "/webhooks/govuk-pay"
TIMEOUT = 2.0          # request_timeout configured below
ACCEPTFAIL = os.environ.get("PAYHOOK_ACCEPTFAIL", "")
FSYNCFAIL = os.environ.get("PAYHOOK_FSYNCFAIL", "")
# fsyncfail.c's delay mode: every WAL fsync takes 1.5 s while triggered
SLOW_DISK = {"PAYHOOK_FSYNCFAIL_TRIGGER": None,
             "PAYHOOK_FSYNCFAIL_DELAY_MS": "1500"}
_n = [0]


def fresh_id():
    _n[0] += 1
    return pay_id(0x9000 + _n[0])


def wait_closed(sock, limit):
    """Seconds until the peer closes sock (EOF/reset), or None."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            got = sock.recv(4096)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        if not got:
            return time.monotonic() - t0
    return None


class Slowloris(threading.Thread):
    """Sends a request head one byte every `interval` seconds until the
    server closes the connection; records when that happened."""

    def __init__(self, port, data, interval=0.5, limit=8.0, prefix=b""):
        super().__init__(daemon=True)
        self.port, self.data, self.prefix = port, data, prefix
        self.interval, self.limit = interval, limit
        self.cut_after = None
        self.sent = 0
        self.response = b""

    def run(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        t0 = time.monotonic()
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.prefix:
                s.sendall(self.prefix)
            s.settimeout(self.interval)
            while time.monotonic() - t0 < self.limit:
                if self.sent < len(self.data):
                    try:
                        s.send(self.data[self.sent:self.sent + 1])
                        self.sent += 1
                    except (BrokenPipeError, ConnectionResetError):
                        self.cut_after = time.monotonic() - t0
                        return
                try:
                    got = s.recv(4096)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    self.cut_after = time.monotonic() - t0
                    return
                if not got:
                    self.cut_after = time.monotonic() - t0
                    return
                self.response += got
        finally:
            s.close()


def normal_clients(s, stop, results):
    while not stop.is_set():
        mid = fresh_id()
        b = webhook(mid)
        t0 = time.monotonic()
        try:
            st, h, body = s.request("POST", PATH, b, {
                "Content-Type": "application/json",
                "Pay-Signature": sign(b)}, timeout=3)
        except OSError as e:
            st, body = None, repr(e)
        results.append((st, body, time.monotonic() - t0, mid))
        time.sleep(0.1)


def t_slowloris(r, s):
    before = s.metrics()
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            "application/json\r\nX-Padding: %s\r\n" % (PATH, "a" * 200)
            ).encode()
    loris = [Slowloris(s.port, head) for _ in range(4)]
    # a slow body: whole head at once, then one body byte every 0.5 s
    b = webhook(fresh_id())
    slow_body = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                 "application/json\r\nPay-Signature: %s\r\nContent-Length: "
                 "%d\r\n\r\n" % (PATH, sign(b), len(b))).encode()
    body_loris = Slowloris(s.port, b, interval=0.5, prefix=slow_body)
    stop, results = threading.Event(), []
    client = threading.Thread(target=normal_clients,
                              args=(s, stop, results), daemon=True)
    t0 = time.monotonic()
    for t in loris:
        t.start()
    body_loris.start()
    client.start()
    for t in loris + [body_loris]:
        t.join(10)
    stop.set()
    client.join(5)
    for i, t in enumerate(loris):
        r.check("slowloris %d cut off after request_timeout (%.1fs)" % (
            i, t.cut_after or -1), t.cut_after is not None and
            TIMEOUT - 0.3 <= t.cut_after <= TIMEOUT + 2.5,
            "sent %d bytes" % t.sent)
        r.check("slowloris %d: head never completed, no 2xx" % i,
                t.sent < len(head) and b" 200 " not in t.response[:20])
    r.check("slow body cut off after request_timeout (%.1fs)" % (
        body_loris.cut_after or -1), body_loris.cut_after is not None and
        body_loris.cut_after <= TIMEOUT + 2.5)
    r.check("slow body: nothing stored", not s.rows(
        "SELECT 1 FROM webhooks WHERE body = ?", (b,)))
    r.check("normal clients served while slowloris ran (%d requests)" %
            len(results), len(results) >= 8 and all(
                st == 200 and body == b'{"status":"accepted"}'
                for st, body, _, _ in results), repr(
                    [x[:3] for x in results if x[0] != 200][:3]))
    r.check("normal clients answered promptly (max %.3fs)" % max(
        [x[2] for x in results] or [0]),
        results and max(x[2] for x in results) < 1.5)
    r.check("normal clients' webhooks stored", all(
        s.rows("SELECT 1 FROM webhooks WHERE message_id = ?", (mid,))
        for _, _, _, mid in results))
    after = s.metrics()
    d = (metric(after, "payhook_http_connection_deadlines_total") -
         metric(before, "payhook_http_connection_deadlines_total"))
    r.check("deadlines_total counts the 5 slow clients (+%d)" % d, d == 5)
    r.check("connections released after slowloris", wait_for(
        lambda: metric(s.metrics(), "payhook_http_connections_active") == 0,
        3))
    r.check("slowloris ran within bounds", time.monotonic() - t0 < 12)


def t_slow_lines_keepalive(r, s):
    """After one answer on a kept-alive connection, the next request comes
    a whole header line every 0.4 s (evhttp takes each line out of its
    buffer as it comes, and its own timer restarts at every read): payhook's
    deadline, restarted by the answer, still cuts it off request_timeout
    later, and counts it as a slow client."""
    before = metric(s.metrics(), "payhook_http_connection_deadlines_total")
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        sock.sendall(signed_request_bytes(webhook(fresh_id())))
        first = read_answer(sock, 5)
        t0 = time.monotonic()
        lines = [("POST %s HTTP/1.1\r\n" % PATH).encode(),
                 b"Host: 127.0.0.1\r\n"] + [
                     ("X-Slow-%d: x\r\n" % i).encode() for i in range(30)]
        cut = None
        for ln in lines:
            try:
                sock.sendall(ln)
            except OSError:
                cut = time.monotonic() - t0
                break
            closed = wait_closed(sock, 0.4)
            if closed is not None:
                cut = time.monotonic() - t0
                break
        r.check("slow lines after an answer: first answered 200",
                first is not None and first[0] == 200, repr(first))
        r.check("slow lines after an answer: cut off request_timeout after "
                "the answer (%s s)" % cut, cut is not None and
                TIMEOUT - 0.3 <= cut <= TIMEOUT + 1.5)
    finally:
        sock.close()
    after = metric(s.metrics(), "payhook_http_connection_deadlines_total")
    r.check("slow lines after an answer: counted as a slow client (+%d)" %
            (after - before), after - before == 1)


def t_idle_keepalive(r, s):
    before = s.metrics()
    b = webhook(fresh_id())
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        sock.sendall(signed_request_bytes(b))
        buf = b""
        while b"\r\n\r\n" not in buf or not buf.endswith(b"}"):
            got = sock.recv(4096)
            if not got:
                break
            buf += got
        resps = parse_http_responses(buf)
        r.check("keep-alive: first request answered 200", resps and
                resps[0][0] == 200 and resps[0][1].get(
                    "connection", "").lower() != "close", repr(buf[:200]))
        t = wait_closed(sock, TIMEOUT + 4)
        r.check("idle keep-alive connection closed after request_timeout "
                "(%s s)" % (t and round(t, 2)), t is not None and
                TIMEOUT - 0.3 <= t <= TIMEOUT + 2.5)
    finally:
        sock.close()
    # a client that is not idle keeps its connection across the timeout
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    ok = True
    try:
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < TIMEOUT * 1.8:
            b = webhook(fresh_id())
            sock.sendall(signed_request_bytes(b))
            buf = b""
            while not buf.endswith(b'"}'):
                got = sock.recv(4096)
                if not got:
                    ok = False
                    break
                buf += got
            if not ok:
                break
            i += 1
            time.sleep(0.4)
        r.check("busy keep-alive connection survives past request_timeout "
                "(%d requests)" % i, ok and i >= 5)
    finally:
        sock.close()
    # (the idle close may come from evhttp's own timeout, set to the same
    # request_timeout, so deadlines_total is checked with slowloris only)


def t_max_connections(r):
    s = Service({"max_connections": "8", "request_timeout": "20s"})
    idle = []
    ninth = None
    try:
        s.start()
        m0 = s.metrics()
        r.check("max_connections: paused counter starts at 0",
                metric(m0, "payhook_http_accept_paused_total") == 0)
        for _ in range(8):
            idle.append(socket.create_connection(("127.0.0.1", s.port),
                                                 timeout=5))
        r.check("max_connections: 8 idle connections active", wait_for(
            lambda: metric(s.metrics(), "payhook_http_connections_active")
            == 8, 3))
        r.check("max_connections: accept paused once", wait_for(
            lambda: metric(s.metrics(), "payhook_http_accept_paused_total")
            == 1, 3))
        mid = fresh_id()
        b = webhook(mid)
        ninth = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        ninth.sendall(signed_request_bytes(b))
        ninth.settimeout(1.5)
        try:
            early = ninth.recv(4096)
        except socket.timeout:
            early = None
        r.check("max_connections: 9th client not served while 8 are open",
                early is None, repr(early))
        r.check("max_connections: still 8 active", metric(
            s.metrics(), "payhook_http_connections_active") == 8)
        r.check("max_connections: 9th webhook not stored yet", not s.rows(
            "SELECT 1 FROM webhooks WHERE message_id = ?", (mid,)))
        # /healthz on the admin listener is not affected by the cap
        r.check("max_connections: admin listener still answers",
                s.admin("/healthz")[0] == 200)
        t0 = time.monotonic()
        idle.pop().close()
        resp = read_answer(ninth, 5)
        took = time.monotonic() - t0
        r.check("max_connections: 9th served once one closed (%.2fs)" % took,
                resp is not None and resp[0] == 200 and resp[2] ==
                b'{"status":"accepted"}' and took < 2.0, repr(resp))
        r.check("max_connections: 9th webhook stored", s.rows(
            "SELECT 1 FROM webhooks WHERE message_id = ?", (mid,)))
        # the 9th filled the freed slot: the cap was reached a 2nd time
        r.check("max_connections: 9th at the cap counts a 2nd pause",
                metric(s.metrics(), "payhook_http_accept_paused_total") == 2,
                str(metric(s.metrics(), "payhook_http_accept_paused_total")))
        ninth.close()
        ninth = None
        for c in idle:
            c.close()
        idle = []
        r.check("max_connections: connections released", wait_for(
            lambda: metric(s.metrics(), "payhook_http_connections_active")
            == 0, 3))
        # every time the cap is reached again, the pause is counted again
        for _ in range(8):
            idle.append(socket.create_connection(("127.0.0.1", s.port),
                                                 timeout=5))
        r.check("max_connections: reaching the cap again counts a 3rd pause",
                wait_for(lambda: metric(s.metrics(),
                                        "payhook_http_accept_paused_total")
                         == 3, 3), str(metric(
                             s.metrics(), "payhook_http_accept_paused_total")))
        for c in idle:
            c.close()
        idle = []
        # a burst of 20 clients against a cap of 8: all are served
        results = []

        def one(i):
            b = webhook(fresh_id())
            try:
                results.append(s.post(b)[0])
            except OSError as e:
                results.append(repr(e))
        ths = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(10)
        r.check("max_connections: burst of 20 clients all served",
                results.count(200) == 20, repr(results))
    finally:
        for c in idle:
            c.close()
        if ninth is not None:
            ninth.close()
        s.cleanup()


def read_answer(sock, limit):
    """The first HTTP response on sock within limit seconds, or None."""
    sock.settimeout(limit)
    buf = b""
    try:
        while not buf.endswith(b'"}'):
            got = sock.recv(4096)
            if not got:
                break
            buf += got
    except socket.timeout:
        pass
    try:
        resps = parse_http_responses(buf)
    except ValueError:
        return None
    return resps[0] if resps else None


def shim_service(r, name, shim, env, extra=None):
    """(service, trigger path) with a tests/fault shim preloaded and its
    trigger file not yet created, or (None, None) after a failed check
    when the shim was not built."""
    if not shim or not os.path.exists(shim):
        r.check("%s: shim built" % name, False, shim)
        return None, None
    s = Service(extra)
    trigger = os.path.join(s.tmp, "trigger")
    s.env["LD_PRELOAD"] = preload(shim)
    s.env.update({k: (trigger if v is None else v) for k, v in env.items()})
    return s, trigger


def t_accept_errors(r):
    """accept(2) fails with EMFILE on ph-http (the shim, while its trigger
    exists): each failure is counted and backed off, the service stays up
    (this crashed: the error callback read evhttp's memory as ours), and
    the waiting client is served once accepting works again."""
    s, trigger = shim_service(r, "accept errors", ACCEPTFAIL, {
        "PAYHOOK_ACCEPTFAIL_TRIGGER": None,
        "PAYHOOK_ACCEPTFAIL_THREAD": "ph-http"}, {"request_timeout": "20s"})
    if s is None:
        return
    c = None
    try:
        s.start()
        r.check("accept errors: a webhook before", s.post(
            webhook(fresh_id()))[0] == 200)
        e0 = metric(s.metrics(), "payhook_http_accept_errors_total")
        open(trigger, "w").close()
        mid = fresh_id()
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(signed_request_bytes(webhook(mid)))
        r.check("accept errors: failures counted and backed off", wait_for(
            lambda: metric(s.metrics(), "payhook_http_accept_errors_total")
            - e0 >= 3, 5))
        time.sleep(0.5)
        n = metric(s.metrics(), "payhook_http_accept_errors_total") - e0
        r.check("accept errors: at most ~10 a second (100 ms back-off)",
                n <= 15, str(n))
        r.check("accept errors: the service is still up", s.alive() and
                s.admin("/healthz")[0] == 200)
        r.check("accept errors: the client waits in the kernel's queue",
                read_answer(c, 0.5) is None)
        os.unlink(trigger)
        t0 = time.monotonic()
        resp = read_answer(c, 5)
        took = time.monotonic() - t0
        r.check("accept errors: served once accept works (%.2fs)" % took,
                resp is not None and resp[0] == 200 and took < 2,
                repr(resp))
        r.check("accept errors: logged as accept_failed", any(
            "event=accept_failed" in ln and "Too many open files" in ln
            for ln in s.log_lines))
    finally:
        if c is not None:
            c.close()
        rc = s.stop()
        r.check("accept errors: clean exit", rc == 0, str(rc))
        s.cleanup()


def t_slow_disk(r):
    """Every WAL fsync takes 1.5 s (tests/fault/fsyncfail.c's delay mode)
    with request_timeout = 1s: the answers still arrive, because the
    deadline is stopped while payhook works on a request (it used to cut
    every such connection at 1 s and count it as a slow client, though the
    rows were stored); after the answer the idle limit applies again, and
    an idle close is not counted as a deadline."""
    s, trigger = shim_service(r, "slow disk", FSYNCFAIL, SLOW_DISK,
                              {"request_timeout": "1s", "durability": "full"})
    if s is None:
        return
    socks = []
    try:
        s.start()
        d0 = metric(s.metrics(), "payhook_http_connection_deadlines_total")
        open(trigger, "w").close()
        mids = [fresh_id() for _ in range(3)]
        t0 = time.monotonic()
        for mid in mids:
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(signed_request_bytes(webhook(mid)))
            socks.append(c)
        resps = [read_answer(c, 6) for c in socks]
        took = time.monotonic() - t0
        r.check("slow disk: every answer arrives, 200 accepted (%.2fs)" %
                took, all(x is not None and x[0] == 200 and
                          x[2] == b'{"status":"accepted"}' for x in resps)
                and took >= 1.4, repr(resps))
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        socks.append(c)
        c.sendall(signed_request_bytes(webhook(fresh_id())))
        resp = read_answer(c, 6)
        idle = wait_closed(c, 3)
        r.check("slow disk: after the answer, closed at the idle limit "
                "(%s s)" % idle, resp is not None and resp[0] == 200 and
                idle is not None and 0.7 <= idle <= 2.0, repr(resp))
        os.unlink(trigger)
        m = s.metrics()
        slow = (metric(m, "payhook_journal_fsync_seconds_bucket", le="2.5") -
                metric(m, "payhook_journal_fsync_seconds_bucket", le="1"))
        r.check("slow disk: the fsync histogram places 1.5 s fsyncs "
                "between its 1 s and 2.5 s buckets", slow >= 2, str(slow))
        d1 = metric(m, "payhook_http_connection_deadlines_total")
        r.check("slow disk: no connection counted as a slow client",
                d1 == d0, "%s -> %s" % (d0, d1))
    finally:
        for c in socks:
            c.close()
        rc = s.stop()
        r.check("slow disk: clean exit", rc == 0, str(rc))
        s.cleanup()


def t_slow_disk_shutdown(r):
    """SIGTERM while webhooks wait for 1.5 s fsyncs, longer than the drain
    (2 s) lets the main loop wait: every one is still answered 200 before
    payhook exits 0 (the answers were written after the listener's thread
    had stopped, into connections about to be freed: stored, unanswered)."""
    s, trigger = shim_service(r, "slow shutdown", FSYNCFAIL, SLOW_DISK,
                              {"durability": "full"})
    if s is None:
        return
    socks, mids = [], []
    try:
        s.start()
        open(trigger, "w").close()
        for _ in range(4):
            mids.append(fresh_id())
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(signed_request_bytes(webhook(mids[-1])))
            socks.append(c)
            time.sleep(0.05)
        time.sleep(0.2)
        s.proc.send_signal(signal.SIGTERM)
        resps = [read_answer(c, 10) for c in socks]
        r.check("slow shutdown: every webhook answered 200 accepted",
                all(x is not None and x[0] == 200 and
                    x[2] == b'{"status":"accepted"}' for x in resps),
                repr(resps))
        rc = s.proc.wait(20)
        r.check("slow shutdown: exit 0", rc == 0, str(rc))
        s.proc = None
        import sqlite3
        db = sqlite3.connect("file:%s/journal.db?mode=ro" % s.state_dir,
                             uri=True)
        stored = {m for (m,) in db.execute(
            "SELECT message_id FROM webhooks")}
        db.close()
        r.check("slow shutdown: all four stored", set(mids) <= stored,
                repr(set(mids) - stored))
    finally:
        for c in socks:
            c.close()
        s.cleanup()


class LimitedService(Service):
    """A service started under prlimit --nofile=N:N."""

    def __init__(self, nofile, extra=None):
        super().__init__(extra)
        self.nofile = nofile

    def command(self):
        return ["prlimit", "--nofile=%d:%d" % (self.nofile, self.nofile),
                "--"] + super().command()


def t_nofile_budget(r):
    """With 300 open files (hard limit too) the default max_connections
    (1024) cannot be kept: the cap comes down to 150 with a warning, and
    the 151st client waits instead of taking a descriptor the journal
    needs."""
    s = LimitedService(300, {"request_timeout": "20s"})
    idle = []
    try:
        s.start()
        line = [ln for ln in s.log_lines if "max_connections_lowered" in ln]
        r.check("nofile: warning names both numbers", line and
                "max_connections=1024" in line[0] and "effective=150" in
                line[0] and "nofile=300" in line[0], repr(line))
        for _ in range(160):
            idle.append(socket.create_connection(("127.0.0.1", s.port),
                                                 timeout=5))
        r.check("nofile: 150 connections active, no more", wait_for(
            lambda: metric(s.metrics(), "payhook_http_connections_active")
            == 150, 5), str(metric(s.metrics(),
                                   "payhook_http_connections_active")))
        r.check("nofile: accepting paused at the lowered cap",
                metric(s.metrics(), "payhook_http_accept_paused_total") >= 1)
        r.check("nofile: no accept error", metric(
            s.metrics(), "payhook_http_accept_errors_total") == 0)
        for c in idle:
            c.close()
        idle = []
        r.check("nofile: a webhook is stored afterwards", wait_for(
            lambda: metric(s.metrics(), "payhook_http_connections_active")
            == 0, 5) and s.post(webhook(fresh_id()))[0] == 200)
        r.check("nofile: no error logged", not any(
            "level=error" in ln for ln in s.log_lines), "\n".join(
                ln for ln in s.log_lines if "level=error" in ln))
    finally:
        for c in idle:
            c.close()
        rc = s.stop()
        r.check("nofile: clean exit", rc == 0, str(rc))
        s.cleanup()


def main():
    r = Runner("limits")
    s = Service({"request_timeout": "2s"})
    try:
        s.start()
        r.run(t_slowloris, s)
        r.run(t_idle_keepalive, s)
        r.run(t_slow_lines_keepalive, s)
        r.check("service alive", s.alive())
    finally:
        s.cleanup()
    r.run(t_max_connections)
    r.run(t_accept_errors)
    r.run(t_slow_disk)
    r.run(t_slow_disk_shutdown)
    r.run(t_nofile_budget)
    r.done()


if __name__ == "__main__":
    main()
