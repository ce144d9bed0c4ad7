"""phtest: black-box harness for payhook tests (Python 3 stdlib only).

Starts the real `payhook serve` binary with a temporary state directory and
config on loopback (port 0; the bound ports are read from its "listening" log
line), signs and sends webhooks over real HTTP, and reads the journal with
sqlite3. Tests print "N passed, N failed" and exit non-zero on failure.
"""
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.environ.get("PAYHOOK_SRC", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
REF = os.environ.get("PAYHOOK_REF", os.path.join(SRC, "..", "shared",
                                                  "reference"))
BIN = os.environ.get("PAYHOOK_BIN", os.path.join(SRC, "build", "payhook"))
SIM_BIN = os.environ.get("PAYHOOK_SIM_BIN",
                         os.path.join(os.path.dirname(BIN), "sim",
                                      "payhook-sim"))
EXAMPLES = os.path.join(REF, "webhook-examples")
SECRET = "webhook_test_9v3l0ak1mqkqf2b0j3n1ce4tdo"
SECRET2 = "webhook_test_0a1b2c3d4e5f6g7h8i9j0k1l2m"


def example_body(name="constructed-card_payment_captured.body.json"):
    with open(os.path.join(EXAMPLES, name), "rb") as f:
        return f.read()


def sign(body, secret=SECRET):
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


ALPHABET = "0123456789abcdefghijklmnopqrstuv"


def pay_id(n):
    """A deterministic 26-char id of GOV.UK Pay's alphabet for integer n."""
    out = []
    for _ in range(26):
        out.append(ALPHABET[n % 32])
        n //= 32
    return "".join(reversed(out))


def webhook(message_id, payment_id=None, event_type="card_payment_captured",
            amount=5000, status="success"):
    """A compact webhook body shaped like the constructed example."""
    base = json.loads(example_body())
    payment_id = payment_id or pay_id(hash(message_id) & (2**120 - 1))
    base["webhook_message_id"] = message_id
    base["resource_id"] = payment_id
    base["event_type"] = event_type
    base["resource"]["payment_id"] = payment_id
    base["resource"]["amount"] = amount
    base["resource"]["state"]["status"] = status
    return json.dumps(base, separators=(",", ":")).encode()


class Service:
    """One `payhook serve` process with its own temp dir."""

    def __init__(self, extra=None, secrets=(SECRET,), env=None, tmp=None,
                 args=()):
        self.tmp = tmp or tempfile.mkdtemp(prefix="payhook-test-")
        self.own_tmp = tmp is None
        self.secret_file = os.path.join(self.tmp, "signing-secret")
        self.write_secrets(secrets)
        self.state_dir = os.path.join(self.tmp, "state")
        self.conf = os.path.join(self.tmp, "payhook.conf")
        cfg = {
            "listen": "127.0.0.1:0",
            "admin_listen": "127.0.0.1:0",
            "signing_secret_file": self.secret_file,
            "state_dir": self.state_dir,
            "cross_check": "off",
            "publish_endpoint": "tcp://127.0.0.1:*",
            "replay_endpoint": "tcp://127.0.0.1:*",
        }
        cfg.update(extra or {})
        with open(self.conf, "w") as f:
            for k, v in cfg.items():
                if v is not None:
                    f.write("%s = %s\n" % (k, v))
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.args = list(args)
        self.proc = None
        self.log_lines = []
        self.port = self.admin_port = None
        self.listening = {}

    def write_secrets(self, secrets):
        with open(self.secret_file, "w") as f:
            f.write("".join(s + "\n" for s in secrets))
        os.chmod(self.secret_file, 0o600)

    def start(self, timeout=10):
        self.log_lines = []
        self.proc = subprocess.Popen(
            [BIN, "serve", "-c", self.conf] + self.args, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("payhook did not start:\n" + self.log())
        return self

    def _read_log(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log_lines.append(line)
            if "event=listening" in line:
                m = dict(re.findall(r"(\w+)=(\S+)", line))
                self.listening = m
                self.port = int(m["webhooks"].rsplit(":", 1)[1])
                self.admin_port = int(m["admin"].rsplit(":", 1)[1])
                self._ready.set()

    def log(self):
        return "\n".join(self.log_lines)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(2)
        self.proc = None
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        self.stop()
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # --- HTTP -------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, port=None,
                timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port,
                                          timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def post(self, body, signature=None, secret=SECRET, path=None,
             content_type="application/json", headers=None):
        h = {"Content-Type": content_type} if content_type else {}
        if signature is None:
            signature = sign(body, secret)
        if signature is not False:
            h["Pay-Signature"] = signature
        h.update(headers or {})
        return self.request("POST", path or "/webhooks/govuk-pay", body, h)

    def admin(self, path):
        return self.request("GET", path, port=self.admin_port)

    def metrics(self):
        status, _, body = self.admin("/metrics")
        assert status == 200, status
        return parse_prometheus(body.decode())

    # --- journal ----------------------------------------------------------
    def db(self):
        path = os.path.join(self.state_dir, "journal.db")
        return sqlite3.connect("file:%s?mode=ro" % path, uri=True,
                               timeout=5)

    def rows(self, sql="SELECT message_id, state FROM webhooks", args=()):
        with contextlib.closing(self.db()) as db:
            return db.execute(sql, args).fetchall()


_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')


def parse_prometheus(text):
    """Strict-enough parser of the Prometheus text format.

    Returns {(name, frozenset(labels)): value}; raises ValueError on any
    malformed line, on samples without a preceding TYPE, or on families
    declared twice.
    """
    samples, typed, helped = {}, {}, set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            if name in helped:
                raise ValueError("line %d: HELP twice for %s" % (n, name))
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in (
                    "counter", "gauge", "histogram", "summary", "untyped"):
                raise ValueError("line %d: bad TYPE" % n)
            if parts[2] in typed:
                raise ValueError("line %d: TYPE twice for %s" % (n, parts[2]))
            typed[parts[2]] = parts[3]
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("line %d: malformed sample: %r" % (n, line))
        name, labels = m.group(1), {}
        if m.group(3):
            for part in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                   m.group(3)):
                labels[part[0]] = part[1]
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in typed and family not in typed:
            raise ValueError("line %d: %s has no TYPE" % (n, name))
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ValueError("line %d: duplicate sample %s" % (n, name))
        samples[key] = float(m.group(4))
    return samples


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


class Runner:
    """Collects named checks and prints the closing line."""

    def __init__(self, title):
        self.title = title
        self.passed = self.failed = 0
        self.skipped = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print("ok   %s" % name)
        else:
            self.failed += 1
            print("FAIL %s %s" % (name, detail))
        sys.stdout.flush()
        return cond

    def run(self, fn, *args):
        name = fn.__name__
        try:
            fn(self, *args)
        except Exception as e:  # a crashed test is a failed test
            import traceback
            traceback.print_exc()
            self.check(name + " (raised)", False, repr(e))

    def done(self):
        print("%s: %d passed, %d failed" % (self.title, self.passed,
                                            self.failed))
        sys.exit(1 if self.failed or self.passed == 0 else 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


# --- additions for the ingest tests (raw sockets, journal checks) ----------
def raw_exchange(port, data, timeout=3.0, shut_wr=False, host="127.0.0.1",
                 chunks=None, pause=0.0):
    """Send raw bytes (or a list of chunks with `pause` seconds between
    them) on a fresh TCP connection and read until the peer closes or
    `timeout` passes with nothing new. Returns (bytes_read, closed) where
    closed is True when the server closed (EOF or reset)."""
    s = socket.create_connection((host, port), timeout=timeout)
    buf, closed = b"", False
    try:
        try:
            for i, part in enumerate(chunks if chunks is not None
                                     else [data]):
                if i and pause:
                    time.sleep(pause)
                s.sendall(part)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        s.settimeout(timeout)
        while not closed:
            try:
                got = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not got:
                closed = True
                break
            buf += got
        if closed and not buf:
            # a reset may hide a reply that was already queued
            try:
                s.settimeout(0.2)
                buf += s.recv(65536)
            except OSError:
                pass
    finally:
        s.close()
    return buf, closed


def parse_http_responses(buf, head_only=()):
    """Split a byte stream into HTTP/1.x responses.

    Returns a list of (status, headers, body) with header names lower-cased;
    raises ValueError on anything that is not a well-formed response
    sequence. `head_only` lists indexes of responses to HEAD requests (no
    body even with a Content-Length)."""
    out = []
    while buf:
        if buf.startswith(b"HTTP/1.1 100 ") or buf.startswith(
                b"HTTP/1.0 100 "):
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                raise ValueError("truncated 100 Continue")
            buf = buf[end + 4:]
            continue
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            raise ValueError("truncated response head: %r" % buf[:200])
        head, rest = buf[:end].decode("latin-1"), buf[end + 4:]
        lines = head.split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3})(?: .*)?$", lines[0])
        if not m:
            raise ValueError("bad status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if not sep:
                raise ValueError("bad header line %r" % line)
            headers[k.strip().lower()] = v.strip()
        if len(out) in head_only:
            n = 0
        elif "content-length" in headers:
            n = int(headers["content-length"])
        else:
            n = len(rest)       # delimited by close
        if len(rest) < n:
            raise ValueError("truncated body (%d < %d)" % (len(rest), n))
        out.append((int(m.group(1)), headers, rest[:n]))
        buf = rest[n:]
    return out


def http_request_bytes(method, path, body=b"", headers=None,
                       version="HTTP/1.1", content_length=True):
    """Build one request's bytes; headers is a list of (name, value)."""
    lines = ["%s %s %s" % (method, path, version), "Host: 127.0.0.1"]
    for k, v in headers or []:
        lines.append("%s: %s" % (k, v))
    if content_length and body is not None:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def signed_request_bytes(body, path="/webhooks/govuk-pay", secret=SECRET,
                         extra=None, connection=None):
    h = [("Content-Type", "application/json"),
         ("Pay-Signature", sign(body, secret))]
    if connection:
        h.append(("Connection", connection))
    h += list(extra or [])
    return http_request_bytes("POST", path, body, h)


def quarantine_id(body):
    return "q-" + hashlib.sha256(body).hexdigest()


def integrity_check(service):
    """PRAGMA integrity_check of the service's journal (read-only)."""
    return [r[0] for r in service.rows("PRAGMA integrity_check")]


def journal_ids(service):
    """{message_id: count} over the whole journal."""
    out = {}
    for (mid,) in service.rows("SELECT message_id FROM webhooks"):
        out[mid] = out.get(mid, 0) + 1
    return out


def metrics_delta(before, after):
    """{key: after - before} for every sample whose value changed."""
    keys = set(before) | set(after)
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys
            if after.get(k, 0.0) != before.get(k, 0.0)}


def metric_key(name, **labels):
    return (name, frozenset(labels.items()))
