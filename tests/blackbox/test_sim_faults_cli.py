"""payhook-sim command line (--help, --version, exit codes, port 0) and
API fault injection (latency, 429, 5xx, no answer, connection reset),
plus routing errors and a GET throughput smoke test."""

import http.client
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
from simharness import (SIM_BIN, SRC, TEST_KEY, Checks, Sim, require_sim,
                        wait_for)

require_sim()
c = Checks("test_sim_faults_cli")


def run(*args):
    return subprocess.run([SIM_BIN] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=10)


# --- command line ------------------------------------------------------
r = run("--help")
c.eq(r.returncode, 0, "--help exits 0")
helptext = r.stdout.decode()
with open(os.path.join(SRC, "sim", "main.c")) as f:
    names = re.findall(r'^\t\{ "([a-z-]+)", OPT_', f.read(), re.M)
c.check(len(names) >= 10, "option table found", names)
for n in names + ["help", "version"]:
    c.check("--" + n in helptext, "--help documents --" + n)
docs = os.path.join(SRC, "docs", "simulator.md")
if os.path.exists(docs):
    with open(docs) as f:
        doctext = f.read()
    for n in names:
        c.check("--" + n in doctext, "docs/simulator.md documents --" + n)
r = run("--version")
c.check(r.returncode == 0 and re.match(rb"^payhook-sim \d+\.\d+",
                                       r.stdout), "--version", r.stdout)
c.eq(run().returncode, 2, "missing --listen exits 2")
c.eq(run("--listen", "127.0.0.1:0").returncode, 2,
     "missing --api-key-file exits 2")
with Sim() as s:
    kf = s.keyfile
    for bad in (["--time-scale", "0"], ["--time-scale", "x"],
                ["--duplicate-rate", "2"], ["--webhook-url", "http://x/"],
                ["--webhook-url", "ftp://x/", "--signing-secret-file", kf],
                ["--listen", "nonsense"], ["--bogus"]):
        args = ["--listen", "127.0.0.1:0", "--api-key-file", kf] + bad
        if bad[0] == "--listen":
            args = bad + ["--api-key-file", kf]
        r = run(*args)
        c.eq(r.returncode, 2, "bad option %s exits 2" % bad)
        c.check(r.stderr.strip(), "bad option %s explained" % bad)
    r = run("--listen", "127.0.0.1:0", "--api-key-file", "/nonexistent")
    c.eq(r.returncode, 2, "unreadable key file exits 2")
    # port 0 gave a real port that answers
    c.check(s.port > 0, "port 0 resolved to a real port")
    c.eq(s.ctl("GET", "/health").status, 200, "listening where printed")
    # routing errors
    r = s.api("GET", "/v1/nothing")
    c.eq((r.status, r.json), (404, {"code": 404,
                                    "message": "HTTP 404 Not Found"}),
         "unknown path 404")
    r = s.api("DELETE", "/v1/payments/abc")
    c.eq(r.status, 405, "wrong method 405")
    c.eq(s.api("GET", "/v1/payments/abc", key=None).status, 401,
         "no key 401")
    c.eq(s.api("GET", "/v1/payments/abc",
               headers={"Authorization": "Basic " + TEST_KEY},
               key=None).status, 401, "non-Bearer 401")
    # throughput smoke test over one keep-alive connection
    pid = s.create()["payment_id"]
    conn = http.client.HTTPConnection(s.host, s.port, timeout=10)
    t0 = time.monotonic()
    ok = 0
    for _ in range(2000):
        conn.request("GET", "/v1/payments/" + pid,
                     headers={"Authorization": "Bearer " + TEST_KEY})
        resp = conn.getresponse()
        resp.read()
        ok += resp.status == 200
    dt = time.monotonic() - t0
    conn.close()
    c.eq(ok, 2000, "2000 GETs answered")
    c.check(2000 / dt > 500, "GET throughput > 500/s (got %.0f/s)" %
            (2000 / dt))

# --- faults ------------------------------------------------------------
with Sim(extra=["--seed", "42"]) as s:
    pid = s.create()["payment_id"]
    path = "/v1/payments/" + pid
    r = s.ctl("POST", "/faults", {"latency_ms": 300})
    c.eq(r.status, 200, "latency set")
    t0 = time.monotonic()
    r = s.api("GET", path)
    dt = time.monotonic() - t0
    c.check(r.status == 200 and 0.28 <= dt < 2, "latency 300 ms", dt)
    t0 = time.monotonic()
    c.eq(s.ctl("GET", "/health").status, 200, "control surface not delayed")
    c.check(time.monotonic() - t0 < 0.25, "control surface fast")
    s.ctl("DELETE", "/faults")
    s.ctl("POST", "/faults", {"rate_429": 0.5})
    n429 = sum(s.api("GET", path).status == 429 for _ in range(300))
    c.check(90 <= n429 <= 210, "429 at rate 0.5", n429)
    s.ctl("POST", "/faults", {"rate_429": 0, "rate_5xx": 1,
                              "error_status": 503})
    r = s.api("GET", path)
    c.eq((r.status, r.json.get("code")), (503, "P0999"), "503 fault")
    c.eq(s.ctl("POST", "/faults", {"rate_5xx": 2}).status, 400,
         "bad rate refused")
    s.ctl("DELETE", "/faults")
    s.ctl("POST", "/faults", {"rate_timeout": 1})
    t0 = time.monotonic()
    try:
        s.api("GET", path, timeout=0.5)
        c.check(False, "timeout fault never answers")
    except (OSError, http.client.HTTPException):
        c.check(time.monotonic() - t0 >= 0.45, "timeout fault never answers")
    s.ctl("POST", "/faults", {"rate_timeout": 0, "rate_reset": 1})
    try:
        r = s.api("GET", path, timeout=5)
        c.check(False, "reset fault resets", r)
    except (ConnectionResetError, http.client.RemoteDisconnected,
            ConnectionAbortedError, BrokenPipeError) as e:
        c.check(True, "reset fault resets")
    except OSError as e:
        c.check(False, "reset fault resets", e)
    f = s.ctl("GET", "/faults").json
    c.check(f["injected"]["timeout"] >= 1 and f["injected"]["reset"] >= 1,
            "faults counted", f)
    s.ctl("DELETE", "/faults")
    c.eq(s.api("GET", path).status, 200, "serving again after faults")
    st = s.ctl("GET", "/stats").json
    c.check(st["payments"] == 1 and st["api_faults"] > 0, "stats", st)
    c.eq(s.ctl("POST", "/reset").status, 200, "reset")
    c.eq(s.api("GET", path).status, 404, "reset forgets payments")
    c.eq(s.stop(), 0, "exits 0 with a held request outstanding")

c.finish()
