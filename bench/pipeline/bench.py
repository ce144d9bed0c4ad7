#!/usr/bin/python3
"""bench.py: the pipeline benchmark of issue 4 (run by bench/pipeline/run.sh).

Signed webhooks go in to `payhook serve` (cross_check on) at a fixed rate;
payhook cross-checks each one against payhook-sim on loopback. Measured from
the journal: events/s through the cross-check, and the latency from webhook
received to verdict recorded (p50/p99/max), with the simulator answering at
0 ms and at 50 ms (/_sim/faults latency_ms). At 50 ms the rate must reach
at least 90 % of pool / latency. Rewrites the "## pipeline" section of
RESULTS.md. Loopback only, free ports, every process started here is
stopped here, every phase is bounded in time.
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

SECRET = "webhook_test_b3nch5ecret0123456789abcdefgh"
API_KEY = "api_test_b3nchkey0123456789abcdefghijklmnopqrstuv0123"
ALPHABET = "0123456789abcdefghijklmnopqrstuv"


def pay_id(n):
    out = []
    for _ in range(26):
        out.append(ALPHABET[n % 32])
        n //= 32
    return "".join(reversed(out))


def req(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = json.dumps(body).encode() if body is not None else None
        h = dict(headers or {})
        if data is not None:
            h["Content-Type"] = "application/json"
        c.request(method, path, data, h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


http_ = req


class Sim:
    def __init__(self, binary, tmp):
        keys = os.path.join(tmp, "sim-keys")
        with open(keys, "w") as f:
            f.write(API_KEY + "\n")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--api-key-file", keys,
             "--log-level", "error"], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"listening on (\S+):(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("payhook-sim: %r" % line)
        self.port = int(m.group(2))

    def api(self, method, path, body=None):
        return http_(self.port, method, path, body,
                     {"Authorization": "Bearer " + API_KEY})

    def ctl(self, method, path, body=None):
        return http_(self.port, method, "/_sim" + path, body)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Payhook:
    def __init__(self, binary, tmp, sim_port, pool, rate,
                 durability="full"):
        self.tmp = tempfile.mkdtemp(prefix="payhook-", dir=tmp)
        secret = os.path.join(self.tmp, "secret")
        key = os.path.join(self.tmp, "api-key")
        for path, text in ((secret, SECRET), (key, API_KEY)):
            with open(path, "w") as f:
                f.write(text + "\n")
            os.chmod(path, 0o600)
        self.state = os.path.join(self.tmp, "state")
        conf = os.path.join(self.tmp, "payhook.conf")
        cfg = {
            "listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
            "signing_secret_file": secret, "state_dir": self.state,
            "durability": durability, "log_level": "info",
            "cross_check": "on", "api_base_url":
            "http://127.0.0.1:%d" % sim_port, "api_key_file": key,
            "api_pool_size": str(pool), "api_rate_limit": str(rate),
            "api_timeout": "10s",
            "publish_endpoint": "tcp://127.0.0.1:*",
            "replay_endpoint": "tcp://127.0.0.1:*",
        }
        with open(conf, "w") as f:
            for k, v in cfg.items():
                f.write("%s = %s\n" % (k, v))
        self.proc = subprocess.Popen([binary, "serve", "-c", conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode()
            m = re.search(r"event=listening.*webhooks=\S+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.stop()
            raise RuntimeError("payhook did not start")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for _ in self.proc.stderr:
            pass

    def db(self):
        return sqlite3.connect("file:%s/journal.db?mode=ro" % self.state,
                               uri=True, timeout=10)

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def make_bodies(sim, n_payments, n_events, tag):
    """n_events signed bodies over n_payments successful payments."""
    views = []
    for _ in range(n_payments):
        st, b = sim.api("POST", "/v1/payments", {
            "amount": 14500, "reference": "bench", "description":
            "Pay your council tax", "return_url": "https://x.gov.uk/done"})
        pid = json.loads(b)["payment_id"]
        sim.ctl("POST", "/payments/%s/card" % pid,
                {"card_number": "4444333322221111"})
        st, b = sim.ctl("GET", "/payments/%s" % pid)
        views.append((pid, json.loads(b)["webhook_resource"]))
    out = []
    for i in range(n_events):
        pid, res = views[i % len(views)]
        body = json.dumps({
            "webhook_message_id": pay_id(tag * 10**7 + i),
            "created_date": "2026-11-21T10:00:00.000Z", "resource_id": pid,
            "api_version": 1, "resource_type": "PAYMENT",
            "event_type": "card_payment_succeeded", "resource": res},
            separators=(",", ":")).encode()
        sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        out.append((body, sig))
    return out


def send_paced(port, bodies, rate, conns=8):
    """Send bodies at `rate`/s over `conns` keep-alive connections."""
    t0 = time.monotonic()
    errors = [0]
    lock = threading.Lock()

    def worker(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(k, len(bodies), conns):
            due = t0 + i / rate
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            body, sig = bodies[i]
            try:
                c.request("POST", "/webhooks/govuk-pay", body, {
                    "Content-Type": "application/json",
                    "Pay-Signature": sig})
                r = c.getresponse()
                r.read()
                ok = r.status == 200
            except OSError:
                ok = False
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            if not ok:
                with lock:
                    errors[0] += 1
        c.close()
    th = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return time.monotonic() - t0, errors[0]


def sim_answer_ms(sim, bodies):
    """Median time of 21 sequential GETs straight to the sim (one client):
    what the simulator really takes to answer, before payhook runs."""
    pid = json.loads(bodies[0][0])["resource_id"]
    c = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    ts = []
    for _ in range(21):
        t = time.monotonic()
        c.request("GET", "/v1/payments/" + pid,
                  headers={"Authorization": "Bearer " + API_KEY})
        c.getresponse().read()
        ts.append((time.monotonic() - t) * 1000.0)
    c.close()
    return sorted(ts)[10]


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def run_case(args, tmp, latency_ms, pool, events, tag):
    sim = Sim(args.sim_bin, tmp)
    ph = None
    try:
        bodies = make_bodies(sim, args.payments, events, tag)
        sim_ms = float("nan")
        if latency_ms:
            sim.ctl("POST", "/faults", {"latency_ms": latency_ms})
            sim_ms = sim_answer_ms(sim, bodies)
        ph = Payhook(args.payhook_bin, tmp, sim.port, pool, args.rate_limit,
                     args.durability)
        took, errors = send_paced(ph.port, bodies, args.rate)
        deadline = time.monotonic() + args.max_wait
        while time.monotonic() < deadline:
            with ph.db() as db:
                left = db.execute("SELECT count(*) FROM webhooks WHERE "
                                  "state = 'received'").fetchone()[0]
            if left == 0:
                break
            time.sleep(0.2)
        with ph.db() as db:
            rows = db.execute("SELECT received_ms, checked_ms, verdict FROM "
                              "webhooks").fetchall()
        rc = ph.stop()
        ph = None
    finally:
        if ph is not None:
            ph.stop()
        sim.stop()
    done = [r for r in rows if r[1]]
    lat = [r[1] - r[0] for r in done]
    verdicts = {}
    for r in rows:
        verdicts[r[2]] = verdicts.get(r[2], 0) + 1
    first = min(r[0] for r in rows)
    last = max(r[1] for r in done) if done else first
    # steady rate: checks completed between the 10th and 90th percentile
    ck = sorted(r[1] for r in done)
    a, b = ck[len(ck) // 10], ck[len(ck) * 9 // 10]
    steady = (len(ck) * 8 // 10) / ((b - a) / 1000.0) if b > a else 0
    return {
        "latency_ms": latency_ms, "pool": pool, "events": events,
        "sent_s": took, "send_errors": errors, "rows": len(rows),
        "checked": len(done), "verdicts": verdicts,
        "overall_rate": len(done) / max((last - first) / 1000.0, 1e-3),
        "steady_rate": steady, "p50": pct(lat, 50), "p99": pct(lat, 99),
        "max": max(lat) if lat else float("nan"), "exit": rc,
        "sim_ms": sim_ms,
    }


def write_results(path, results, args, cmdline):
    now = datetime.date.today().isoformat()
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else "?"
    except OSError:
        pass
    lines = ["## pipeline", "",
             "Recorded by `bench/pipeline/run.sh` on %s. Machine: %d cores, "
             "%s, Linux %s. Everything on loopback: the load generator "
             "(Python, %d keep-alive connections), `payhook serve` "
             "(durability full, log_level info) and payhook-sim share the "
             "cores." % (now, os.cpu_count(), cpu, platform.release(), 8),
             "",
             "Load: %s signed `card_payment_succeeded` webhooks sent at "
             "%d/s over %d sim payments; each is cross-checked with GET "
             "/v1/payments/{id} against payhook-sim (answer delay injected "
             "with `/_sim/faults latency_ms`). Latency = journal "
             "`checked_ms - received_ms` (webhook journaled -> verdict "
             "recorded). Rate = verdicts/s between the 10th and 90th "
             "percentile of completion times (steady state); overall = all "
             "verdicts / (last verdict - first webhook)." % (
                 "/".join(str(r["events"]) for r in results), args.rate,
                 args.payments), "",
             "| sim answer | pool | webhooks | sent in | verdicts | "
             "steady rate | overall rate | pool ÷ latency | reached | "
             "p50 | p99 | max |",
             "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        bound = r["pool"] / (r["latency_ms"] / 1000.0) if r[
            "latency_ms"] else None
        if bound is None:
            reached = "n/a"
        elif bound > args.rate:
            reached = "input-bound (%d/s offered)" % args.rate
        else:
            reached = "%.0f %%" % (100 * r["steady_rate"] / bound)
        v = ", ".join("%s %d" % kv for kv in sorted(
            (k or "none", n) for k, n in r["verdicts"].items()))
        lines.append("| %d ms | %d | %d | %.1f s | %s | %.0f/s | %.0f/s | "
                     "%s | %s | %d ms | %d ms | %d ms |" % (
                         r["latency_ms"], r["pool"], r["events"],
                         r["sent_s"], v, r["steady_rate"],
                         r["overall_rate"],
                         "%.0f/s" % bound if bound else "n/a", reached,
                         r["p50"], r["p99"], r["max"]))
    lines.append("")
    for r in results:
        if r["latency_ms"] and r["pool"] == args.pool:
            bound = r["pool"] / (r["latency_ms"] / 1000.0)
            ok = r["steady_rate"] >= 0.9 * bound
            lines.append("Target (issue 4): at %d ms with pool %d the rate "
                         "must reach ≥ 90 %% of pool ÷ latency = %.0f/s: "
                         "reached %.0f/s (%.1f %%), **%s**. The simulator "
                         "itself took %.1f ms (median of 21 sequential GETs "
                         "from one client before the run), so the ceiling "
                         "any client could reach is %.0f/s; payhook got "
                         "%.0f %% of that." % (
                             r["latency_ms"], r["pool"], 0.9 * bound,
                             r["steady_rate"],
                             100 * r["steady_rate"] / bound,
                             "met" if ok else "missed", r["sim_ms"],
                             r["pool"] / (r["sim_ms"] / 1000.0),
                             100 * r["steady_rate"] /
                             (r["pool"] / (r["sim_ms"] / 1000.0))))
    lines += ["", "Checks: send errors %s; rows journaled %s; payhook exit "
              "status on SIGTERM %s." % (
                  "/".join(str(r["send_errors"]) for r in results),
                  "/".join(str(r["rows"]) for r in results),
                  "/".join(str(r["exit"]) for r in results)), "",
              "### Commands", "", "```", cmdline,
              "# per case: payhook-sim --listen 127.0.0.1:0 --api-key-file "
              "KEYS; POST /_sim/faults {\"latency_ms\": L};",
              "# payhook serve -c CONF (cross_check on, api_pool_size P, "
              "api_rate_limit %d); bench.py sends at %d/s" % (
                  args.rate_limit, args.rate), "```", ""]
    text = open(path).read() if os.path.exists(path) else \
        "# payhook benchmark results\n"
    section = "\n".join(lines)
    m = re.search(r"^## pipeline\n.*?(?=^## |\Z)", text, re.S | re.M)
    if m:
        text = text[:m.start()] + section + "\n" + text[m.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--payhook-bin", required=True)
    ap.add_argument("--sim-bin", required=True)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--pool", type=int, default=8)
    ap.add_argument("--big-pool", type=int, default=64)
    ap.add_argument("--rate-limit", type=int, default=10000)
    ap.add_argument("--payments", type=int, default=200)
    ap.add_argument("--max-wait", type=float, default=120.0)
    ap.add_argument("--durability", default="full")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    n = int(args.rate * args.duration)
    tmp = tempfile.mkdtemp(prefix="payhook-bench-pipeline-")
    try:
        results = [
            run_case(args, tmp, 0, args.pool, n, 1),
            run_case(args, tmp, 50, args.pool, min(n, 3000), 2),
            run_case(args, tmp, 50, args.big_pool, n, 3),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for r in results:
        print(json.dumps(r, sort_keys=True))
    write_results(args.out, results, args, " ".join(sys.argv))


if __name__ == "__main__":
    main()
