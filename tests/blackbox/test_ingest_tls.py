#!/usr/bin/python3
"""test_ingest_tls.py: the public listener over TLS (tls_cert_file and
tls_key_file). A CA and a server certificate for 127.0.0.1 (IP SAN) are made
with the openssl CLI; webhooks over TLS 1.2 and 1.3, verified against the CA,
are accepted; TLS 1.1 and 1.0 are refused; plain HTTP on the TLS port stores
nothing; a key that does not match the certificate, a missing or non-PEM
certificate fail start-up with exit 2 and one line naming the key.
Prints "tls: N passed, N failed"."""
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phtest import (BIN, SECRET, Runner, Service, integrity_check,  # noqa
                    metric, pay_id, raw_exchange, sign,
                    signed_request_bytes, wait_for, webhook)

PATH = "/webhooks/govuk-pay"
# TLS 1.0/1.1 are deprecated in Python: using them on purpose here.
warnings.filterwarnings("ignore", category=DeprecationWarning)
_n = [0]


def fresh_id():
    _n[0] += 1
    return pay_id(0xA000 + _n[0])


def openssl(*args, cwd=None):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args),
                                               p.stderr.decode()[-500:]))
    return p


def make_pki(d):
    """CA, server cert for IP 127.0.0.1 signed by it, and a stray key."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=payhook test CA", "-keyout", "ca.key", "-out",
            "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj",
            "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr",
            cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
            "ca.key", "-CAcreateserial", "-days", "2", "-out", "server.pem",
            "-extfile", "ext.cnf", cwd=d)
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
            "rsa_keygen_bits:2048", "-out", "other.key", cwd=d)
    for k in ("server.key", "other.key", "ca.key"):
        os.chmod(os.path.join(d, k), 0o600)
    return {k: os.path.join(d, k) for k in (
        "ca.pem", "server.pem", "server.key", "other.key")}


def client_ctx(ca, version=None):
    ctx = ssl.create_default_context(cafile=ca)
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def tls_post(port, ctx, body, secret=SECRET):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                       timeout=10)
    try:
        conn.request("POST", PATH, body=body, headers={
            "Content-Type": "application/json",
            "Pay-Signature": sign(body, secret)})
        resp = conn.getresponse()
        return resp.status, resp.read(), conn.sock.version()
    finally:
        conn.close()


def old_tls_refused(r, port, ca, version, flag):
    """TLS 1.1 / 1.0 must be refused by the server. Try Python's ssl first
    (with SECLEVEL=0 so the local client is willing); if the local client
    refuses to even offer it, fall back to `openssl s_client`."""
    label = "TLS 1.1" if flag == "-tls1_1" else "TLS 1.0"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    client_can = True
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = version
        ctx.maximum_version = version
    except (ValueError, ssl.SSLError):
        client_can = False
    if client_can:
        # control: the local client really can speak it (to a Python server)
        client_can = local_client_speaks(version)
    if client_can:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as t:
                got = t.version()
            r.check("%s refused by the server" % label, False,
                    "handshake succeeded with %s" % got)
        except ssl.SSLError as e:
            msg = str(e)
            r.check("%s refused by the server (%s)" % (label, e.reason),
                    "PROTOCOL_VERSION" in msg.upper() or
                    "UNSUPPORTED_PROTOCOL" in msg.upper() or
                    "ALERT" in msg.upper(), msg)
        except (ConnectionResetError, BrokenPipeError) as e:
            r.check("%s refused by the server (reset)" % label, True)
        finally:
            sock.close()
        return
    if shutil.which("openssl") is None:
        print("skip %s check: local client cannot offer it and no openssl "
              "CLI" % label)
        return
    p = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, flag,
         "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile", ca],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, timeout=10)
    out = p.stdout.decode("utf-8", "replace")
    if "no protocols available" in out:
        print("skip %s check: the local OpenSSL refuses to offer it" % label)
        return
    r.check("%s refused by the server (openssl s_client)" % label,
            p.returncode != 0 and ("alert protocol version" in out or
                                   "unsupported protocol" in out or
                                   "Cipher is (NONE)" in out), out[-400:])


def local_client_speaks(version):
    """Can this Python/OpenSSL negotiate `version` at all? (loopback)"""
    try:
        d = tempfile.mkdtemp(prefix="payhook-tls-ctl-")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                "1", "-subj", "/CN=127.0.0.1", "-keyout", "k.pem", "-out",
                "c.pem", "-addext", "subjectAltName=IP:127.0.0.1", cwd=d)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        sctx.minimum_version = version
        sctx.maximum_version = version
        sctx.load_cert_chain(os.path.join(d, "c.pem"),
                             os.path.join(d, "k.pem"))
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        cctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        cctx.minimum_version = version
        cctx.maximum_version = version
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        import threading
        res = {}

        def serve():
            c, _ = ls.accept()
            try:
                with sctx.wrap_socket(c, server_side=True) as t:
                    res["v"] = t.version()
            except Exception as e:
                res["e"] = e
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        s = socket.create_connection(ls.getsockname(), timeout=5)
        try:
            with cctx.wrap_socket(s) as t:
                ok = t.version() is not None
        except Exception:
            ok = False
        th.join(5)
        ls.close()
        shutil.rmtree(d, ignore_errors=True)
        return ok
    except Exception:
        return False


def start_fail(r, name, extra, key_name, secrets_text=()):
    """Start-up must fail with exit 2 and one stderr line naming key."""
    s = Service(extra)
    try:
        p = subprocess.run([BIN, "serve", "-c", s.conf], env=s.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10)
        err = p.stderr.decode("utf-8", "replace")
        lines = [x for x in err.splitlines() if x.strip()]
        r.check("%s: exit 2" % name, p.returncode == 2,
                "rc=%s %r" % (p.returncode, err[-300:]))
        r.check("%s: exactly one line on stderr" % name, len(lines) == 1,
                repr(lines))
        r.check("%s: the line names %s" % (name, key_name),
                lines and key_name in lines[0], repr(lines))
        for i, t in enumerate(secrets_text):
            r.check("%s: no key material in the output (%d)" % (name, i),
                    t not in err and t not in p.stdout.decode("latin-1"))
        c = subprocess.run([BIN, "serve", "-c", s.conf, "--check-config"],
                           env=s.env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        r.check("%s: --check-config also exits 2" % name,
                c.returncode == 2, "rc=%s" % c.returncode)
    finally:
        s.cleanup()


def key_body(path):
    with open(path) as f:
        lines = [x for x in f.read().splitlines() if "-----" not in x]
    return lines[3] if len(lines) > 3 else lines[0]


def main():
    r = Runner("tls")
    if shutil.which("openssl") is None:
        print("skip: no openssl CLI")
        sys.exit(77)
    d = tempfile.mkdtemp(prefix="payhook-tls-")
    try:
        pki = make_pki(d)
        s = Service({"tls_cert_file": pki["server.pem"],
                     "tls_key_file": pki["server.key"]})
        try:
            s.start()
            r.check("listening line says tls=on",
                    s.listening.get("tls") == "on", repr(s.listening))
            ca = pki["ca.pem"]
            stored = []
            for label, ver, want in (
                    ("TLS 1.3", ssl.TLSVersion.TLSv1_3, "TLSv1.3"),
                    ("TLS 1.2", ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                    ("default client", None, "TLSv1.3")):
                mid = fresh_id()
                st, body, got = tls_post(s.port, client_ctx(ca, ver),
                                         webhook(mid))
                r.check("%s: 200 accepted" % label, st == 200 and
                        body == b'{"status":"accepted"}', "%s %r" % (st, body))
                r.check("%s: negotiated %s" % (label, want), got == want,
                        repr(got))
                r.check("%s: webhook stored" % label, s.rows(
                    "SELECT 1 FROM webhooks WHERE message_id = ?", (mid,)))
                stored.append(mid)
            # keep-alive over TLS
            ctx = client_ctx(ca)
            conn = http.client.HTTPSConnection("127.0.0.1", s.port,
                                               context=ctx, timeout=10)
            try:
                codes = []
                for i in range(3):
                    mid = fresh_id()
                    b = webhook(mid)
                    conn.request("POST", PATH, body=b, headers={
                        "Content-Type": "application/json",
                        "Pay-Signature": sign(b)})
                    resp = conn.getresponse()
                    resp.read()
                    codes.append(resp.status)
                    stored.append(mid)
                r.check("3 requests on one TLS connection", codes ==
                        [200] * 3, repr(codes))
            finally:
                conn.close()
            # errors over TLS are the same as in plain
            mid = fresh_id()
            st, body, _ = tls_post(s.port, client_ctx(ca), webhook(mid),
                                   secret="webhook_test_wrong_secret_1")
            r.check("TLS: wrong signature 401, nothing stored", st == 401 and
                    not s.rows("SELECT 1 FROM webhooks WHERE message_id = ?",
                               (mid,)), "%s %r" % (st, body))
            # the certificate is checked by name: a client expecting another
            # name refuses it (so the cert really is the one we made)
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            try:
                client_ctx(ca).wrap_socket(sock,
                                           server_hostname="example.com")
                r.check("cert for 127.0.0.1 is not valid for example.com",
                        False)
            except ssl.SSLCertVerificationError:
                r.check("cert for 127.0.0.1 is not valid for example.com",
                        True)
            finally:
                sock.close()
            old_tls_refused(r, s.port, ca, ssl.TLSVersion.TLSv1_1, "-tls1_1")
            old_tls_refused(r, s.port, ca, ssl.TLSVersion.TLSv1, "-tls1")
            # plain HTTP on the TLS port: nothing stored, no 2xx
            mid = fresh_id()
            buf, closed = raw_exchange(s.port, signed_request_bytes(
                webhook(mid)), timeout=3)
            r.check("plain HTTP to the TLS port: no HTTP 2xx",
                    not buf.startswith(b"HTTP/1.1 2"), repr(buf[:100]))
            r.check("plain HTTP to the TLS port: connection closed", closed)
            r.check("plain HTTP to the TLS port: nothing stored", not s.rows(
                "SELECT 1 FROM webhooks WHERE message_id = ?", (mid,)))
            # a TCP client that never starts the handshake is cut off
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            sock.close()
            mid = fresh_id()
            st, body, _ = tls_post(s.port, client_ctx(ca), webhook(mid))
            r.check("TLS still serves after the broken clients", st == 200)
            stored.append(mid)
            r.check("all TLS webhooks in the journal", all(s.rows(
                "SELECT 1 FROM webhooks WHERE message_id = ?", (m,))
                for m in stored))
            r.check("connections released", wait_for(
                lambda: metric(s.metrics(),
                               "payhook_http_connections_active") == 0, 5))
            r.check("journal integrity ok", integrity_check(s) == ["ok"])
            r.check("log has no key material",
                    key_body(pki["server.key"]) not in s.log())
            rc = s.stop()
            r.check("SIGTERM: exit 0", rc == 0, repr(rc))
        finally:
            s.cleanup()

        # start-up failures
        kb = [key_body(pki["server.key"]), key_body(pki["other.key"])]
        start_fail(r, "key does not match the certificate",
                   {"tls_cert_file": pki["server.pem"],
                    "tls_key_file": pki["other.key"]}, "tls_key_file", kb)
        start_fail(r, "certificate file missing",
                   {"tls_cert_file": os.path.join(d, "nope.pem"),
                    "tls_key_file": pki["server.key"]}, "tls_cert_file", kb)
        start_fail(r, "certificate file is a key, not a certificate",
                   {"tls_cert_file": pki["other.key"],
                    "tls_key_file": pki["server.key"]}, "tls_cert_file", kb)
        start_fail(r, "key file missing",
                   {"tls_cert_file": pki["server.pem"],
                    "tls_key_file": os.path.join(d, "nope.key")},
                   "tls_key_file", kb)
        start_fail(r, "key file is the certificate",
                   {"tls_cert_file": pki["server.pem"],
                    "tls_key_file": pki["server.pem"]}, "tls_key_file", kb)
        start_fail(r, "certificate without key",
                   {"tls_cert_file": pki["server.pem"]}, "tls_key_file", kb)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    r.done()


if __name__ == "__main__":
    main()
