#!/usr/bin/python3
"""test_config_errors.py: every broken configuration stops `payhook serve`
with exit 2 and exactly one line on stderr naming the key (or the
environment variable, or the file and line) and what was expected, never the
content of a secret file; `--check-config` agrees with start-up; environment
overrides win over the file; `payhook config example` lists every key that
`payhook serve --help` lists. Prints "config_errors: N passed, N failed"."""
import os
import re
import shutil
import socket
import subprocess
import sys
import select
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phtest import (BIN, Runner, Service, parse_http_responses,  # noqa
                    raw_exchange, signed_request_bytes, webhook)

CANARY = "webhook_test_canary7secret7never7printed"
CANARY2 = "webhook_test_second7canary7never7printed"
OUTPUTS = []     # every stdout/stderr seen, to search for the canaries


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PAYHOOK_") or k in (
               "PAYHOOK_BIN", "PAYHOOK_SRC", "PAYHOOK_REF", "PAYHOOK_BUILD",
               "PAYHOOK_SIM_BIN")}
    env.update(extra or {})
    return env


def run(args, env=None, timeout=4):
    """Run payhook and collect its output. A `serve` that reaches its
    "listening" line (a bad config that was not refused) or is still running
    at timeout is killed and reported as rc None."""
    p = subprocess.Popen([BIN] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env or clean_env())
    out, err, rc = b"", b"", None
    deadline = time.monotonic() + timeout
    streams = {p.stdout.fileno(): "out", p.stderr.fileno(): "err"}
    bufs = {"out": b"", "err": b""}
    while streams and time.monotonic() < deadline:
        ready, _, _ = select.select(list(streams), [], [], 0.1)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                del streams[fd]
            else:
                bufs[streams[fd]] += chunk
        if b"event=listening" in bufs["err"]:
            break
    if p.poll() is None and (streams or b"event=listening" in bufs["err"]):
        if b"event=listening" in bufs["err"] or time.monotonic() >= deadline:
            p.kill()
    p.wait()
    rc = p.returncode if p.returncode >= 0 else None
    out = bufs["out"].decode("utf-8", "replace")
    err = bufs["err"].decode("utf-8", "replace")
    p.stdout.close()
    p.stderr.close()
    OUTPUTS.append(out)
    OUTPUTS.append(err)
    return rc, out, err


class Fixture:
    def __init__(self):
        self.d = tempfile.mkdtemp(prefix="payhook-cfg-")
        self.secret = self.path("secret", CANARY + "\n")
        os.chmod(self.secret, 0o600)
        self.state = os.path.join(self.d, "state")
        self.n = 0

    def path(self, name, content=None):
        p = os.path.join(self.d, name)
        if content is not None:
            with open(p, "w") as f:
                f.write(content)
        return p

    def base(self):
        return [("listen", "127.0.0.1:0"), ("admin_listen", "127.0.0.1:0"),
                ("signing_secret_file", self.secret),
                ("state_dir", self.state), ("cross_check", "off"),
                ("publish_endpoint", "tcp://127.0.0.1:*"),
                ("replay_endpoint", "tcp://127.0.0.1:*")]

    def conf(self, set_=None, drop=(), raw=()):
        """Write a config: base, with keys replaced/dropped, raw lines.
        Each config gets a state_dir of its own that does not exist yet
        (like a first start), unless set_ names one."""
        set_ = dict(set_ or {})
        set_.setdefault("state_dir", os.path.join(self.d, "state%d" % (
            self.n + 1)))
        lines = ["# payhook test config"]
        for k, v in self.base():
            if k in drop:
                continue
            if k in set_:
                v = set_.pop(k)
            lines.append("%s = %s" % (k, v))
        for k, v in set_.items():
            lines.append("%s = %s" % (k, v))
        lines += list(raw)
        self.n += 1
        return self.path("c%d.conf" % self.n, "\n".join(lines) + "\n")


def expect_bad(r, name, args, must, env=None, check_config=True):
    """exit 2 + exactly one non-empty stderr line containing every string
    in `must`, at start-up and (unless the error can only show when binding,
    like a port in use) with --check-config."""
    variants = [("start-up", args)]
    if check_config:
        variants.append(("--check-config", args + ["--check-config"]))
    for label, a in variants:
        rc, out, err = run(a, env=env)
        lines = err.splitlines()
        if not r.check("%s [%s]: exit 2" % (name, label), rc == 2,
                       "rc=%r stderr=%r" % (rc, err[-400:])):
            continue
        r.check("%s [%s]: exactly one line on stderr" % (name, label),
                len(lines) == 1 and lines[0].strip(), repr(lines[:4]))
        line = lines[-1] if lines else ""
        missing = [m for m in must if m not in line]
        r.check("%s [%s]: names %s" % (name, label, ", ".join(must)),
                not missing, "missing %r in %r" % (missing, line))
        r.check("%s [%s]: nothing on stdout" % (name, label), out == "",
                repr(out[:200]))


def t_file_errors(r, fx):
    dummy = fx.path("dummy.pem", "not a pem\n")
    secrets3 = fx.path("secrets3", "%s\n%s\nwebhook_test_third7canary7x\n" %
                       (CANARY, CANARY2))
    empty = fx.path("secret-empty", "")
    comments = fx.path("secret-comments", "# only a comment\n\n   \n")
    short = fx.path("secret-short", "abc\n")
    longs = fx.path("secret-long", CANARY + "x" * 600 + "\n")
    nul = fx.path("secret-nul", CANARY[:10] + "\0" + CANARY[10:] + "\n")
    adir = os.path.join(fx.d, "a-directory")
    os.mkdir(adir)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    busy_addr = "127.0.0.1:%d" % busy.getsockname()[1]
    # (name, conf kwargs, must, --check-config can see it)
    cases = [
        ("unknown key", dict(raw=["colour = blue"]),
         ["colour", "unknown key"]),
        ("line without '='", dict(raw=["max_body_bytes 65536"]),
         ["line 9", "expected key = value"]),
        ("key set twice", dict(raw=["max_body_bytes = 1k",
                                    "max_body_bytes = 2k"]),
         ["max_body_bytes", "already set", "line 9"]),
        ("listen nope", dict(set_={"listen": "nope"}),
         ["listen", "\"nope\"", "expected host:port"]),
        ("listen port 70000", dict(set_={"listen": "127.0.0.1:70000"}),
         ["listen", "70000", "expected host:port"]),
        ("listen port -1", dict(set_={"listen": "127.0.0.1:-1"}),
         ["listen", "expected host:port"]),
        ("listen empty host", dict(set_={"listen": ":8080"}),
         ["listen", "expected host:port"]),
        ("listen host name, not an IP", dict(set_={
            "listen": "example.invalid:0"}), ["listen"]),
        ("listen port already in use", dict(set_={"listen": busy_addr}),
         ["listen", busy_addr.split(":")[1]], False),
        ("admin_listen port already in use", dict(set_={
            "admin_listen": busy_addr}), ["admin_listen"], False),
        ("admin_listen host name, not an IP", dict(set_={
            "admin_listen": "example.invalid:0"}), ["admin_listen"]),
        ("admin_listen same as listen", dict(set_={
            "listen": "127.0.0.1:18080", "admin_listen": "127.0.0.1:18080"}),
         ["admin_listen", "differ"]),
        ("max_body_bytes abc", dict(set_={"max_body_bytes": "abc"}),
         ["max_body_bytes", "\"abc\"", "expected a size"]),
        ("max_body_bytes 0", dict(set_={"max_body_bytes": "0"}),
         ["max_body_bytes", "expected a size from 1024"]),
        ("max_body_bytes below 1k", dict(set_={"max_body_bytes": "1023"}),
         ["max_body_bytes", "expected a size"]),
        ("max_body_bytes 17m", dict(set_={"max_body_bytes": "17m"}),
         ["max_body_bytes", "expected a size"]),
        ("max_body_bytes huge", dict(set_={
            "max_body_bytes": "99999999999999999999999"}),
         ["max_body_bytes", "expected a size"]),
        ("max_body_bytes overflowing suffix", dict(set_={
            "max_body_bytes": "9999999999999999g"}),
         ["max_body_bytes", "expected a size"]),
        ("max_body_bytes negative", dict(set_={"max_body_bytes": "-1"}),
         ["max_body_bytes", "expected a size"]),
        ("max_body_bytes unknown suffix", dict(set_={
            "max_body_bytes": "64q"}), ["max_body_bytes", "expected a size"]),
        ("max_body_bytes quoted abc", dict(raw=['max_body_bytes = "abc"']),
         ["max_body_bytes", "expected a size"]),
        ("max_header_bytes 10", dict(set_={"max_header_bytes": "10"}),
         ["max_header_bytes", "expected a size"]),
        ("max_connections 0", dict(set_={"max_connections": "0"}),
         ["max_connections", "expected an integer from 1"]),
        ("max_connections 70000", dict(set_={"max_connections": "70000"}),
         ["max_connections", "expected an integer"]),
        ("max_connections ten", dict(set_={"max_connections": "ten"}),
         ["max_connections", "expected an integer"]),
        ("max_connections 1.5", dict(set_={"max_connections": "1.5"}),
         ["max_connections", "expected an integer"]),
        ("request_timeout -1", dict(set_={"request_timeout": "-1"}),
         ["request_timeout", "\"-1\"", "expected a duration"]),
        ("request_timeout 0", dict(set_={"request_timeout": "0"}),
         ["request_timeout", "expected a duration"]),
        ("request_timeout 10y", dict(set_={"request_timeout": "10y"}),
         ["request_timeout", "expected a duration"]),
        ("request_timeout 301s", dict(set_={"request_timeout": "301s"}),
         ["request_timeout", "expected a duration"]),
        ("durability sometimes", dict(set_={"durability": "sometimes"}),
         ["durability", "\"sometimes\"", "full", "process"]),
        ("durability FULL (case)", dict(set_={"durability": "FULL"}),
         ["durability", "full", "process"]),
        ("cross_check maybe", dict(set_={"cross_check": "maybe"}),
         ["cross_check", "\"maybe\"", "on or off"]),
        ("include_pii maybe", dict(set_={"include_pii": "maybe"}),
         ["include_pii", "on or off"]),
        ("log_level loud", dict(set_={"log_level": "loud"}),
         ["log_level", "debug"]),
        ("webhook_path no-slash", dict(set_={"webhook_path": "no-slash"}),
         ["webhook_path", "expected an absolute path"]),
        ("webhook_path ../x", dict(set_={"webhook_path": "../x"}),
         ["webhook_path", "expected an absolute path"]),
        ("webhook_path /a/../b", dict(set_={"webhook_path": "/a/../b"}),
         ["webhook_path", "expected an absolute path"]),
        ("webhook_path /a//b", dict(set_={"webhook_path": "/a//b"}),
         ["webhook_path", "expected an absolute path"]),
        ("webhook_path with %2F", dict(set_={"webhook_path": "/a%2Fb"}),
         ["webhook_path", "expected an absolute path"]),
        ("webhook_path with a query", dict(set_={"webhook_path": "/a?b"}),
         ["webhook_path", "expected an absolute path"]),
        ("webhook_path with a space", dict(set_={"webhook_path": "/a b"}),
         ["webhook_path", "expected an absolute path"]),
        ("api_base_url plain http to a public host", dict(set_={
            "api_base_url": "http://example.com"}),
         ["api_base_url", "https://"]),
        ("api_base_url http to 127.evil.com", dict(set_={
            "api_base_url": "http://127.evil.example"}),
         ["api_base_url", "https://"]),
        ("api_base_url http to localhost.evil.com", dict(set_={
            "api_base_url": "http://localhost.evil.example"}),
         ["api_base_url", "https://"]),
        ("api_base_url ftp", dict(set_={"api_base_url": "ftp://example.com"}),
         ["api_base_url", "expected an http:// or https:// URL"]),
        ("api_base_url without host", dict(set_={"api_base_url": "https://"}),
         ["api_base_url", "expected"]),
        ("api_base_url with credentials", dict(set_={
            "api_base_url": "https://user:pw@example.com"}),
         ["api_base_url", "expected"]),
        ("tls_cert_file without tls_key_file", dict(set_={
            "tls_cert_file": dummy}), ["tls_key_file", "missing"]),
        ("tls_key_file without tls_cert_file", dict(set_={
            "tls_key_file": dummy}), ["tls_cert_file", "missing"]),
        ("tls_cert_file does not exist", dict(set_={
            "tls_cert_file": fx.d + "/nope.pem", "tls_key_file": dummy}),
         ["tls_cert_file", "expected a readable regular file"]),
        ("signing_secret_file missing", dict(drop=("signing_secret_file",)),
         ["signing_secret_file", "required"]),
        ("signing_secret_file empty value", dict(set_={
            "signing_secret_file": ""}), ["signing_secret_file", "required"]),
        ("signing_secret_file does not exist", dict(set_={
            "signing_secret_file": fx.d + "/no-such-secret"}),
         ["signing_secret_file", "no-such-secret",
          "expected a readable regular file"]),
        ("signing_secret_file is a directory", dict(set_={
            "signing_secret_file": adir}),
         ["signing_secret_file", "expected a readable regular file"]),
        ("secret file with 3 secrets", dict(set_={
            "signing_secret_file": secrets3}),
         ["signing_secret_file", "more than 2 secrets"]),
        ("empty secret file", dict(set_={"signing_secret_file": empty}),
         ["signing_secret_file", "no secret"]),
        ("secret file with only comments", dict(set_={
            "signing_secret_file": comments}),
         ["signing_secret_file", "no secret"]),
        ("secret too short", dict(set_={"signing_secret_file": short}),
         ["signing_secret_file", "expected 8 to 512"]),
        ("secret too long", dict(set_={"signing_secret_file": longs}),
         ["signing_secret_file", "expected 8 to 512"]),
        ("secret with a NUL byte", dict(set_={"signing_secret_file": nul}),
         ["signing_secret_file", "NUL"]),
        ("state_dir is a regular file", dict(set_={"state_dir": dummy}),
         ["state_dir", "expected a directory"]),
        ("publish_endpoint nope", dict(set_={"publish_endpoint": "nope"}),
         ["publish_endpoint", "expected a ZeroMQ endpoint"]),
        ("replay_endpoint same as publish_endpoint", dict(set_={
            "publish_endpoint": "tcp://127.0.0.1:15556",
            "replay_endpoint": "tcp://127.0.0.1:15556"}),
         ["replay_endpoint", "differ"]),
        ("retention 1d (shorter than the retry window)", dict(set_={
            "retention": "1d"}), ["retention", "expected a duration"]),
        ("journal_max_bytes abc", dict(set_={"journal_max_bytes": "abc"}),
         ["journal_max_bytes", "expected a size"]),
        ("journal_max_bytes 4k (below the journal's minimum)", dict(set_={
            "journal_max_bytes": "4k"}), ["journal_max_bytes"]),
        ("cross_check on without api_key_file", dict(set_={
            "cross_check": "on"}), ["api_key_file", "required"]),
        ("api_key_file does not exist", dict(set_={
            "cross_check": "on", "api_key_file": fx.d + "/no-key"}),
         ["api_key_file", "expected a readable regular file"]),
        ("curve_secret_key_file without curve_clients_file", dict(set_={
            "curve_secret_key_file": dummy}), ["curve_clients_file"]),
    ]
    try:
        for case in cases:
            name, kw, must = case[:3]
            expect_bad(r, name, ["serve", "-c", fx.conf(**kw)], must,
                       check_config=case[3] if len(case) > 3 else True)
    finally:
        busy.close()
    # a config containing a NUL byte
    p = fx.path("nul.conf")
    with open(p, "wb") as f:
        f.write(b"listen = 127.0.0.1:0\0\n")
    expect_bad(r, "config with a NUL byte", ["serve", "-c", p],
               ["nul.conf", "NUL"])
    expect_bad(r, "config file does not exist",
               ["serve", "-c", fx.d + "/missing.conf"], ["missing.conf"])
    # pointing -c at the secret file by mistake must not print the secret
    expect_bad(r, "secret file given as the config file",
               ["serve", "-c", fx.secret], ["line 1"])
    rc, out, err = run(["serve", "--bogus"])
    r.check("unknown option: exit 2", rc == 2, repr(rc))
    rc, out, err = run(["serve", "-c", fx.conf(), "extra-arg"])
    r.check("extra argument: exit 2 and one line", rc == 2 and
            len(err.splitlines()) == 1, repr(err))


def t_environment(r, fx):
    conf = fx.conf(set_={"max_body_bytes": "65536"})
    env = clean_env({"PAYHOOK_MAX_BODY_BYTES": "2k"})
    rc, out, err = run(["serve", "-c", conf, "--print-config"], env=env)
    r.check("env override: --print-config shows the env value",
            rc == 0 and re.search(r"^max_body_bytes = 2048$", out, re.M),
            repr(out[:300]))
    # and the running service uses it
    s = Service({"max_body_bytes": "65536"},
                env={"PAYHOOK_MAX_BODY_BYTES": "2k"})
    try:
        s.start()
        small = webhook("e1")
        big = b"{" + b" " * (2049 - len(small)) + small[1:]
        st, _, body = s.post(small)
        r.check("env override: body under 2k accepted", st == 200 and
                len(small) < 2048, "%s %r" % (st, body))
        buf, closed = raw_exchange(s.port, signed_request_bytes(big))
        resps = parse_http_responses(buf)
        r.check("env override: 2049-byte body gets 413 (file said 64k)",
                resps and resps[0][0] == 413, repr(buf[:100]))
    finally:
        s.cleanup()
    for var, val, must in (
            ("PAYHOOK_MAX_BODY_BYTES", "abc",
             ["PAYHOOK_MAX_BODY_BYTES", "max_body_bytes", "expected a size"]),
            ("PAYHOOK_DURABILITY", "sometimes",
             ["PAYHOOK_DURABILITY", "durability"]),
            ("PAYHOOK_SIGNING_SECRET_FILE", fx.d + "/nope",
             ["PAYHOOK_SIGNING_SECRET_FILE", "signing_secret_file"]),
            ("PAYHOOK_LISTEN", "nope", ["PAYHOOK_LISTEN", "listen"]),
            ("PAYHOOK_CROSS_CHECK", "on", ["api_key_file", "required"])):
        expect_bad(r, "bad env %s=%s" % (var, val),
                   ["serve", "-c", fx.conf()], must,
                   env=clean_env({var: val}))
    # env alone (no -c file) is a full configuration
    env = clean_env({"PAYHOOK_" + k.upper(): v
                     for k, v in fx.base()})
    rc, out, err = run(["serve", "--check-config"], env=env)
    r.check("environment alone: --check-config ok", rc == 0 and
            "ok" in out, "%r %r %r" % (rc, out, err))
    # PAYHOOK_ variables that are not keys are ignored (PAYHOOK_BIN...)
    rc, out, err = run(["serve", "-c", fx.conf(), "--check-config"],
                       env=clean_env({"PAYHOOK_NOT_A_KEY": "x"}))
    r.check("PAYHOOK_ variables that are not keys are ignored", rc == 0,
            repr(err))


def t_check_config(r, fx):
    fresh = os.path.join(fx.d, "fresh-state")
    rc, out, err = run(["serve", "-c", fx.conf(set_={"state_dir": fresh}),
                        "--check-config"])
    r.check("--check-config good: exit 0", rc == 0, repr((rc, err)))
    r.check("--check-config good: prints ok", "ok" in out, repr(out))
    r.check("--check-config good: nothing on stderr", err == "", repr(err))
    r.check("--check-config does not create the state dir",
            not os.path.exists(fresh))
    two = fx.path("secret2", "%s\n%s\n" % (CANARY, CANARY2))
    rc, out, err = run(["serve", "-c", fx.conf(set_={
        "signing_secret_file": two}), "--check-config"])
    r.check("--check-config with two secrets: ok, says 2", rc == 0 and
            "2 signing secrets" in out, repr(out))
    rc, out, err = run(["serve", "-c", fx.conf(set_={
        "max_body_bytes": "oops"}), "--check-config"])
    r.check("--check-config bad: exit 2", rc == 2, repr(rc))
    rc, out, err = run(["serve", "-c", fx.conf(), "--print-config"])
    r.check("--print-config: exit 0 and shows the secret file's path only",
            rc == 0 and fx.secret in out, repr(out[:200]))
    # quoted values and comments are accepted
    rc, out, err = run(["serve", "-c", fx.conf(raw=[
        'max_body_bytes = "2k"', "# a comment", "   ",
        "request_timeout = 5s"]), "--print-config"])
    r.check("quoted value accepted", rc == 0 and re.search(
        r"^max_body_bytes = 2048$", out, re.M), repr(err))


def keys_from_help(text):
    return re.findall(r"^  ([a-z_]+) +(?:string|file|directory|host:port|"
                      r"path|url|zmq endpoint|on\|off|integer|size|"
                      r"duration|choice) +default", text, re.M)


def t_example(r, fx):
    rc, ex, err = run(["config", "example"])
    r.check("config example: exit 0", rc == 0, repr(err))
    rc, help_, err = run(["serve", "--help"])
    r.check("serve --help: exit 0", rc == 0)
    hk = keys_from_help(help_)
    ek = re.findall(r"^#([a-z_]+) =", ex, re.M)
    r.check("serve --help lists keys (%d)" % len(hk), len(hk) >= 20)
    r.check("config example lists every key of serve --help",
            sorted(hk) == sorted(ek), "only in help %s, only in example %s"
            % (sorted(set(hk) - set(ek)), sorted(set(ek) - set(hk))))
    r.check("config example lists each key once", len(ek) == len(set(ek)))
    contract = ("listen webhook_path tls_cert_file tls_key_file "
                "signing_secret_file max_body_bytes admin_listen state_dir "
                "durability api_base_url api_key_file api_ca_file "
                "cross_check publish_endpoint replay_endpoint "
                "curve_secret_key_file curve_clients_file include_pii "
                "max_header_bytes max_connections request_timeout "
                "journal_max_bytes").split()
    r.check("config example has every CONTRACT.md key and the limits",
            not set(contract) - set(ek), repr(set(contract) - set(ek)))
    # every key has an "Expected:" line
    r.check("config example: an Expected: line per key",
            ex.count("# Expected: ") == len(ek))
    # the example, uncommented, is a valid configuration
    base = dict(fx.base())
    lines = []
    for line in ex.splitlines():
        m = re.match(r"^#([a-z_]+) =(.*)$", line)
        if m and m.group(1) not in base:
            lines.append("%s =%s" % (m.group(1), m.group(2)))
    lines += ["%s = %s" % kv for kv in fx.base()]
    p = fx.path("example.conf", "\n".join(lines) + "\n")
    rc, out, err = run(["serve", "-c", p, "--check-config"])
    r.check("config example, uncommented, passes --check-config", rc == 0,
            repr(err))


def main():
    r = Runner("config_errors")
    fx = Fixture()
    try:
        r.run(t_file_errors, fx)
        r.run(t_environment, fx)
        r.run(t_check_config, fx)
        r.run(t_example, fx)
        leaked = [o for o in OUTPUTS if CANARY in o or CANARY2 in o or
                  "third7canary" in o]
        r.check("no output ever contains a secret (%d outputs)" %
                len(OUTPUTS), not leaked and len(OUTPUTS) > 100,
                repr(leaked[:2]))
    finally:
        shutil.rmtree(fx.d, ignore_errors=True)
    r.done()


if __name__ == "__main__":
    main()
