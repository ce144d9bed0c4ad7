#!/usr/bin/python3
"""test_audit_curve.py: `payhook audit` and `payhook audit verify --replay`
against a service that requires CURVE (curve_secret_key_file and
curve_clients_file): with a listed key the log holds every event and
verifies against the service; with an unlisted key it gets nothing and
writes no event; without keys the verify comparison cannot reach replay
(exit 2). The secret key never appears in any output.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

N = 30


def keygen(tmp, name):
    pub = os.path.join(tmp, name + ".pub")
    sec = os.path.join(tmp, name + ".key")
    p = subprocess.run([phtest.BIN, "keygen", "--public", pub, "--secret",
                        sec], capture_output=True, timeout=10)
    assert p.returncode == 0, p.stderr
    with open(pub) as f:
        return f.read().strip(), sec


def test_curve(r):
    svc = phtest.Service()
    try:
        spub, ssec = keygen(svc.tmp, "server")
        cpub, csec = keygen(svc.tmp, "audit")
        _, xsec = keygen(svc.tmp, "other")
        clients = os.path.join(svc.tmp, "clients")
        with open(clients, "w") as f:
            f.write("%s audit-log\n" % cpub)
        svc.__init__(extra={"curve_secret_key_file": ssec,
                            "curve_clients_file": clients}, tmp=svc.tmp)
        svc.own_tmp = True
        svc.start()
        feed, replay = phtest.dispatch_endpoints(svc)
        st = phtest.post_many(svc, [phtest.webhook(phtest.pay_id(80000 + i))
                                    for i in range(N)])
        r.check("webhooks accepted", all(s == 200 for s in st))
        d = os.path.join(svc.tmp, "audit")
        keys = ["--curve-server-key", spub, "--curve-secret-key-file", csec]
        p = subprocess.run([phtest.BIN, "audit", "--out", d, "--feed", feed,
                            "--replay", replay, "--count", str(N)] + keys,
                           capture_output=True, timeout=30)
        printed = p.stdout + p.stderr
        r.check("listed key: audit holds all %d events" % N,
                p.returncode == 0 and phtest.audit_events(d) == {
                    s: j for s, _, j in phtest.journal_events(svc)},
                (p.returncode, p.stderr[-300:]))
        rc, out, probs, err = phtest.audit_verify(d, "--replay", replay,
                                                  *keys)
        r.check("listed key: verify --replay intact", rc == 0 and
                any("%d events compared" % N in l for l in out),
                (rc, out[-3:], err[-200:]))
        rc, out, probs, err = phtest.audit_verify(d, "--replay", replay)
        r.check("no keys: verify cannot reach replay, exit 2", rc == 2,
                (rc, out[-2:], err[-200:]))

        d2 = os.path.join(svc.tmp, "audit-other")
        p = subprocess.Popen([phtest.BIN, "audit", "--out", d2, "--feed",
                              feed, "--replay", replay,
                              "--curve-server-key", spub,
                              "--curve-secret-key-file", xsec],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(4)
        p.terminate()
        out2, err2 = p.communicate(timeout=20)
        r.check("unlisted key: no event written, exits on SIGTERM",
                p.returncode == 0 and phtest.audit_events(d2) == {},
                (p.returncode, err2[-300:]))
        secrets = []
        for path in (csec, xsec):
            with open(path) as f:
                secrets.append(f.read().strip().encode())
        printed += out2 + err2 + svc.log().encode()
        r.check("the secret keys are never printed",
                not any(s in printed for s in secrets))
    finally:
        svc.cleanup()


def main():
    r = phtest.Runner("test_audit_curve")
    r.run(test_curve)
    r.done()


if __name__ == "__main__":
    main()
