"""xcheck: helpers for the cross-check black-box tests (stdlib only).

Starts payhook-sim (simharness.Sim) with its webhook sender pointed at a
`payhook serve` (phtest.Service) that cross-checks against the same sim,
reads verdicts from the journal, crafts signed webhooks from the sim's own
webhook view, and runs a TLS-terminating proxy (Python ssl) in front of the
sim with a throw-away CA made by the openssl CLI. Loopback only, port 0
wherever the program allows it; every wait is bounded.
"""
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402
import simharness  # noqa: E402

PID_ALPHABET = phtest.ALPHABET


def require_wired():
    """Exit 77 (skip) unless serve wires the cross-check stage."""
    src = os.path.join(phtest.SRC, "cmd", "serve.c")
    try:
        with open(src) as f:
            if "crosscheck_new" in f.read():
                return
    except OSError:
        pass
    print("cmd/serve.c does not start the cross-check yet; skipping")
    print("0 passed, 0 failed")
    sys.exit(77)


def service_for(sim, key=simharness.TEST_KEY, extra=None, base_url=None,
                tmp=None):
    """A payhook Service cross-checking against sim, listening on a free
    port the sim already sends webhooks to (sim must be started with
    webhook_url=service_url(port))."""
    svc_tmp = tmp
    svc = phtest.Service(extra={}, tmp=svc_tmp)
    keyfile = os.path.join(svc.tmp, "api-key")
    write_file(keyfile, key + "\n")
    cfg = {
        "cross_check": "on",
        "api_base_url": base_url or sim.base(),
        "api_key_file": keyfile,
        "api_pool_size": "4",
        "api_rate_limit": "200",
        "api_timeout": "2s",
        "api_connect_timeout": "1s",
        "durability": "process",
    }
    cfg.update(extra or {})
    rewrite_conf(svc, cfg)
    svc.api_key_file = keyfile
    return svc


def rewrite_conf(svc, updates):
    lines = {}
    with open(svc.conf) as f:
        for line in f:
            k, _, v = line.strip().partition(" = ")
            if k:
                lines[k] = v
    lines.update(updates)
    with open(svc.conf, "w") as f:
        for k, v in lines.items():
            if v is not None:
                f.write("%s = %s\n" % (k, v))


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def verdicts(svc):
    """{message_id: row dict} for every journal row."""
    out = {}
    for r in svc.rows("SELECT message_id, resource_id, event_type, state, "
                      "verdict, mismatches, api_status, check_attempts, "
                      "last_error FROM webhooks"):
        out[r[0]] = dict(zip(("message_id", "payment_id", "event_type",
                              "state", "verdict", "mismatches",
                              "api_status", "attempts", "last_error"), r))
    return out


def rows_for(svc, payment_id):
    return [r for r in verdicts(svc).values() if r["payment_id"] == payment_id]


def all_checked(svc, n=None):
    v = verdicts(svc)
    if n is not None and len(v) < n:
        return False
    return all(r["state"] in ("checked", "published") for r in v.values())


def wait_rows(svc, payment_id, count, timeout=20.0, checked=True):
    def ok():
        rs = rows_for(svc, payment_id)
        if len(rs) < count:
            return None
        if checked and not all(r["verdict"] for r in rs):
            return None
        return rs
    return phtest.wait_for(ok, timeout, 0.05)


def sim_webhook_body(sim, payment_id, event_type, message_id,
                     overrides=None):
    """A webhook body built from the sim's own webhook view of a payment."""
    info = sim.ctl("GET", "/payments/%s" % payment_id).json
    resource = dict(info["webhook_resource"])
    resource.update(overrides or {})
    env = {
        "webhook_message_id": message_id,
        "created_date": "2026-11-21T10:00:00.000Z",
        "resource_id": payment_id,
        "api_version": 1,
        "resource_type": "PAYMENT",
        "event_type": event_type,
        "resource": resource,
    }
    return json.dumps(env, separators=(",", ":")).encode()


def message_id(n):
    return phtest.pay_id(0x5eed0000 + n)


def successful_payment(sim, **fields):
    p = sim.create(**fields)
    r = sim.pay(p["payment_id"], card_number="4444333322221111")
    assert r.status in (200, 201, 204), r
    return p["payment_id"]


# --- a TLS-terminating proxy in front of the sim ---------------------------

def make_pki(d):
    """CA, a cert for 127.0.0.1 signed by it, one for the wrong host signed
    by it, and one signed by another CA (openssl CLI)."""
    g = ("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
         "-nodes -days 2")
    s = ("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
         "-nodes")
    script = f"""
set -e
{g} -keyout ca.key -out ca.pem -subj /CN=payhook-bb-ca
{g} -keyout ca2.key -out ca2.pem -subj /CN=payhook-bb-other-ca
printf 'subjectAltName=IP:127.0.0.1\\n' > ok.ext
printf 'subjectAltName=IP:127.0.0.2,DNS:wrong.example\\n' > bad.ext
{s} -keyout ok.key -out ok.csr -subj /CN=api
openssl x509 -req -in ok.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -days 2 -extfile ok.ext -out ok.pem
{s} -keyout wronghost.key -out wronghost.csr -subj /CN=wrong
openssl x509 -req -in wronghost.csr -CA ca.pem -CAkey ca.key \
  -CAcreateserial -days 2 -extfile bad.ext -out wronghost.pem
{s} -keyout wrongca.key -out wrongca.csr -subj /CN=api
openssl x509 -req -in wrongca.csr -CA ca2.pem -CAkey ca2.key \
  -CAcreateserial -days 2 -extfile ok.ext -out wrongca.pem
"""
    subprocess.run(["sh", "-c", script], cwd=d, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)


class TLSProxy:
    """Accepts TLS on 127.0.0.1:0 with cert/key and pipes the plaintext to
    host:port. Counts handshakes that completed."""

    def __init__(self, cert, key, host, port):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(cert, key)
        self.target = (host, port)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handshakes = 0
        self.failed_handshakes = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(10)
            t = self.ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            self.failed_handshakes += 1
            c.close()
            return
        self.handshakes += 1
        try:
            u = socket.create_connection(self.target, timeout=10)
        except OSError:
            t.close()
            return
        t.settimeout(None)

        def pump(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        th = threading.Thread(target=pump, args=(u, t), daemon=True)
        th.start()
        pump(t, u)
        th.join(5)
        t.close()
        u.close()

    def close(self):
        self.closed = True
        self.sock.close()
