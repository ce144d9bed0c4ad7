#!/usr/bin/python3
"""test_deploy.py: the files under deploy/ for running payhook for real.

deploy/payhook.service: `systemd-analyze verify` prints nothing (no unknown
keys, bad values or specifiers), `systemd-analyze security --offline` rates
it OK (exposure <= 2.0), it has every hardening setting the operations
guide promises, and the PAYHOOK_* variables it sets are real settings:
`payhook serve --print-config/--check-config` run with them (credentials
directory and state directory filled in) picks up every path.
deploy/nginx-tls.conf.example: `nginx -t` accepts it inside an http block,
then a real nginx with it terminates TLS in front of a running payhook and
a signed webhook sent through it is accepted and journaled byte for byte
(a forged one gets 401, an oversized one 413).
deploy/Containerfile: multi-stage Debian 12, non-root, and its ENV settings
pass --check-config (no container engine here: it is not built).
Parts whose tool is missing (systemd-analyze, nginx, openssl) are skipped
(exit 77).
"""
import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

DEPLOY = os.path.join(phtest.SRC, "deploy")
UNIT = os.path.join(DEPLOY, "payhook.service")
NGINX_EX = os.path.join(DEPLOY, "nginx-tls.conf.example")
CONTAINER = os.path.join(DEPLOY, "Containerfile")


def unit_settings(path):
    """[(section, key, value)] of a systemd unit (no continuation lines)."""
    out, section = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            k, _, v = line.partition("=")
            out.append((section, k.strip(), v.strip()))
    return out


def test_unit_static(r):
    s = unit_settings(UNIT)
    svc = {}
    for sec, k, v in s:
        if sec == "Service":
            svc.setdefault(k, []).append(v)

    def has(k, v=None):
        return k in svc and (v is None or v in svc[k])
    want = [("DynamicUser", "yes"), ("StateDirectory", "payhook"),
            ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("SystemCallFilter", "@system-service"),
            ("Restart", "on-failure"), ("RestartPreventExitStatus", "2")]
    for k, v in want:
        r.check("unit sets %s=%s" % (k, v), has(k, v), svc.get(k))
    r.check("unit sets TimeoutStopSec", has("TimeoutStopSec"))
    creds = dict(x.split(":", 1) for x in svc.get("LoadCredential", []))
    r.check("unit loads signing secret, API key and CURVE key as "
            "credentials", set(creds) == {"signing-secret", "api-key",
                                          "curve-secret-key"}, creds)
    env = dict(x.split("=", 1) for x in svc.get("Environment", []))
    r.check("the secret settings point into %d",
            env.get("PAYHOOK_SIGNING_SECRET_FILE") == "%d/signing-secret"
            and env.get("PAYHOOK_API_KEY_FILE") == "%d/api-key" and
            env.get("PAYHOOK_CURVE_SECRET_KEY_FILE") ==
            "%d/curve-secret-key", env)
    r.check("no secret on the command line", not any(
        "secret" in v for v in svc.get("ExecStart", [])))
    return env


def test_unit_env(r, env, tmp):
    """The unit's variables are settings payhook knows, with %d/%S."""
    creds = os.path.join(tmp, "credentials")
    os.makedirs(creds)
    for name, text in (("signing-secret", phtest.SECRET + "\n"),
                       ("api-key", "api_test_0123456789\n")):
        with open(os.path.join(creds, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(creds, name), 0o400)
    subprocess.run([phtest.BIN, "keygen", "--public",
                    os.path.join(tmp, "curve.pub"), "--secret",
                    os.path.join(creds, "curve-secret-key")], check=True,
                   capture_output=True)
    clients = os.path.join(tmp, "curve-clients")
    shutil.copy(os.path.join(tmp, "curve.pub"), clients)
    conf = os.path.join(tmp, "payhook.conf")
    with open(conf, "w") as f:
        f.write("listen = 127.0.0.1:0\nadmin_listen = 127.0.0.1:0\n"
                "curve_clients_file = %s\n" % clients)
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("PAYHOOK_")}
    for k, v in env.items():
        e[k] = v.replace("%d", creds).replace("%S", tmp)
    p = subprocess.run([phtest.BIN, "serve", "-c", conf, "--print-config"],
                       env=e, capture_output=True, text=True)
    got = dict(re.findall(r"^(\w+) = (.*)$", p.stdout, re.M))
    r.check("--print-config takes every path from the unit's variables",
            p.returncode == 0 and
            got.get("state_dir") == os.path.join(tmp, "payhook") and
            got.get("signing_secret_file") ==
            os.path.join(creds, "signing-secret") and
            got.get("api_key_file") == os.path.join(creds, "api-key") and
            got.get("curve_secret_key_file") ==
            os.path.join(creds, "curve-secret-key"), p.stdout + p.stderr)
    p = subprocess.run([phtest.BIN, "serve", "-c", conf, "--check-config"],
                       env=e, capture_output=True, text=True)
    r.check("--check-config accepts the unit's settings", p.returncode == 0,
            p.stdout + p.stderr)


def test_systemd_analyze(r, tmp):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        r.skip("systemd-analyze", "systemd-analyze is not installed here")
        return
    d = os.path.join(tmp, "unit")
    os.makedirs(d)
    unit = os.path.join(d, "payhook.service")
    with open(UNIT) as f:       # verify wants ExecStart's binary to exist
        text = f.read().replace("/usr/local/bin/payhook",
                                os.path.abspath(phtest.BIN))
    with open(unit, "w") as f:
        f.write(text)
    p = subprocess.run([exe, "verify", unit], capture_output=True,
                       text=True, timeout=60, cwd=d)
    out = (p.stdout + p.stderr).strip()
    if p.returncode != 0 and ("Failed to" in out and "manager" in out or
                              "System has not been booted" in out):
        r.skip("systemd-analyze verify", "cannot run in this container: " +
               out.splitlines()[-1])
        return
    r.check("systemd-analyze verify is silent and exits 0",
            p.returncode == 0 and out == "", out)
    # A unit with a typo must not pass (the check above can fail).
    bad = os.path.join(d, "bad.service")
    with open(bad, "w") as f:
        f.write(text.replace("NoNewPrivileges=", "NoNewPrivilege="))
    p = subprocess.run([exe, "verify", bad], capture_output=True, text=True,
                       timeout=60, cwd=d)
    r.check("verify reports a misspelt key", "Unknown key" in p.stderr,
            p.stderr)
    p = subprocess.run([exe, "security", "--offline=yes", unit],
                       capture_output=True, text=True, timeout=60, cwd=d)
    m = re.search(r"Overall exposure level for payhook.service: ([0-9.]+)",
                  p.stdout)
    r.check("systemd-analyze security: exposure <= 2.0",
            m and float(m.group(1)) <= 2.0, p.stdout[-300:] + p.stderr)


def make_cert(tmp):
    key, crt = os.path.join(tmp, "key.pem"), os.path.join(tmp, "crt.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True)
    return crt, key


def nginx_config(tmp, port, upstream_port, crt, key):
    with open(NGINX_EX) as f:
        text = f.read()
    text = re.sub(r"listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % port, text)
    text = re.sub(r"\n\s*listen \[::\]:443 ssl;", "", text)
    text = text.replace("server 127.0.0.1:8080;",
                        "server 127.0.0.1:%d;" % upstream_port)
    text = text.replace("/etc/ssl/payhook/fullchain.pem", crt)
    text = text.replace("/etc/ssl/payhook/privkey.pem", key)
    site = os.path.join(tmp, "payhook-site.conf")
    with open(site, "w") as f:
        f.write(text)
    main = os.path.join(tmp, "nginx.conf")
    for sub in ("body", "proxy", "logs"):
        os.makedirs(os.path.join(tmp, sub), exist_ok=True)
    with open(main, "w") as f:
        f.write("""daemon off;
master_process off;
worker_processes 1;
pid %(t)s/nginx.pid;
error_log %(t)s/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %(t)s/body;
    proxy_temp_path %(t)s/proxy;
    fastcgi_temp_path %(t)s/proxy;
    uwsgi_temp_path %(t)s/proxy;
    scgi_temp_path %(t)s/proxy;
    include %(site)s;
}
""" % {"t": tmp, "site": site})
    return main


def test_nginx(r, tmp):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists(
        "/usr/sbin/nginx") else None)
    if nginx is None or shutil.which("openssl") is None:
        r.skip("nginx", "nginx or openssl is not installed")
        return
    d = os.path.join(tmp, "nginx")
    os.makedirs(d)
    crt, key = make_cert(d)
    svc = phtest.Service()
    proc = None
    try:
        svc.start()
        port = phtest.free_port()
        conf = nginx_config(d, port, svc.port, crt, key)
        p = subprocess.run([nginx, "-t", "-p", d, "-c", conf],
                           capture_output=True, text=True, timeout=30)
        r.check("nginx -t accepts the example", p.returncode == 0 and
                "test is successful" in p.stderr, p.stderr)
        proc = subprocess.Popen([nginx, "-p", d, "-c", conf],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        ctx = ssl.create_default_context(cafile=crt)

        def post(body, sig, path="/webhooks/govuk-pay"):
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                            timeout=10)
            try:
                c.request("POST", path, body, {
                    "Content-Type": "application/json",
                    "Pay-Signature": sig})
                resp = c.getresponse()
                return resp.status, resp.read()
            finally:
                c.close()

        def up():
            try:
                return post(b"{}", "0" * 64)[0] == 401
            except OSError:
                return False
        r.check("nginx serves TLS in front of payhook",
                phtest.wait_for(up, 10), open(os.path.join(
                    d, "logs", "error.log")).read()[-500:])
        body = phtest.webhook(phtest.pay_id(424242))
        st, resp = post(body, phtest.sign(body))
        r.check("signed webhook through nginx: 200 accepted",
                st == 200 and b"accepted" in resp, (st, resp))
        got = svc.rows("SELECT body FROM webhooks WHERE message_id = ?",
                       (phtest.pay_id(424242),))
        r.check("journaled byte for byte (Pay-Signature and body intact)",
                got and bytes(got[0][0]) == body)
        st, _ = post(body + b" ", phtest.sign(body))
        r.check("forged body through nginx: 401", st == 401, st)
        big = b'{"x":"' + b"a" * 70000 + b'"}'
        st, _ = post(big, phtest.sign(big))
        r.check("body over max_body_bytes: 413", st == 413, st)
        st, _ = post(body, phtest.sign(body), path="/metrics")
        r.check("admin paths are not proxied", st == 404, st)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        svc.cleanup()


def test_containerfile(r, tmp):
    with open(CONTAINER) as f:
        text = f.read()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    r.check("Containerfile: two stages, both Debian 12",
            len(froms) == 2 and all(re.search(r"debian:12", x) for x in
                                    froms), froms)
    r.check("Containerfile: runs as a non-root user",
            re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M) is not None)
    r.check("Containerfile: copies only the binary from the build stage",
            re.findall(r"^COPY --from=build (\S+)", text, re.M) ==
            ["/build/payhook"])
    env = dict(re.findall(r"(PAYHOOK_\w+)=(\S+)", text))
    creds = os.path.join(tmp, "ctr")
    os.makedirs(creds)
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("PAYHOOK_")}
    for k, v in env.items():
        e[k] = v.replace("/etc/payhook", creds).replace(
            "/var/lib/payhook", os.path.join(creds, "state"))
    for name in ("signing-secret", "api-key"):
        with open(os.path.join(creds, name), "w") as f:
            f.write("webhook_test_x\n")
    conf = os.path.join(creds, "payhook.conf")
    with open(conf, "w") as f:
        f.write("# settings come from the image's ENV\n")
    p = subprocess.run([phtest.BIN, "serve", "-c", conf, "--check-config"],
                       env=e, capture_output=True, text=True)
    r.check("the image's ENV settings pass --check-config",
            p.returncode == 0, p.stdout + p.stderr)
    pkgs = re.findall(r"\b(lib[a-z0-9.+-]+[0-9][a-z0-9.+-]*)\b",
                      text.split("FROM", 2)[2])
    if shutil.which("apt-cache"):
        missing = [x for x in pkgs if subprocess.run(
            ["apt-cache", "show", x], capture_output=True).returncode != 0]
        r.check("the runtime packages exist in this Debian", pkgs and
                not missing, missing)


def main():
    r = phtest.Runner("test_deploy")
    tmp = tempfile.mkdtemp(prefix="payhook-deploy-")
    try:
        env = test_unit_static(r)
        r.run(test_unit_env, env, tmp)
        r.run(test_systemd_analyze, tmp)
        r.run(test_nginx, tmp)
        r.run(test_containerfile, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r.done_skippable()


if __name__ == "__main__":
    main()
