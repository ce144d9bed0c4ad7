"""simharness: start payhook-sim on loopback port 0, talk to its API and
/_sim/ surface, run a recording webhook receiver, count checks.

Python 3 stdlib only (plus jsonschema where a test needs it). Every wait is
bounded; nothing binds a fixed port.
"""

import http.client
import http.server
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time

SIM_BIN = os.environ.get("PAYHOOK_SIM_BIN", "")
REF = os.environ.get("PAYHOOK_REF", "/work/shared/reference")
SRC = os.environ.get("PAYHOOK_SRC", "/work/main")

TEST_KEY = "api_test_0123456789abcdefghijklmnopqrstuv0123456789ab"
LIVE_KEY = "api_live_0123456789abcdefghijklmnopqrstuv0123456789ab"
SECRET = "webhook_test_9v3l0ak1mqkqf2b0j3n1ce4tdo"

LISTEN_RE = re.compile(rb"payhook-sim listening on (\S+):(\d+)")


class Checks:
    """Counts results; finish() prints 'N passed, N failed' and exits."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.t0 = time.monotonic()

    def check(self, cond, what, detail=None):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            msg = "FAIL: %s" % what
            if detail is not None:
                msg += " -- %s" % (detail,)
            print(msg, flush=True)
        return bool(cond)

    def eq(self, got, want, what):
        return self.check(got == want, what, "got %r, want %r" % (got, want))

    def finish(self):
        print("%s: %d passed, %d failed (%.1fs)" % (
            self.name, self.passed, self.failed, time.monotonic() - self.t0))
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        sys.exit(1 if self.failed else 0)


def require_sim():
    if not SIM_BIN or not os.access(SIM_BIN, os.X_OK):
        print("PAYHOOK_SIM_BIN not set or not executable; skipping")
        print("0 passed, 0 failed")
        sys.exit(77)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


def http_request(host, port, method, path, body=None, headers=None,
                 timeout=10.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else (
                body.encode() if isinstance(body, str) else
                json.dumps(body).encode())
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


class Sim:
    """A running payhook-sim. Use as a context manager."""

    def __init__(self, webhook_url=None, time_scale=None, extra=None,
                 keys=(TEST_KEY, LIVE_KEY), secret=SECRET):
        require_sim()
        self.dir = tempfile.TemporaryDirectory(prefix="simtest-")
        self.keyfile = os.path.join(self.dir.name, "keys")
        with open(self.keyfile, "w") as f:
            f.write("\n".join(keys) + "\n")
        self.secretfile = os.path.join(self.dir.name, "secret")
        with open(self.secretfile, "w") as f:
            f.write(secret + "\n")
        self.stderr_path = os.path.join(self.dir.name, "stderr")
        args = [SIM_BIN, "--listen", "127.0.0.1:0",
                "--api-key-file", self.keyfile, "--log-level", "warn"]
        if webhook_url:
            args += ["--webhook-url", webhook_url,
                     "--signing-secret-file", self.secretfile]
        if time_scale is not None:
            args += ["--time-scale", str(time_scale)]
        args += list(extra or [])
        self.args = args
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=self.stderr)
        self.host, self.port = self._read_addr()

    def _read_addr(self):
        deadline = time.monotonic() + 10
        buf = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                m = LISTEN_RE.search(buf)
                if m:
                    return m.group(1).decode(), int(m.group(2))
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("payhook-sim did not print its address: %r %r" %
                           (buf, self.stderr_text()))

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def base(self):
        return "http://%s:%d" % (self.host, self.port)

    def api(self, method, path, body=None, key=TEST_KEY, headers=None,
            timeout=10.0):
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = "Bearer " + key
        return http_request(self.host, self.port, method, path, body, hdrs,
                            timeout)

    def ctl(self, method, path, body=None):
        r = http_request(self.host, self.port, method, "/_sim" + path, body)
        return r

    def create(self, key=TEST_KEY, **fields):
        body = {"amount": 1450, "reference": "ref-1",
                "description": "Pay your council tax",
                "return_url": "https://example.service.gov.uk/done"}
        body.update(fields)
        r = self.api("POST", "/v1/payments", body, key=key)
        if r.status != 201:
            raise RuntimeError("create failed: %r" % r)
        return r.json

    def pay(self, pid, **body):
        return self.ctl("POST", "/payments/%s/card" % pid, body)

    def advance(self, **kw):
        return self.ctl("POST", "/time/advance", kw)

    def webhook_log(self, **query):
        q = "&".join("%s=%s" % kv for kv in query.items())
        r = self.ctl("GET", "/webhooks" + ("?" + q if q else ""))
        return r.json["messages"]

    def stop(self):
        """SIGTERM; returns the exit status (0 expected)."""
        if self.stderr.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()
        self.stderr.close()
        # A sanitizer report (build-asan) fails the test (phtest).
        from phtest import sanitizer_report
        sanitizer_report("payhook-sim", self.stderr_text(),
                         self.proc.returncode)
        if self.proc.returncode != 0:
            print("payhook-sim exited %s; stderr tail:\n%s" % (
                self.proc.returncode, self.stderr_text()[-3000:]))
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        self.dir.cleanup()


class Receiver:
    """Threaded HTTP server on 127.0.0.1:0 that records every POST.

    responder(index, body, headers) -> status (int), or (status, delay_s).
    """

    def __init__(self, responder=None):
        self.lock = threading.Lock()
        self.requests = []
        self.responder = responder or (lambda i, b, h: 200)
        self.active = 0
        self.max_active = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    idx = len(outer.requests)
                    outer.requests.append({
                        "t": time.monotonic(), "body": body,
                        "headers": {k.lower(): v for k, v in
                                    self.headers.items()},
                        "path": self.path})
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    res = outer.responder(idx, body, self.headers)
                    delay = 0
                    if isinstance(res, tuple):
                        res, delay = res
                    if delay:
                        time.sleep(delay)
                    try:
                        self.send_response(res)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    except OSError:
                        pass
                finally:
                    with outer.lock:
                        outer.active -= 1

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/webhooks/govuk-pay" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def by_event(self, payment_id=None):
        out = []
        for r in self.snapshot():
            try:
                j = json.loads(r["body"])
            except ValueError:
                continue
            if payment_id is None or j.get("resource_id") == payment_id:
                out.append((j, r))
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_for(fn, timeout=10.0, interval=0.02):
    """Poll fn() until truthy; returns its last value."""
    deadline = time.monotonic() + timeout
    v = fn()
    while not v and time.monotonic() < deadline:
        time.sleep(interval)
        v = fn()
    return v


def openssl_hmac(key, body):
    """Pay-Signature computed by an independent implementation."""
    out = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", key],
                         input=body, stdout=subprocess.PIPE, check=True,
                         timeout=10).stdout.decode()
    return out.strip().split()[-1]


def load_webhook_schema():
    """schemas/govuk_pay_webhook.json and a validator, or (None, reason)."""
    path = os.path.join(SRC, "schemas", "govuk_pay_webhook.json")
    try:
        import jsonschema
    except ImportError:
        return None, "python3-jsonschema not installed"
    try:
        with open(path) as f:
            schema = json.load(f)
    except (OSError, ValueError) as e:
        return None, "%s: %s" % (path, e)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema), None
