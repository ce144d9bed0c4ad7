#!/usr/bin/python3
"""soak.py: one million webhooks through the whole payhook pipeline at a
steady rate (issue 7, "Soak"); run by bench/soak/run.sh.

  wrk (paced.lua over bench/ingest/webhooks.lua, pre-signed bodies made
  with bench/ingest/gen.py's template) --POST--> payhook serve
  (durability full, cross_check on) --GET /v1/payments/{id}--> payhook-sim
  (0 ms) ; payhook --ZeroMQ--> `payhook tail --from 1` (read here: every
  seq must arrive, once, in order).

Every webhook's payment exists in the simulator with the template's amount,
reference and description, so every verdict must be `confirmed`. Each
second: payhook's RSS (/proc/PID/status VmRSS), webhooks accepted and
events published (its /metrics), the WAL size and what the consumer saw.
At the end: no error, every event accounted for (journal rows == 2xx sent
== events published == seqs the consumer saw), RSS flat after warm-up.
Writes bench/soak/soak.png (gnuplot) and the "## soak" section of
bench/RESULTS.md. Loopback only, free ports, everything started here is
stopped here, every wait is bounded.
"""
import argparse
import collections
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "bench", "ingest"))
import gen  # noqa: E402  (bench/ingest/gen.py: template and ids)

SECRET = "webhook_test_s0ak5ecret0123456789abcdefghij"
API_KEY = "api_test_s0akkey0123456789abcdefghijklmnopqrstuv01234"


def log(msg):
    print("soak: " + msg, flush=True)


def http(port, method, path, body=None, key=None, timeout=10):
    req = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (port, path), method=method,
        data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_logged(args, stdout, name, pattern, timeout=20):
    """Start a process whose stderr (or stdout) prints a line matching
    pattern once it listens; returns (proc, match, lines)."""
    lines = []
    ready = threading.Event()
    found = {}
    proc = subprocess.Popen(args, stdout=stdout, stderr=subprocess.PIPE)

    def reader():
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            m = re.search(pattern, line)
            if m and not ready.is_set():
                found["m"] = m
                ready.set()
    threading.Thread(target=reader, daemon=True).start()
    if not ready.wait(timeout):
        proc.kill()
        raise RuntimeError("%s did not start: %s" % (name, lines[-5:]))
    return proc, found["m"], lines


def stop(proc, sig=signal.SIGTERM, timeout=60):
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


def metrics(port):
    st, body = http(port, "GET", "/metrics", timeout=5)
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def published_total(mt):
    """payhook_events_published_total summed over its family labels."""
    return sum(v for k, v in mt.items()
               if k.startswith("payhook_events_published_total"))


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])      # kB
    return out


class Consumer:
    """`payhook tail --from 1`; checks seq continuity line by line without
    keeping the events (one million of them would not fit nicely)."""

    def __init__(self, binary, feed, replay):
        self.proc = subprocess.Popen(
            [binary, "tail", "--from", "1", "--feed", feed, "--replay",
             replay], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.count = self.last = self.gaps = self.repeats = 0
        self.bad = 0
        self.verdicts = collections.Counter()
        self.err = b""
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        self.et = threading.Thread(target=self._err, daemon=True)
        self.et.start()

    def _err(self):
        self.err = self.proc.stderr.read()

    def _read(self):
        for raw in self.proc.stdout:
            i = raw.find(b'"seq":')
            if i < 0 or not raw.endswith(b"\n"):
                self.bad += 1
                continue
            j = i + 6
            k = j
            while raw[k:k + 1].isdigit():
                k += 1
            seq = int(raw[j:k])
            if seq <= self.last:
                self.repeats += 1
                continue
            if seq != self.last + 1:
                self.gaps += 1
            self.last = seq
            self.count += 1
            if b'"cross_check":"confirmed"' in raw:
                self.verdicts["confirmed"] += 1
            else:
                m = re.search(rb'"cross_check":"(\w+)"', raw)
                self.verdicts[m.group(1).decode() if m else "?"] += 1

    def stop(self):
        rc = stop(self.proc, signal.SIGTERM, 20)
        self.t.join(20)
        self.et.join(5)
        return rc


def write_ids(data, n, pids, secret):
    """gen.py's template and id scheme; each webhook's payment is one of
    the sim's payments (pids), so the cross-check can confirm it."""
    tpl = json.dumps(gen.template(), separators=(",", ":")).encode()
    a, rest = tpl.split(b"@@MSGID@@")
    b, c, d = rest.split(b"@@PAYID@@")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "template.json"), "wb") as f:
        f.write(tpl + b"\n")
    key = secret.encode()
    base = 0x50a4 << 40
    with open(os.path.join(data, "ids.txt"), "w") as f:
        buf = []
        for i in range(n):
            mid = gen.gov_id(base + i)
            pid = pids[i % len(pids)]
            body = b"".join((a, mid.encode(), b, pid.encode(), c,
                             pid.encode(), d))
            buf.append("%s %s %s\n" % (mid, pid, hmac.digest(
                key, body, hashlib.sha256).hex()))
            if len(buf) == 20000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))
    return len(tpl) - 27 + 78


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--payhook", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--webhooks", type=int, default=1000000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--delay-ms", type=int, default=8)
    ap.add_argument("--payments", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--max-seconds", type=int, default=900)
    ap.add_argument("--out", default=os.path.join(SRC, "bench",
                                                  "RESULTS.md"))
    ap.add_argument("--plot", default=os.path.join(HERE, "soak.png"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--max-state-gb", type=float, default=30.0,
                    help="stop the load early if the state directory "
                    "(journal + WAL) grows past this (shared disk)")
    args = ap.parse_args()
    cmdline = " ".join(sys.argv)

    work = tempfile.mkdtemp(prefix="payhook-soak-", dir="/var/tmp")
    procs = []
    failures = []
    try:
        return run(args, work, procs, failures, cmdline)
    finally:
        for p in procs:
            stop(p, signal.SIGKILL if p.poll() is None else signal.SIGTERM,
                 5)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work, procs, failures, cmdline):
    t_begin = time.time()
    keys = os.path.join(work, "keys")
    with open(keys, "w") as f:
        f.write(API_KEY + "\n")
    secret_file = os.path.join(work, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(secret_file, 0o600)
    os.chmod(keys, 0o600)

    # 1. the simulator, and the payments the webhooks are about
    sim = subprocess.Popen([args.sim, "--listen", "127.0.0.1:0",
                            "--api-key-file", keys, "--log-level", "error"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    procs.append(sim)
    m = re.search(rb"listening on (\S+):(\d+)", sim.stdout.readline())
    sim_port = int(m.group(2))
    tpl = gen.template()
    res = tpl["resource"]
    pids = []
    for i in range(args.payments):
        st, body = http(sim_port, "POST", "/v1/payments", {
            "amount": res["amount"], "reference": res["reference"],
            "description": res["description"],
            "return_url": "https://your-council.service.gov.uk/done"},
            API_KEY)
        assert st == 201, (st, body)
        pid = json.loads(body)["payment_id"]
        st, body = http(sim_port, "POST", "/_sim/payments/%s/card" % pid,
                        {"card_number": "4242424242424242"})
        assert st == 200, (st, body)
        pids.append(pid)
    log("%d successful payments in the simulator" % len(pids))

    # 2. the webhooks: gen.py's template, pre-signed
    data = os.path.join(work, "data")
    t0 = time.time()
    size = write_ids(data, args.webhooks + 2000, pids, SECRET)
    log("%d pre-signed %d-byte webhooks in %.1f s" % (
        args.webhooks + 2000, size, time.time() - t0))

    # 3. payhook
    state = os.path.join(work, "state")
    conf = os.path.join(work, "payhook.conf")
    cfg = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
           "signing_secret_file": secret_file, "state_dir": state,
           "durability": "full", "cross_check": "on",
           "api_base_url": "http://127.0.0.1:%d" % sim_port,
           "api_key_file": keys, "api_pool_size": "16",
           "api_rate_limit": "10000", "log_level": "info",
           "publish_endpoint": "tcp://127.0.0.1:*",
           "replay_endpoint": "tcp://127.0.0.1:*"}
    with open(conf, "w") as f:
        for k, v in cfg.items():
            f.write("%s = %s\n" % (k, v))
    ph, m, ph_log = start_logged([args.payhook, "serve", "-c", conf],
                                 subprocess.DEVNULL, "payhook",
                                 r"event=listening.*")
    procs.append(ph)
    kv = dict(re.findall(r"(\w+)=(\S+)", m.group(0)))
    port = int(kv["webhooks"].rsplit(":", 1)[1])
    admin = int(kv["admin"].rsplit(":", 1)[1])
    feed, replay = kv.get("feed"), kv.get("replay")
    log("payhook pid %d on %d (admin %d, feed %s, replay %s)" % (
        ph.pid, port, admin, feed, replay))

    # 4. the consumer
    cons = Consumer(args.payhook, feed, replay)
    procs.append(cons.proc)
    time.sleep(1.0)

    # 5. the sampler
    samples = []
    stop_ev = threading.Event()
    wal = os.path.join(state, "journal.db-wal")

    def sampler():
        t_start = time.monotonic()
        while not stop_ev.is_set():
            try:
                ps = proc_status(ph.pid)
                mt = metrics(admin)
            except (OSError, ValueError):
                stop_ev.wait(1.0)
                continue
            try:
                wal_b = os.path.getsize(wal)
            except OSError:
                wal_b = 0
            samples.append({
                "t": time.monotonic() - t_start,
                "rss_kb": ps.get("VmRSS", 0), "hwm_kb": ps.get("VmHWM", 0),
                "anon_kb": ps.get("RssAnon", 0),
                "file_kb": ps.get("RssFile", 0),
                "accepted": mt.get(
                    'payhook_webhooks_total{result="accepted"}', 0),
                "published": published_total(mt),
                "consumed": cons.count, "wal": wal_b})
            stop_ev.wait(1.0 - (time.monotonic() - t_start) % 1.0)
    samp = threading.Thread(target=sampler, daemon=True)
    samp.start()

    # 6. the load
    per_thread = args.webhooks // 2
    env = dict(os.environ)
    env.update(SOAK_WEBHOOKS_LUA=os.path.join(SRC, "bench", "ingest",
                                              "webhooks.lua"),
               SOAK_DELAY_MS=str(args.delay_ms),
               SOAK_PER_THREAD=str(per_thread))
    url = "http://127.0.0.1:%d/webhooks/govuk-pay" % port
    wrk_cmd = ["wrk", "-t2", "-c%d" % args.connections,
               "-d%ds" % args.max_seconds, "--timeout", "5s", "--latency",
               "-s", os.path.join(HERE, "paced.lua"), url, "--", data, "2"]
    log("load: " + " ".join(wrk_cmd))
    t_load = time.monotonic()
    wrk = subprocess.Popen(wrk_cmd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    procs.append(wrk)
    # wrk's threads stop after their share; then end wrk (SIGINT prints
    # its summary at once instead of waiting out -d)
    last, still = -1, 0
    guard = {}
    while wrk.poll() is None and time.monotonic() - t_load < \
            args.max_seconds:
        time.sleep(1.0)
        acc = samples[-1]["accepted"] if samples else 0
        if acc >= per_thread * 2:
            still = still + 1 if acc == last else 0
            if still >= 3:
                break
        last = acc
        if samples and samples[-1]["wal"] > args.max_state_gb * 2 ** 30:
            guard["hit"] = samples[-1]["wal"]
            log("the WAL reached %.1f GB (> --max-state-gb %.0f): the load "
                "is stopped early to protect the shared disk" % (
                    samples[-1]["wal"] / 2 ** 30, args.max_state_gb))
            break
        if int(time.monotonic() - t_load) % 30 == 0:
            log("t=%3.0fs accepted=%d published=%d consumed=%d rss=%d kB "
                "wal=%d" % (time.monotonic() - t_load, acc,
                             samples[-1]["published"] if samples else 0,
                             cons.count,
                             samples[-1]["rss_kb"] if samples else 0,
                             samples[-1]["wal"] if samples else 0))
    load_s = time.monotonic() - t_load
    if wrk.poll() is None:
        wrk.send_signal(signal.SIGINT)
    wrk_out = wrk.communicate(timeout=30)[0].decode("utf-8", "replace")
    bj = {}
    for line in wrk_out.splitlines():
        if line.startswith("BENCHJSON "):
            bj = json.loads(line[10:])

    # 7. drain: everything published and consumed
    def drained():
        s = samples[-1] if samples else None
        return s and s["published"] >= s["accepted"] and \
            cons.count >= s["accepted"]
    t_drain = time.monotonic()
    while not drained() and time.monotonic() - t_drain < 180:
        time.sleep(0.5)
    drain_s = time.monotonic() - t_drain
    time.sleep(2.0)
    stop_ev.set()
    samp.join(5)
    final = metrics(admin)
    status = proc_status(ph.pid)
    crc = cons.stop()
    prc = stop(ph, signal.SIGTERM, 120)
    stop(sim)
    errors = [l for l in ph_log if "level=error" in l]

    # 8. the journal
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(state,
                                                           "journal.db"),
                         uri=True)
    with contextlib.closing(db):
        rows = db.execute("SELECT count(*) FROM webhooks").fetchone()[0]
        states = dict(db.execute("SELECT state, count(*) FROM webhooks "
                                 "GROUP BY state"))
        verdicts = dict(db.execute("SELECT verdict, count(*) FROM webhooks "
                                   "GROUP BY verdict"))
        ev = db.execute("SELECT count(*), min(seq), max(seq), "
                        "sum(seq > (SELECT upto FROM events_sent)) "
                        "FROM events").fetchone()
        t0 = time.time()
        quick = db.execute("PRAGMA quick_check").fetchone()[0]
        quick_s = time.time() - t0
    db_bytes = sum(os.path.getsize(os.path.join(state, f))
                   for f in os.listdir(state))

    # 9. figures
    acc = [s["accepted"] for s in samples]
    rate = [0.0] + [b - a for a, b in zip(acc, acc[1:])]
    for s, r in zip(samples, rate):
        s["rate"] = r
    loaded = [s for s in samples if s["rate"] > 0]
    t_first = loaded[0]["t"] if loaded else 0
    t_last = loaded[-1]["t"] if loaded else 0
    steady = [s["rate"] for s in samples
              if t_first + 10 <= s["t"] <= t_last - 10]
    warm = [s["rss_kb"] for s in samples
            if t_first + args.warmup <= s["t"] < t_first + args.warmup + 30]
    tail = [s["rss_kb"] for s in samples if t_last - 30 < s["t"] <= t_last]
    rss_start = statistics.median(warm) if warm else 0
    rss_end = statistics.median(tail) if tail else 0
    after = [(s["t"], s["rss_kb"]) for s in samples
             if t_first + args.warmup <= s["t"] <= t_last]
    slope = 0.0
    if len(after) > 10:
        mt_ = statistics.mean(t for t, _ in after)
        mr_ = statistics.mean(r for _, r in after)
        den = sum((t - mt_) ** 2 for t, _ in after)
        slope = sum((t - mt_) * (r - mr_) for t, r in after) / den * 60
    wal_max = max((s["wal"] for s in samples), default=0)
    anon_w = [s["anon_kb"] for s in samples
              if t_first + args.warmup <= s["t"] < t_first + args.warmup + 30]
    anon_t = [s["anon_kb"] for s in samples
              if t_last - 30 < s["t"] <= t_last]
    sent_2xx = bj.get("requests", 0) - bj.get("err_status", 0)
    accepted = final.get('payhook_webhooks_total{result="accepted"}', 0)
    dups = final.get('payhook_webhooks_total{result="duplicate"}', 0)
    published = published_total(final)
    fig = {
        "webhooks": rows, "accepted": int(accepted), "duplicates": int(dups),
        "published": int(published), "consumed": cons.count,
        "consumer_last": cons.last, "gaps": cons.gaps,
        "repeats": cons.repeats, "bad_lines": cons.bad,
        "consumer_verdicts": dict(cons.verdicts),
        "states": states, "verdicts": verdicts,
        "events": ev[0], "seq_min": ev[1], "seq_max": ev[2],
        "unsent": ev[3], "quick_check": quick, "quick_check_s": quick_s,
        "load_s": load_s, "drain_s": drain_s,
        "rate_mean": (rows / (t_last - t_first)) if t_last > t_first else 0,
        "rate_p5": sorted(steady)[len(steady) // 20] if steady else 0,
        "rate_p95": sorted(steady)[len(steady) * 19 // 20] if steady else 0,
        "rate_median": statistics.median(steady) if steady else 0,
        "rss_start_kb": rss_start, "rss_end_kb": rss_end,
        "rss_max_kb": max((s["rss_kb"] for s in samples), default=0),
        "hwm_kb": status.get("VmHWM", 0), "rss_slope_kb_min": slope,
        "wal_max": wal_max, "disk_bytes": db_bytes,
        "anon_start_kb": statistics.median(anon_w) if anon_w else 0,
        "anon_end_kb": statistics.median(anon_t) if anon_t else 0,
        "file_max_kb": max((s["file_kb"] for s in samples), default=0),
        "wrk": bj, "wrk_2xx": sent_2xx, "errors": errors[:5],
        "n_errors": len(errors), "payhook_rc": prc, "tail_rc": crc,
        "tail_stderr": cons.err.decode("utf-8", "replace")[-300:],
        "stopped_early_wal": guard.get("hit", 0),
    }
    log("figures: " + json.dumps(fig))

    def check(cond, what):
        if not cond:
            failures.append(what)
        log(("ok   " if cond else "FAIL ") + what)
    check(rows >= args.webhooks, "at least %d webhooks journaled (%d)" % (
        args.webhooks, rows))
    check(bj.get("err_status", 1) == 0 and bj.get("err_connect", 1) == 0 and
          bj.get("err_read", 1) == 0 and bj.get("err_write", 1) == 0 and
          bj.get("err_timeout", 1) == 0,
          "no non-2xx and no socket error at the sender (%s)" % {
              k: v for k, v in bj.items() if k.startswith("err")})
    check(bj.get("wrapped", 1) == 0 and dups == 0,
          "no id sent twice (wrapped %s, duplicates %d)" % (
              bj.get("wrapped"), dups))
    check(accepted == rows, "journal rows == webhooks accepted (%d, %d)"
          % (rows, accepted))
    check(rows >= sent_2xx, "journal rows >= 2xx counted by wrk (%d, %d; "
          "wrk does not count replies in flight when it stops)" % (
              rows, sent_2xx))
    check(states == {"published": rows}, "every row published (%s)" %
          states)
    check(verdicts == {"confirmed": rows}, "every verdict confirmed (%s)"
          % verdicts)
    check(ev[0] == rows and ev[1] == 1 and ev[2] == rows and ev[3] == 0,
          "events: seq 1..%d, one per row, all sent (%s)" % (rows, ev))
    check(published == rows, "payhook_events_published_total == rows "
          "(%d)" % published)
    check(cons.count == rows and cons.last == rows and cons.gaps == 0 and
          cons.repeats == 0 and cons.bad == 0,
          "the consumer saw every seq 1..%d once, in order (count %d, "
          "gaps %d, repeats %d)" % (rows, cons.count, cons.gaps,
                                     cons.repeats))
    check(quick == "ok", "PRAGMA quick_check ok")
    # journal.c forces a WAL restart past 64 MiB (JOURNAL_WAL_RESTART_BYTES)
    # and overwrites it in place from then on (cut back only past 80 MiB,
    # a quarter above); what is written between two checkpointer rounds
    # comes on top.
    check(wal_max <= 96 * 2 ** 20, "the WAL stays bounded (max %.1f MB; "
          "restarted past 64 MiB)" % (wal_max / 2 ** 20))
    check(not errors, "payhook logged no error (%d)" % len(errors))
    check(prc == 0, "payhook stopped cleanly (exit %s)" % prc)
    growth = rss_end - rss_start
    check(growth <= max(2048, rss_start * 0.05),
          "no RSS growth after warm-up: %d kB -> %d kB (%+d kB, slope "
          "%+.1f kB/min)" % (rss_start, rss_end, growth, slope))

    # 10. plot and RESULTS.md
    csv = os.path.join(work, "samples.dat")
    with open(csv, "w") as f:
        for s in samples:
            f.write("%.1f %.2f %.0f %.0f %.2f\n" % (
                s["t"] - t_first, s["rss_kb"] / 1024.0, s["rate"],
                s["wal"] / 1048576.0, s["anon_kb"] / 1024.0))
    gp = os.path.join(work, "soak.gp")
    with open(gp, "w") as f:
        f.write("""set terminal pngcairo size 900,420 font ",10"
set output "%s"
set title "payhook soak: %d webhooks, RSS and rate"
set xlabel "seconds since the first webhook"
set ylabel "RSS (MB)"
set y2label "webhooks accepted / s"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set grid
set key bottom right
plot "%s" using 1:2 axes x1y1 with lines lw 2 title "payhook RSS (MB)", \\
     "%s" using 1:5 axes x1y1 with lines lw 1 title "of which heap (RssAnon, MB)", \\
     "%s" using 1:3 axes x1y2 with lines lc rgb "#999999" title "webhooks/s"
""" % (args.plot, rows, csv, csv, csv))
    gpr = subprocess.run(["gnuplot", gp], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=60)
    if gpr.returncode != 0:
        # pngcairo missing: plain png
        with open(gp) as f:
            text = f.read().replace('pngcairo size 900,420 font ",10"',
                                    "png size 900,420")
        with open(gp, "w") as f:
            f.write(text)
        gpr = subprocess.run(["gnuplot", gp], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=60)
    check(gpr.returncode == 0 and os.path.exists(args.plot),
          "plot written to %s" % args.plot)
    write_results(args, fig, failures, wrk_cmd, cmdline, t_begin)
    log("%s: %d failure(s)" % ("PASS" if not failures else "FAIL",
                               len(failures)))
    return 1 if failures else 0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git_rev():
    try:
        r = subprocess.run(["git", "-C", SRC, "describe", "--always",
                            "--dirty"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=10)
        return r.stdout.decode().strip()
    except OSError:
        return "?"


def write_results(args, f, failures, wrk_cmd, cmdline, t_begin):
    mb = lambda kb: kb / 1024.0  # noqa: E731
    plot_rel = os.path.relpath(args.plot, os.path.dirname(args.out))
    wrk = f["wrk"]
    lines = [
        "## soak", "",
        "Recorded by `bench/soak/run.sh` on %s. Machine: %d cores, %s, "
        "Linux %s; payhook %s built RelWithDebInfo. Everything on loopback "
        "and on the same 2 cores: wrk, `payhook serve`, payhook-sim, "
        "`payhook tail` and the sampler." % (
            datetime.date.today().isoformat(), os.cpu_count(), cpu_model(),
            platform.release(), git_rev()), "",
        "Pipeline: wrk (`bench/soak/paced.lua` over "
        "`bench/ingest/webhooks.lua`, %d connections, %d ms between a "
        "reply and the next request on each) sends %d-byte signed "
        "`card_payment_captured` webhooks (gen.py's template), each with "
        "its own id, about %d payments of payhook-sim; `payhook serve` "
        "(durability full, cross_check on, api_pool_size 16, log_level info) journals "
        "them, cross-checks each with GET /v1/payments/{id} against the "
        "sim (0 ms injected latency) and publishes them; `payhook tail "
        "--from 1` follows the feed and replay and every seq it prints is "
        "checked. RSS is `/proc/PID/status` VmRSS of payhook, sampled "
        "every second; the rate is the per-second increase of "
        "`payhook_webhooks_total{result=\"accepted\"}`." % (
            args.connections, args.delay_ms, 1526, args.payments), "",
        "![RSS and rate over time](%s)" % plot_rel, "",
        "| figure | value |", "|---|---:|",
        "| webhooks journaled (= accepted) | %d |" % f["webhooks"],
        "| 2xx counted by wrk / non-2xx / socket errors | %d / %d / %d |"
        % (f["wrk_2xx"], wrk.get("err_status", -1),
           sum(wrk.get(k, 0) for k in ("err_connect", "err_read",
                                       "err_write", "err_timeout"))),
        "| duplicates / ids repeated by wrk | %d / %s |" % (
            f["duplicates"], wrk.get("wrapped")),
        "| verdicts | %s |" % ", ".join("%s %d" % kv for kv in
                                        f["verdicts"].items()),
        "| events published (seq 1..N, all sent) | %d (seq %s..%s, "
        "unsent %s) |" % (f["published"], f["seq_min"], f["seq_max"],
                          f["unsent"]),
        "| consumer: events seen / gaps / repeats | %d / %d / %d |" % (
            f["consumed"], f["gaps"], f["repeats"]),
        "| load time / drain after the last webhook | %.0f s / %.1f s |"
        % (f["load_s"], f["drain_s"]),
        "| rate: mean / median / p5 / p95 (per second, steady) | %.0f / "
        "%.0f / %.0f / %.0f |" % (f["rate_mean"], f["rate_median"],
                                  f["rate_p5"], f["rate_p95"]),
        "| latency at the sender p50 / p99 / max | %.2f / %.2f / %.1f ms |"
        % (wrk.get("p50_us", 0) / 1000.0, wrk.get("p99_us", 0) / 1000.0,
           wrk.get("max_us", 0) / 1000.0),
        "| RSS after %d s warm-up (median of 30 s) → last 30 s | %.1f MB → "
        "%.1f MB (%+.0f kB) |" % (args.warmup, mb(f["rss_start_kb"]),
                                  mb(f["rss_end_kb"]),
                                  f["rss_end_kb"] - f["rss_start_kb"]),
        "| RSS trend after warm-up (least squares) | %+.1f kB/min |" %
        f["rss_slope_kb_min"],
        "| RSS max / VmHWM | %.1f MB / %.1f MB |" % (
            mb(f["rss_max_kb"]), mb(f["hwm_kb"])),
        "| of which RssAnon (heap) after warm-up → end / RssFile max (the "
        "mmapped WAL index) | %.1f MB → %.1f MB / %.1f MB |" % (
            mb(f["anon_start_kb"]), mb(f["anon_end_kb"]),
            mb(f["file_max_kb"])),
        "| WAL size max / state dir at the end | %.1f MB / %.0f MB |" % (
            f["wal_max"] / 1048576.0, f["disk_bytes"] / 1048576.0),
        "| PRAGMA quick_check | %s (%.0f s) |" % (f["quick_check"],
                                                 f["quick_check_s"]),
        "| payhook error lines / exit status on SIGTERM | %d / %s |" % (
            f["n_errors"], f["payhook_rc"]),
        "",
        "Verdict: %s." % ("**pass**: no error, every event accounted for "
                          "(journal rows = accepted = published = seqs "
                          "seen by the consumer), RSS flat after warm-up"
                          if not failures else "**fail**: " +
                          "; ".join(failures)),
        "", "### Command", "", "```",
        "bench/soak/run.sh   # builds, then runs:",
        cmdline,
        "SOAK_WEBHOOKS_LUA=bench/ingest/webhooks.lua SOAK_DELAY_MS=%d "
        "SOAK_PER_THREAD=%d %s" % (args.delay_ms, args.webhooks // 2,
                                   " ".join(wrk_cmd).replace(
                                       os.path.dirname(wrk_cmd[-2]),
                                       "WORK")),
        "```", ""]
    section = "\n".join(lines)
    try:
        with open(args.out) as fh:
            text = fh.read()
    except OSError:
        text = "# payhook benchmark results\n"
    m = re.search(r"^## soak\n.*?(?=^## |\Z)", text, re.S | re.M)
    if m:
        text = text[:m.start()] + section + "\n" + text[m.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(args.out, "w") as fh:
        fh.write(text)
    log("wrote the \"## soak\" section of %s" % args.out)


if __name__ == "__main__":
    sys.exit(main())
