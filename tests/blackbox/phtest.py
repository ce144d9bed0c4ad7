"""phtest: black-box harness for payhook tests (Python 3 stdlib only).

Starts the real `payhook serve` binary with a temporary state directory and
config on loopback (port 0; the bound ports are read from its "listening" log
line), signs and sends webhooks over real HTTP, and reads the journal with
sqlite3. Tests print "N passed, N failed" and exit non-zero on failure.
"""
import atexit
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

# --- sanitizer and valgrind reports (scripts/test.sh) -----------------------
# A report from ASan/UBSan/LSan (the build-asan binaries) or from valgrind
# (PAYHOOK_VALGRIND=1) in a process this module started fails the test even
# when the test itself never looks at the exit status: it is printed when
# seen and the test script then exits 1 (see _report_findings below).
VALGRIND = os.environ.get("PAYHOOK_VALGRIND", "") not in ("", "0")
VALGRIND_BIN = os.environ.get("PAYHOOK_VALGRIND_BIN", "valgrind")
VALGRIND_EXIT = 99
# Time factor for start-up and shutdown waits under valgrind (~20-50x).
SLOW = float(os.environ.get("PAYHOOK_SLOW", "10" if VALGRIND else "1"))
SANITIZER_FINDINGS = []
_SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|"
    r"runtime error: |SUMMARY: UndefinedBehaviorSanitizer|"
    r"WARNING: ThreadSanitizer|ERROR: MemorySanitizer")


def sanitizer_report(what, text, rc=None, valgrind_log=None):
    """Record (and print) any sanitizer or valgrind report about process
    `what` found in its stderr `text`, its exit status `rc` and, under
    valgrind, its log file. Returns the list of problems found."""
    problems = []
    lines = text.splitlines() if text else []
    hits = [i for i, l in enumerate(lines) if _SANITIZER_RE.search(l)]
    if hits:
        problems.append("sanitizer report:\n" + "\n".join(
            lines[max(0, hits[0] - 2):hits[0] + 40]))
    if valgrind_log is not None:
        vg = ""
        try:
            with open(valgrind_log, errors="replace") as f:
                vg = f.read()
        except OSError:
            pass
        m = re.search(r"ERROR SUMMARY: (\d+) errors", vg)
        lost = re.search(r"definitely lost: ([\d,]+) bytes", vg)
        if rc == VALGRIND_EXIT or (m and int(m.group(1)) > 0) or (
                lost and lost.group(1) != "0"):
            problems.append("valgrind (rc %s):\n%s" % (rc, vg[-6000:]))
        elif rc is not None and rc >= 0 and m is None:
            problems.append("valgrind wrote no summary (rc %s):\n%s" % (
                rc, vg[-3000:]))
    for p in problems:
        SANITIZER_FINDINGS.append((what, p))
        print("SANITIZER/VALGRIND FINDING in %s: %s" % (what, p))
        sys.stdout.flush()
    return problems


def _report_findings():
    if SANITIZER_FINDINGS:
        print("FAIL %d sanitizer/valgrind finding(s) in started processes: "
              "%s" % (len(SANITIZER_FINDINGS),
                      ", ".join(w for w, _ in SANITIZER_FINDINGS)))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


atexit.register(_report_findings)


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

    def command(self):
        """argv that starts the service: [BIN, serve, ...], wrapped in
        valgrind memcheck when PAYHOOK_VALGRIND=1 (its report goes to
        self.valgrind_log, one file per start)."""
        argv = [BIN, "serve", "-c", self.conf] + self.args
        self.valgrind_log = None
        if VALGRIND:
            self.starts = getattr(self, "starts", 0) + 1
            self.valgrind_log = os.path.join(
                self.tmp, "valgrind.%d.log" % self.starts)
            argv = [VALGRIND_BIN, "--error-exitcode=%d" %
                    VALGRIND_EXIT, "--leak-check=full",
                    "--errors-for-leak-kinds=definite",
                    "--show-leak-kinds=definite", "--num-callers=30",
                    "--log-file=" + self.valgrind_log] + argv
        return argv

    def start(self, timeout=10):
        self.log_lines = []
        timeout *= SLOW
        self.proc = subprocess.Popen(
            self.command(), env=self.env,
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
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(2 * SLOW)
        self.proc = None
        # A report only counts from a process that ran its exit path:
        # after SIGKILL neither LSan nor valgrind get to print one.
        sanitizer_report("payhook serve (%s)" % self.tmp, self.log(),
                         rc, self.valgrind_log if rc != -signal.SIGKILL
                         else None)
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


def hget(headers, name):
    """The value of header name (any case) in a {name: value} dict."""
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def check_503(r, name, resp):
    """resp (status, headers, body) is the journal-unavailable answer:
    503, a positive Retry-After, a JSON object with only "error"."""
    st, h, b = resp
    try:
        obj = json.loads(b)
    except ValueError:
        obj = None
    ra = hget(h, "Retry-After")
    r.check("%s: 503 + Retry-After + JSON error" % name, st == 503 and
            ra is not None and ra.isdigit() and int(ra) > 0 and
            isinstance(obj, dict) and list(obj) == ["error"] and
            (hget(h, "Content-Type") or "").startswith("application/json"),
            "%s %r %r" % (st, ra, b[:100]))


def readyz(s):
    """(status, JSON object) of the service's /readyz, or ("timeout", {})."""
    try:
        st, h, b = s.request("GET", "/readyz", port=s.admin_port, timeout=3)
    except OSError as e:
        return "timeout", {"error": repr(e)}
    try:
        return st, json.loads(b)
    except ValueError:
        return st, {}


def healthz(s):
    """The status of the service's /healthz, or the error that stopped it."""
    try:
        return s.request("GET", "/healthz", port=s.admin_port, timeout=3)[0]
    except OSError as e:
        return repr(e)


def preload(shim):
    """LD_PRELOAD for a fault-injection shim (tests/fault). A sanitizer
    build's runtime must come first in the library list, so it is named
    before the shim."""
    libs = [shim]
    try:
        out = subprocess.run(["ldd", BIN], stdout=subprocess.PIPE,
                             timeout=10).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        out = ""
    m = re.search(r"^\s*libasan\.so\S*\s+=>\s+(\S+)", out, re.M)
    if m:
        libs.insert(0, m.group(1))
    return " ".join(libs)


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


_LABELS = re.compile(
    r'^[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*,?$')


def parse_prometheus_strict(text):
    """parse_prometheus plus what it lets through: every label block must be
    name="value" pairs (escapes \\\\ \\" \\n only) with no name twice,
    histogram buckets need an le label, and the text ends with a newline."""
    if text and not text.endswith("\n"):
        raise ValueError("text does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("line %d: malformed sample: %r" % (n, line))
        block = m.group(3)
        if m.group(2) is not None and block != "":
            if not _LABELS.match(block):
                raise ValueError("line %d: malformed labels: %r" % (n, line))
            names = re.findall(r'(?:^|,)([a-zA-Z_][a-zA-Z0-9_]*)="', block)
            if len(names) != len(set(names)):
                raise ValueError("line %d: label twice: %r" % (n, line))
            if m.group(1).endswith("_bucket") and "le" not in names:
                raise ValueError("line %d: bucket without le" % n)
        elif m.group(1).endswith("_bucket"):
            raise ValueError("line %d: bucket without le" % n)
    return parse_prometheus(text)


def _runner_skip(self, name, why):
    """Record a part that could not run here (printed, not a failure)."""
    self.skipped += 1
    print("skip %s: %s" % (name, why))
    sys.stdout.flush()


def _runner_done_skippable(self):
    """Like done(), but exit 77 (ctest SKIP_RETURN_CODE) when something was
    skipped and nothing failed, so a skipped part is not reported as a
    pass."""
    if self.skipped and not self.failed:
        print("%s: %d passed, %d failed" % (self.title, self.passed,
                                            self.failed))
        print("%s: %d part(s) skipped" % (self.title, self.skipped))
        sys.exit(77)
    self.done()


Runner.skip = _runner_skip
Runner.done_skippable = _runner_done_skippable


# --- additions for the dispatch tests (ZeroMQ feed/replay, event schema) ---
# python3-zmq and python3-jsonschema are imported lazily so the rest of this
# module stays stdlib-only.
EVENT_SCHEMA = os.path.join(SRC, "schemas", "payment_event.v1.json")


def dispatch_endpoints(service):
    """(feed, replay) ZeroMQ endpoints a started Service bound (tcp://...:*
    resolved): from the "listening" line, else the publisher_started line."""
    for f, r in (("feed", "replay"), ("publish", "replay")):
        if service.listening.get(f) and service.listening.get(r):
            return service.listening[f], service.listening[r]
    for line in service.log_lines:
        if "event=publisher_started" in line:
            m = dict(re.findall(r"(\w+)=(\S+)", line))
            return m["feed"], m["replay"]
    raise RuntimeError("no ZeroMQ endpoints in the log:\n" + service.log())


def event_validator():
    """A jsonschema validator for schemas/payment_event.v1.json, plus one
    for its $defs/heartbeat: (events, heartbeats)."""
    import jsonschema
    with open(EVENT_SCHEMA) as f:
        schema = json.load(f)
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    hb = dict(schema["$defs"]["heartbeat"])
    hb["$defs"] = schema["$defs"]
    return cls(schema), cls(hb)


def journal_events(service):
    """[(seq, topic, json_text)] from the journal's events table, by seq."""
    return [(s, t, j.decode() if isinstance(j, bytes) else j) for s, t, j in
            service.rows("SELECT seq, topic, json FROM events ORDER BY seq")]


def schema_errors(validator, events):
    """Messages for every (seq, topic, json_text) that fails the schema or
    whose topic frame differs from its JSON topic / seq field."""
    out = []
    for seq, topic, text in events:
        ev = json.loads(text)
        for e in validator.iter_errors(ev):
            out.append("seq %s: %s at %s" % (seq, e.message,
                                              "/".join(map(str, e.path))))
        if ev.get("topic") != topic or ev.get("seq") != seq:
            out.append("seq %s: frame topic %r / json %r seq %r" % (
                seq, topic, ev.get("topic"), ev.get("seq")))
    return out


class ZmqConsumer:
    """A reliable consumer written against docs/consumers.md only: SUB to
    the live feed (subscribed first), DEALER to replay, seq-ordered, gap
    filling from seq jumps and heartbeats. Holds {seq: (topic, json_text)}
    and counts what it had to repair. curve = (server_pub, pub, sec) Z85."""

    def __init__(self, feed, replay, prefix="", start=None, curve=None,
                 rcvhwm=None, rcvbuf=None):
        import zmq
        self.zmq = zmq
        self.ctx = zmq.Context()
        self.feed_ep, self.replay_ep, self.prefix = feed, replay, prefix
        self.curve = curve
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        if rcvhwm is not None:
            self.sub.setsockopt(zmq.RCVHWM, rcvhwm)
        if rcvbuf is not None:
            self.sub.setsockopt(zmq.RCVBUF, rcvbuf)
        self._curve(self.sub)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"heartbeat")
        self.sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self.sub.connect(feed)
        self.dealer = None
        self._new_dealer()
        self.events = {}
        self.order = []
        self.pos = start            # next seq wanted; None: from live tail
        self.head = 0
        self.heartbeats = []
        self.replays = self.gap_fills = self.live = self.dups = 0
        self.conflicts = 0

    def _curve(self, s):
        if self.curve:
            zmq = self.zmq
            s.setsockopt(zmq.CURVE_SERVERKEY, self.curve[0].encode())
            s.setsockopt(zmq.CURVE_PUBLICKEY, self.curve[1].encode())
            s.setsockopt(zmq.CURVE_SECRETKEY, self.curve[2].encode())

    def _new_dealer(self):
        if self.dealer is not None:
            self.dealer.close(0)
        self.dealer = self.ctx.socket(self.zmq.DEALER)
        self.dealer.setsockopt(self.zmq.LINGER, 0)
        # A DEALER with no peer (e.g. its CURVE handshake was denied) blocks
        # on send forever: bound it.
        self.dealer.setsockopt(self.zmq.SNDTIMEO, 2000)
        self._curve(self.dealer)
        self.dealer.connect(self.replay_ep)

    def request(self, frames, timeout=3.0):
        """Raw replay request (list of str/bytes, no delimiter added);
        returns the reply frames as bytes, or None on timeout."""
        try:
            self.dealer.send_multipart([b""] + [
                f if isinstance(f, bytes) else str(f).encode()
                for f in frames])
        except self.zmq.Again:      # no peer to send to: no answer
            self._new_dealer()
            return None
        if not self.dealer.poll(int(timeout * 1000)):
            self._new_dealer()
            return None
        reply = self.dealer.recv_multipart()
        assert reply[0] == b"", reply[:2]
        return reply[1:]

    def replay(self, from_seq, max_count=1000, prefix=None):
        """(head, [(seq, topic, json_text)]) or raises on ERROR/timeout."""
        frames = ["REPLAY", from_seq, max_count]
        if prefix if prefix is not None else self.prefix:
            frames.append(prefix if prefix is not None else self.prefix)
        for _ in range(5):
            reply = self.request(frames)
            if reply is not None:
                break
        else:
            raise RuntimeError("replay did not answer")
        if reply[0] != b"BATCH":
            raise RuntimeError("replay: %r" % reply)
        head, count = int(reply[1]), int(reply[2])
        assert len(reply) == 3 + 2 * count, (len(reply), count)
        out = []
        for i in range(count):
            text = reply[4 + 2 * i].decode()
            out.append((json.loads(text)["seq"], reply[3 + 2 * i].decode(),
                        text))
        return head, out

    def _apply(self, seq, topic, text):
        if self.pos is not None and seq < self.pos:
            self.dups += 1
            if seq in self.events and self.events[seq] != (topic, text):
                self.conflicts += 1     # same seq, other content: a bug
            return
        assert seq not in self.events, seq
        self.events[seq] = (topic, text)
        self.order.append(seq)
        self.pos = seq + 1

    def catch_up(self):
        """Replay from pos until the journal has no more."""
        self.replays += 1
        while True:
            head, batch = self.replay(self.pos)
            for seq, topic, text in batch:
                self._apply(seq, topic, text)
            self.head = max(self.head, head)
            if len(batch) < 1000:
                if self.pos <= head:
                    self.pos = head + 1
                return

    def poll(self, timeout=0.2):
        """Handle at most one feed message; False when none came."""
        if not self.sub.poll(int(timeout * 1000)):
            return False
        topic, body = self.sub.recv_multipart()
        if topic == b"heartbeat":
            hb = json.loads(body)
            self.heartbeats.append(hb)
            self.head = max(self.head, hb["head_seq"])
            if self.pos is None:
                self.pos = hb["head_seq"] + 1
            elif hb["head_seq"] >= self.pos:
                self.gap_fills += 1
                self.catch_up()
            return True
        text = body.decode()
        seq = json.loads(text)["seq"]
        self.live += 1
        if self.pos is None:
            self.pos = seq
        if seq > self.pos:
            self.gap_fills += 1
            self.catch_up()
        self._apply(seq, topic.decode(), text)
        return True

    def run_until(self, pred, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.05)
            if pred(self):
                return True
        return pred(self)

    def holds(self, n):
        """True once seq 1..n are held and the head says nothing more."""
        return len(self.events) >= n and self.pos is not None and \
            self.pos > n and self.head <= n

    def close(self):
        self.sub.close(0)
        self.dealer.close(0)
        self.ctx.term()


def verify_against_journal(service, held):
    """Problems (list of str) comparing {seq: (topic, json)} a consumer
    holds with the journal: same seqs 1..head, same bytes, same topics."""
    journal = journal_events(service)
    problems = []
    seqs = [s for s, _, _ in journal]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append("journal seqs are not 1..%d" % len(seqs))
    if sorted(held) != seqs:
        missing = sorted(set(seqs) - set(held))
        extra = sorted(set(held) - set(seqs))
        problems.append("held %d events, journal %d; missing %s extra %s" % (
            len(held), len(seqs), missing[:10], extra[:10]))
    for seq, topic, text in journal:
        if seq in held and held[seq] != (topic, text):
            problems.append("seq %d differs from the journal" % seq)
    return problems


def post_many(service, bodies, retry_until=None):
    """POST signed bodies over one keep-alive connection (reconnecting on
    errors, as GOV.UK Pay retries); returns the list of statuses. With
    retry_until (a monotonic deadline) a body is re-sent until it gets a
    2xx, re-reading service.port each time (the service may restart)."""
    statuses, conn, port = [], None, None
    for body in bodies:
        while True:
            try:
                if conn is None or port != service.port:
                    if conn is not None:
                        conn.close()
                    port = service.port
                    conn = http.client.HTTPConnection("127.0.0.1", port,
                                                      timeout=5)
                conn.request("POST", "/webhooks/govuk-pay", body, {
                    "Content-Type": "application/json",
                    "Pay-Signature": sign(body)})
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException, TypeError):
                if conn is not None:
                    conn.close()
                conn, status = None, None
            if status is not None and 200 <= status < 300:
                break
            if retry_until is None or time.monotonic() > retry_until:
                break
            time.sleep(0.05)
        statuses.append(status)
    if conn is not None:
        conn.close()
    return statuses


def webhook_at(message_id, payment_id, event_type, created_date,
               status="success", amount=5000):
    """webhook() with the envelope's created_date (when it happened)."""
    body = json.loads(webhook(message_id, payment_id, event_type, amount,
                              status))
    body["created_date"] = created_date
    return json.dumps(body, separators=(",", ":")).encode()


# --- additions for the audit tests (payhook audit, docs/audit.md) ----------
# An independent reading of the audit log format: the canonical form and
# chain are recomputed here in Python, not trusted from the C code.
AUDIT_ZERO = "0" * 64
_AUDIT_EVENT = re.compile(
    rb'^\{"seq":([1-9][0-9]*),"prev":"([0-9a-f]{64})","hash":"([0-9a-f]{64})"'
    rb',"event":(\{.*\})\}$')
_AUDIT_PROBLEM = re.compile(
    r"^(audit-\d{8}\.jsonl):(\d+): seq ([0-9.]+|-): (.*)$")


def audit_files(d):
    """Sorted audit-NNNNNNNN.jsonl names in d."""
    return sorted(f for f in os.listdir(d)
                  if re.match(r"^audit-\d{8}\.jsonl$", f))


def audit_hash(prev, seq=None, event=None, file_no=None, opened=None):
    """SHA-256 hex of a line's canonical form (docs/audit.md)."""
    if event is not None:
        data = prev.encode() + b"\nseq %d\n" % seq + event
    else:
        data = prev.encode() + ("\nfile %d next_seq %d opened %s" % (
            file_no, seq, opened)).encode()
    return hashlib.sha256(data).hexdigest()


def audit_lines(d):
    """[(file, line_no, dict)] for every line: headers as parsed JSON plus
    kind "header"; events as {kind, seq, prev, hash, event (bytes)}; a
    line that parses as neither has kind "bad"."""
    out = []
    for name in audit_files(d):
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        for n, raw in enumerate(data.split(b"\n")[:-1], 1):
            m = _AUDIT_EVENT.match(raw)
            if m:
                out.append((name, n, {
                    "kind": "event", "seq": int(m.group(1)),
                    "prev": m.group(2).decode(), "hash": m.group(3).decode(),
                    "event": m.group(4)}))
                continue
            try:
                h = json.loads(raw)
                h["kind"] = "header" if "audit" in h else "bad"
            except ValueError:
                h = {"kind": "bad"}
            out.append((name, n, h))
    return out


def audit_chain_problems(d):
    """Problems (list of str) found by recomputing the whole chain from the
    zero hash, and the seqs of the events, in order: (problems, seqs)."""
    problems, seqs, prev = [], [], AUDIT_ZERO
    for name, n, l in audit_lines(d):
        where = "%s:%d" % (name, n)
        if l["kind"] == "bad":
            problems.append(where + ": bad line")
            continue
        if l["kind"] == "header":
            h = audit_hash(l["prev"], l["next_seq"], file_no=l["file"],
                           opened=l["opened"])
        else:
            h = audit_hash(l["prev"], l["seq"], l["event"])
            seqs.append(l["seq"])
            if json.loads(l["event"])["seq"] != l["seq"]:
                problems.append(where + ": event seq differs")
        if l["prev"] != prev or l["hash"] != h:
            problems.append(where + ": chain broken")
        prev = h
    return problems, seqs


def audit_events(d):
    """{seq: event_text} held by the log (the last line wins)."""
    return {l["seq"]: l["event"].decode() for _, _, l in audit_lines(d)
            if l["kind"] == "event"}


def audit_verify(d, *args, timeout=60):
    """Run `payhook audit verify d args`: (rc, stdout lines, problems) with
    problems [(file, line, seq_text, what)] parsed from the output."""
    p = subprocess.run([BIN, "audit", "verify", d] + list(args),
                       capture_output=True, timeout=timeout)
    lines = p.stdout.decode().splitlines()
    probs = [m.groups() for m in map(_AUDIT_PROBLEM.match, lines) if m]
    return p.returncode, lines, probs, p.stderr.decode()
