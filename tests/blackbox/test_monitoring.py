#!/usr/bin/python3
"""test_monitoring.py: deploy/prometheus and deploy/grafana against the real
service.

Checks: `promtool check config` and `promtool check rules` accept the files
and `promtool test rules` (payhook.rules.test.yml) passes; every metric name
used in an alert rule or a dashboard query (and every label value they match
on) is one that a running `payhook serve` exports on /metrics (`up` is the
only name allowed from Prometheus itself, in rules); every alert has its
troubleshooting section in docs/operations.md; the dashboard is valid
Grafana JSON covering what an operator needs. Without promtool (Debian
package `prometheus`) the promtool part is skipped (exit 77).
"""
import json
import os
import signal
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

try:
    import yaml
except ImportError:     # python3-yaml, in scripts/setup-deps.sh test
    yaml = None

PROM = os.path.join(phtest.SRC, "deploy", "prometheus")
RULES = os.path.join(PROM, "payhook.rules.yml")
DASH = os.path.join(phtest.SRC, "deploy", "grafana", "payhook.json")
OPS = os.path.join(phtest.SRC, "docs", "operations.md")

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring",
            "group_left", "group_right", "offset", "bool", "inf", "nan"}
AGGR_MOD = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)"
                      r"\s*\([^)]*\)")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|'
                     r'\\.)*)"')


def promql_selectors(expr):
    """[(metric name, [(label, op, value)])] for every series selector in
    a PromQL expression (names without braces too)."""
    out = []
    e = re.sub(r"#.*", "", expr)
    e = AGGR_MOD.sub(" ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)           # ranges, subqueries
    for m in SELECTOR.finditer(e):
        out.append((m.group(1), MATCHER.findall(m.group(2))))
    e = SELECTOR.sub(lambda m: " %s " % (m.group(1) or ""), e)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', " ", e)    # string arguments
    named = {n for n, _ in out if n}
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)"
                         r"(?![\w:])(?!\s*\()", e):
        name = m.group(1)
        if name in KEYWORDS or name in named:
            continue
        if re.fullmatch(r"\d+[smhdwy]", name):
            continue
        out.append((name, []))
        named.add(name)
    return [(n, ms) for n, ms in out if n]


def exported(svc):
    """{sample name: [labels dict]} from a running service's /metrics."""
    st, _, body = svc.admin("/metrics")
    samples = phtest.parse_prometheus_strict(body.decode())
    names = {}
    for name, labels in samples:
        names.setdefault(name, []).append(dict(labels))
    return names


def problems_in(expr, names, allow=()):
    bad = []
    for name, matchers in promql_selectors(expr):
        if name in allow:
            continue
        if name not in names:
            bad.append("unknown metric %s" % name)
            continue
        for label, op, value in matchers:
            # job and instance are the scrape target's, added by
            # Prometheus, never exported by payhook itself.
            if "$" in value or op in ("!=", "!~") or label in (
                    "job", "instance"):
                continue
            wanted = value.split("|") if op == "=~" else [value]
            have = {ls.get(label) for ls in names[name]}
            for w in wanted:
                if not re.fullmatch(r"[A-Za-z0-9_.]+", w):
                    continue
                if w not in have:
                    bad.append("%s{%s=%r} is never exported (have %s)" % (
                        name, label, w, sorted(x for x in have if x)))
    return bad


def test_extractor(r):
    got = promql_selectors('sum by (status) (rate(payhook_bogus_total{'
                           'status="503"}[5m])) / on (instance) up and '
                           'histogram_quantile(0.99, x_bucket) > bool 2')
    r.check("PromQL extractor finds names and matchers",
            got == [("payhook_bogus_total", [("status", "=", "503")]),
                    ("up", []), ("x_bucket", [])], got)
    r.check("extractor result is checked (a made-up name is refused)",
            problems_in("rate(payhook_bogus_total[5m])", {"up": [{}]}) ==
            ["unknown metric payhook_bogus_total"])


def promtool(r):
    exe = shutil.which("promtool")
    if exe is None:
        r.skip("promtool", "promtool not installed (Debian package "
               "prometheus; scripts/setup-deps.sh test)")
        return
    for args in (["check", "config", "prometheus.yml"],
                 ["check", "rules", "payhook.rules.yml"],
                 ["test", "rules", "payhook.rules.test.yml"]):
        p = subprocess.run([exe] + args, cwd=PROM, capture_output=True,
                           text=True, timeout=60)
        r.check("promtool %s" % " ".join(args), p.returncode == 0 and
                "SUCCESS" in p.stdout + p.stderr, p.stdout + p.stderr)


def anchors(path):
    with open(path) as f:
        text = f.read()
    out = set()
    for m in re.finditer(r"^#+\s+(.+?)\s*$", text, re.M):
        a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
        out.add(a.replace(" ", "-"))
    return out


def test_rules(r, names):
    if yaml is None:
        r.skip("rules metric names", "python3-yaml not installed")
        return
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    rules = [x for g in doc["groups"] for x in g["rules"]]
    alerts = [x["alert"] for x in rules if "alert" in x]
    r.check("rules cover signatures, pending, cross-check, API key, publish,"
            " journal/disk, readiness", {
                "PayhookSignatureFailures", "PayhookPendingRowsGrowing",
                "PayhookCrossCheckFailing", "PayhookApiKeyRejected",
                "PayhookPublishStalled", "PayhookJournalCommitFailing",
                "PayhookServing503", "PayhookNotReady"} <= set(alerts),
            alerts)
    for x in rules:
        bad = problems_in(x["expr"], names, allow=("up",))
        r.check("rule %s uses only exported metrics" % x.get("alert"),
                not bad, bad)
    have = anchors(OPS) if os.path.exists(OPS) else set()
    for x in rules:
        rb = x.get("annotations", {}).get("runbook", "")
        anchor = rb.partition("#")[2]
        r.check("alert %s has a runbook section in docs/operations.md" %
                x["alert"], rb.startswith("docs/operations.md#") and
                anchor in have, rb)


def test_dashboard(r, names):
    with open(DASH) as f:
        dash = json.load(f)
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    r.check("dashboard panel ids are unique", len(ids) == len(set(ids)))
    exprs = []
    for p in panels:
        g = p["gridPos"]
        r.check("panel %r fits the 24-column grid" % p["title"],
                0 <= g["x"] and g["x"] + g["w"] <= 24)
        if p["type"] == "row":
            continue
        r.check("panel %r has a query" % p["title"], p.get("targets"))
        exprs += [t["expr"] for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) \
                else v["query"]
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q)
            r.check("variable %s queries an exported metric" % v["name"],
                    m and m.group(1) in names, q)
    bad = []
    used = set()
    for e in exprs:
        bad += problems_in(e, names)
        used |= {n for n, _ in promql_selectors(e)}
    r.check("every dashboard query (%d) uses only exported metrics" %
            len(exprs), not bad and exprs, bad)
    need = {"payhook_http_requests_total", "payhook_webhooks_total",
            "payhook_signature_failures_total",
            "payhook_journal_commit_seconds_bucket",
            "payhook_journal_fsync_seconds_bucket",
            "payhook_webhook_reply_seconds_bucket",
            "payhook_crosscheck_results_total",
            "payhook_crosscheck_seconds_bucket",
            "payhook_events_published_total", "payhook_head_seq",
            "payhook_journal_rows", "payhook_replay_requests_total"}
    r.check("dashboard shows requests, webhooks, signatures, commit/fsync "
            "and reply latency, cross-check, events, head seq, pending, replay",
            need <= used, need - used)


def thread_names(svc):
    """{name: blocked-signal mask} of a running service's threads
    (/proc/PID/task/*/comm and the SigBlk line of .../status)."""
    task = "/proc/%d/task" % svc.proc.pid
    names = {}
    for t in sorted(os.listdir(task)):
        try:
            with open(os.path.join(task, t, "comm")) as f:
                name = f.read().strip()
            with open(os.path.join(task, t, "status")) as f:
                blk = [int(ln.split()[1], 16) for ln in f
                       if ln.startswith("SigBlk:")][0]
        except (OSError, IndexError, ValueError):
            continue
        names[name] = blk
    return names


def signal_masks(r, threads):
    """payhook's own threads leave the signals an operator sends to the
    main loop, and never block a fault: a blocked SIGSEGV kills the process
    without ASan's report or a core dump's handler."""
    bit = lambda sig: 1 << (int(sig) - 1)  # noqa: E731
    async_ = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE]
    faults = [signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
              signal.SIGABRT]
    for name in ("ph-http", "ph-sync", "ph-checkpoint", "ph-bus"):
        blk = threads.get(name)
        if blk is None:
            continue
        r.check("%s blocks SIGTERM, SIGINT, SIGHUP, SIGPIPE" % name,
                all(blk & bit(x) for x in async_), hex(blk))
        r.check("%s blocks no fault signal" % name,
                not any(blk & bit(x) for x in faults), hex(blk))


def main():
    r = phtest.Runner("test_monitoring")
    r.run(test_extractor)
    r.run(promtool)
    with phtest.Service({"cross_check": "off",
                         "durability": "full"}) as svc:
        svc.post(phtest.webhook(phtest.pay_id(1)))
        names = exported(svc)
        threads = thread_names(svc)
    r.check("payhook's threads carry the names docs/operations.md gives "
            "them", {"ph-http", "ph-sync", "ph-checkpoint", "ph-bus"} <=
            set(threads),
            threads)
    signal_masks(r, threads)
    r.check("the service exports payhook_* metrics",
            "payhook_head_seq" in names and "payhook_ready" in names,
            sorted(names)[:5])
    r.run(test_rules, names)
    r.run(test_dashboard, names)
    r.done_skippable()


if __name__ == "__main__":
    main()
