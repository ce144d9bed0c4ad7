#!/usr/bin/python3
"""test_dispatch_curve.py: CURVE + ZAP on both ZeroMQ endpoints.

`payhook keygen` writes the server's and two consumers' key pairs (secret
files mode 0600, never overwritten without --force); only one consumer is
listed in curve_clients_file. The listed consumer gets heartbeats, live
events and replay (python3-zmq, and `payhook tail` with
--curve-server-key/--curve-secret-key-file); the unlisted key and a plain
(non-CURVE) client get nothing from either endpoint: libzmq 4.3.4 fails
open without a ZAP domain enforced (ZEROMQ.md §6), so this must hold.
"""
import json
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

EVENTS, _ = phtest.event_validator()


def keygen(tmp, name, *extra):
    pub = os.path.join(tmp, name + ".pub")
    sec = os.path.join(tmp, name + ".key")
    p = subprocess.run([phtest.BIN, "keygen", "--public", pub, "--secret",
                        sec] + list(extra), capture_output=True, timeout=10)
    return p, pub, sec


def read_key(path):
    with open(path) as f:
        return f.read().strip()


def test_curve(r):
    import zmq
    svc = phtest.Service()
    try:
        p, spub_f, ssec_f = keygen(svc.tmp, "server")
        r.check("keygen exits 0", p.returncode == 0, p.stderr)
        _, cpub_f, csec_f = keygen(svc.tmp, "client")
        _, xpub_f, xsec_f = keygen(svc.tmp, "other")
        mode = stat.S_IMODE(os.stat(ssec_f).st_mode)
        r.check("secret key file is 0600", mode == 0o600, oct(mode))
        spub, cpub, xpub = read_key(spub_f), read_key(cpub_f), read_key(xpub_f)
        r.check("keys are 40-char Z85", all(len(k) == 40 for k in
                                            (spub, cpub, xpub)))
        r.check("keygen never prints the secret",
                read_key(ssec_f).encode() not in p.stdout + p.stderr)
        p2, _, _ = keygen(svc.tmp, "server")
        r.check("keygen refuses to overwrite", p2.returncode != 0 and
                read_key(spub_f) == spub)
        p3, _, _ = keygen(svc.tmp, "server", "--force")
        r.check("keygen --force overwrites", p3.returncode == 0 and
                read_key(spub_f) != spub)
        spub = read_key(spub_f)
        clients = os.path.join(svc.tmp, "clients")
        with open(clients, "w") as f:
            f.write("# consumers allowed on the bus\n%s  audit-log\n" % cpub)
        svc.__init__(extra={"curve_secret_key_file": ssec_f,
                            "curve_clients_file": clients}, tmp=svc.tmp)
        svc.own_tmp = True
        svc.start()
        feed, replay = phtest.dispatch_endpoints(svc)
        good = phtest.ZmqConsumer(feed, replay, start=1, curve=(
            spub, cpub, read_key(csec_f)))
        bad = phtest.ZmqConsumer(feed, replay, start=1, curve=(
            spub, xpub, read_key(xsec_f)))
        plain = phtest.ZmqConsumer(feed, replay, start=1)
        try:
            st = phtest.post_many(svc, [phtest.webhook(phtest.pay_id(i))
                                        for i in range(10)])
            r.check("listed key gets heartbeats and live events",
                    good.run_until(lambda c: c.holds(10), 15),
                    (len(good.events), good.pos))
            problems = phtest.verify_against_journal(svc, good.events)
            r.check("listed key holds the journal", not problems, problems)
            r.check("listed key can replay",
                    len(good.replay(1, 100)[1]) == 10)
            bad.run_until(lambda c: False, 1.5)
            plain.run_until(lambda c: False, 0.5)
            r.check("unlisted key gets nothing on the feed",
                    not bad.heartbeats and not bad.events)
            r.check("plain client gets nothing on the feed",
                    not plain.heartbeats and not plain.events)
            r.check("unlisted key gets no replay",
                    bad.request(["REPLAY", "1", "10"], 1.5) is None)
            r.check("plain client gets no replay",
                    plain.request(["REPLAY", "1", "10"], 1.0) is None)
            m = svc.metrics()
            r.check("denials are counted",
                    phtest.metric(m, "payhook_zap_denied_total") > 0)
            r.check("events validate", not phtest.schema_errors(
                EVENTS, phtest.journal_events(svc)))
            out = subprocess.run(
                [phtest.BIN, "tail", "--from", "1", "--count", "10",
                 "--feed", feed, "--replay", replay,
                 "--curve-server-key", spub,
                 "--curve-secret-key-file", csec_f],
                capture_output=True, timeout=20)
            lines = out.stdout.decode().splitlines()
            r.check("payhook tail with the listed key",
                    out.returncode == 0 and [json.loads(l)["seq"] for l in
                                             lines] == list(range(1, 11)),
                    (out.returncode, out.stderr[-300:]))
            out = subprocess.run(
                [phtest.BIN, "tail", "--from", "1", "--count", "1",
                 "--feed", feed, "--replay", replay,
                 "--curve-server-key", spub,
                 "--curve-secret-key-file", xsec_f],
                capture_output=True, timeout=40)
            r.check("payhook tail with an unlisted key gets nothing",
                    out.returncode != 0 and out.stdout == b"",
                    (out.returncode, out.stdout[:100]))
            r.check("no secret key in the service log",
                    read_key(ssec_f) not in svc.log())
        finally:
            for c in (good, bad, plain):
                c.close()
    finally:
        svc.cleanup()


def test_half_configured_curve_is_a_config_error(r):
    svc = phtest.Service()
    try:
        _, _, sec = keygen(svc.tmp, "server")
        svc.__init__(extra={"curve_secret_key_file": sec}, tmp=svc.tmp)
        svc.own_tmp = True
        p = subprocess.run([phtest.BIN, "serve", "-c", svc.conf],
                           capture_output=True, timeout=20)
        r.check("curve_secret_key_file alone: exit 2 naming the key",
                p.returncode == 2 and b"curve_clients_file" in p.stderr,
                (p.returncode, p.stderr[-300:]))
    finally:
        svc.cleanup()


def main():
    r = phtest.Runner("test_dispatch_curve")
    r.run(test_curve)
    r.run(test_half_configured_curve_is_a_config_error)
    r.done()


if __name__ == "__main__":
    main()
