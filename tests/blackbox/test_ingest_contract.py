#!/usr/bin/python3
"""test_ingest_contract.py: every row of CONTRACT.md's webhook table against
the real `payhook serve` on loopback: status, body, headers, the journal row,
metric deltas, secret rotation with SIGHUP, the admin endpoints, keep-alive
and SIGTERM. Python stdlib only; prints "contract: N passed, N failed"."""
import http.client
import json
import os
import signal
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phtest import (SECRET, SECRET2, Runner, Service, example_body,  # noqa
                    hget, integrity_check, journal_ids, metric, metric_key,
                    metrics_delta, parse_http_responses,
                    parse_prometheus_strict as parse_prometheus,
                    pay_id, quarantine_id, raw_exchange, sign, wait_for,
                    webhook)

EXAMPLE_SIG = ("229cd12c09bd5c5d3ff91d7c11931960997f5c922c14d6f7c13aed58"
               "12b27b61")
EXAMPLE_ID = "2c7fqamtqk0g4sbhnm4f4ce6qa"
PATH = "/webhooks/govuk-pay"
# An accepted webhook's row moves on by itself: received -> checked ->
# published (cross_check = off gives verdict skipped).
PIPELINE_STATES = ("received", "checked", "published")

# Counter families whose every change a case must account for.
TRACKED = ("payhook_http_requests_total", "payhook_webhooks_total",
           "payhook_signature_failures_total",
           "payhook_signature_valid_total",
           "payhook_journal_commit_failures_total",
           "payhook_journal_commit_seconds_count",
           "payhook_webhook_reply_seconds_count")

# Everything any response must never contain (filled as the test goes).
NEVER_ECHO = [SECRET.encode(), SECRET2.encode()]
ERROR_BODIES = []


def mk(n):
    """A fresh, valid webhook_message_id for case n."""
    return pay_id(0x5000 + n)


def expect_deltas(r, name, before, after, want):
    """want: {metric_key: delta}; every other change in TRACKED is a
    failure. A webhook with a valid signature joins a group commit and
    gets one answer (200, or 503 if it could not be stored): each one adds
    one reply-latency observation, derived here."""
    got = {k: v for k, v in metrics_delta(before, after).items()
           if k[0] in TRACKED}
    want = dict(want)
    want[metric_key("payhook_webhook_reply_seconds_count")] = sum(
        v for k, v in want.items()
        if k[0] == "payhook_signature_valid_total")
    want = {k: float(v) for k, v in want.items() if v}
    r.check("%s: metric deltas" % name, got == want,
            "got %s want %s" % (sorted((k[0], sorted(k[1]), v)
                                       for k, v in got.items()),
                                sorted((k[0], sorted(k[1]), v)
                                       for k, v in want.items())))


def req_status(code):
    return metric_key("payhook_http_requests_total", status=str(code))


def expect_error(r, name, resp, status, retry_after=False, allow=None):
    st, h, body = resp
    r.check("%s: status %d" % (name, status), st == status,
            "got %s %r" % (st, body[:200]))
    r.check("%s: Content-Type application/json" % name,
            (hget(h, "Content-Type") or "").startswith("application/json"),
            repr(hget(h, "Content-Type")))
    try:
        obj = json.loads(body)
        ok = (isinstance(obj, dict) and list(obj) == ["error"] and
              isinstance(obj["error"], str) and obj["error"])
    except ValueError:
        ok = False
    r.check("%s: body is {\"error\": \"...\"}" % name, ok, repr(body[:200]))
    if retry_after:
        ra = hget(h, "Retry-After")
        r.check("%s: Retry-After in seconds" % name,
                ra is not None and ra.isdigit() and int(ra) > 0, repr(ra))
    else:
        r.check("%s: no Retry-After" % name, hget(h, "Retry-After") is None)
    if allow is not None:
        r.check("%s: Allow: %s" % (name, allow), hget(h, "Allow") == allow,
                repr(hget(h, "Allow")))
    ERROR_BODIES.append((name, body))


def expect_status_body(r, name, resp, want):
    st, h, body = resp
    r.check("%s: 200 %s" % (name, want), st == 200 and body ==
            json.dumps({"status": want}, separators=(",", ":")).encode(),
            "got %s %r" % (st, body[:200]))
    r.check("%s: Content-Type application/json" % name,
            (hget(h, "Content-Type") or "").startswith("application/json"))


def row(s, mid):
    return s.rows("SELECT message_id, state, event_type, resource_id, "
                  "secret_index, body, quarantine_reason FROM webhooks "
                  "WHERE message_id = ?", (mid,))


def count_rows(s):
    return s.rows("SELECT count(*) FROM webhooks")[0][0]


# --- tests --------------------------------------------------------------
def t_parse_prometheus_is_strict(r, s):
    good = ("# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 3\n"
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\n"
            "h_count 1\n")
    v = parse_prometheus(good)
    r.check("parse_prometheus reads a good text",
            metric(v, "a_total", k="v") == 3 and metric(v, "h_count") == 1)
    bad = {
        "sample without TYPE": "x_total 1\n",
        "malformed sample": "# TYPE a counter\na{k=\"v\"}1\n",
        "value not a number": "# TYPE a counter\na one\n",
        "TYPE twice": "# TYPE a counter\n# TYPE a counter\na 1\n",
        "bad TYPE": "# TYPE a countr\na 1\n",
        "duplicate sample": "# TYPE a counter\na 1\na 2\n",
        "HELP twice": "# HELP a x\n# HELP a y\n# TYPE a counter\na 1\n",
        "space in name": "# TYPE a counter\na b 1\n",
        "label value unquoted": "# TYPE a counter\na{k=v} 1\n",
        "label twice": "# TYPE a counter\na{k=\"1\",k=\"2\"} 1\n",
        "junk in labels": "# TYPE a counter\na{k=\"1\" junk} 1\n",
        "bucket without le": "# TYPE h histogram\nh_bucket 1\nh_count 1\n",
        "no final newline": "# TYPE a counter\na 1",
    }
    for name, text in bad.items():
        try:
            parse_prometheus(text)
            ok = False
        except ValueError:
            ok = True
        r.check("parse_prometheus rejects %s" % name, ok)


def t_admin_endpoints(r, s):
    st, h, body = s.admin("/healthz")
    r.check("/healthz 200 JSON", st == 200 and hget(h, "Content-Type")
            .startswith("application/json") and json.loads(body) ==
            {"status": "ok"}, "%s %r" % (st, body))
    st, h, body = s.admin("/readyz")
    obj = json.loads(body)
    r.check("/readyz 200 ready with checks", st == 200 and
            obj.get("ready") is True and obj.get("checks", {}).get(
                "journal") == "ok" and obj["checks"].get(
                    "signing_secret") == "ok", "%s %r" % (st, body))
    r.check("/readyz Content-Type application/json",
            hget(h, "Content-Type").startswith("application/json"))
    st, h, body = s.admin("/metrics")
    ct = hget(h, "Content-Type") or ""
    r.check("/metrics 200 text/plain version=0.0.4", st == 200 and
            ct.startswith("text/plain") and "version=0.0.4" in ct, ct)
    text = body.decode("utf-8")
    try:
        m = parse_prometheus(text)
        parsed = True
    except ValueError as e:
        m, parsed = {}, False
        r.check("/metrics parses", False, str(e))
    if parsed:
        r.check("/metrics parses", True)
    r.check("/metrics ends with a newline", text.endswith("\n"))
    types = dict(line.split(" ")[2:4] for line in text.splitlines()
                 if line.startswith("# TYPE "))
    for fam, typ in (("payhook_http_requests_total", "counter"),
                     ("payhook_webhooks_total", "counter"),
                     ("payhook_signature_failures_total", "counter"),
                     ("payhook_signature_valid_total", "counter"),
                     ("payhook_journal_commit_seconds", "histogram"),
                     ("payhook_webhook_reply_seconds", "histogram"),
                     ("payhook_journal_rows", "gauge"),
                     ("payhook_http_connections_active", "gauge"),
                     ("payhook_http_connection_deadlines_total", "counter"),
                     ("payhook_http_accept_paused_total", "counter")):
        r.check("/metrics has %s %s" % (typ, fam), types.get(fam) == typ,
                repr(types.get(fam)))
    for lab in ("200", "401", "404", "405", "413", "415", "503"):
        r.check("/metrics requests_total{status=%s} present" % lab,
                req_status(lab) in m)
    for reason in ("missing", "malformed", "mismatch"):
        r.check("/metrics signature_failures{%s} present" % reason,
                metric_key("payhook_signature_failures_total",
                           reason=reason) in m)
    for st_ in ("received", "checked", "published", "quarantined"):
        r.check("/metrics journal_rows{%s} present" % st_,
                metric_key("payhook_journal_rows", state=st_) in m)
    # histogram shape: cumulative buckets, +Inf == _count
    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in m.items()
                      if k[0] == "payhook_journal_commit_seconds_bucket"),
                     key=lambda x: x[0])
    r.check("commit histogram has buckets ending in +Inf",
            len(buckets) >= 2 and buckets[-1][0] == float("inf"))
    r.check("commit histogram buckets are cumulative",
            all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])))
    r.check("commit histogram +Inf == _count", buckets and buckets[-1][1] ==
            metric(m, "payhook_journal_commit_seconds_count"))
    # HEAD /healthz (load balancers use it): the head only, no body, so a
    # kept-alive connection stays in sync (RFC 9110 9.3.2)
    buf, closed = raw_exchange(s.admin_port, b"HEAD /healthz HTTP/1.1\r\n"
                               b"Host: x\r\n\r\nGET /healthz HTTP/1.1\r\n"
                               b"Host: x\r\nConnection: close\r\n\r\n")
    try:
        resps = parse_http_responses(buf, head_only=(0,))
    except ValueError:
        resps = []
    r.check("HEAD /healthz then GET on one connection: 200 (no body), 200",
            [x[0] for x in resps] == [200, 200] and resps[0][2] == b"" and
            json.loads(resps[1][2]) == {"status": "ok"}, repr(buf[:300]))
    st, h, body = s.admin("/nope")
    r.check("admin unknown path 404 JSON", st == 404 and "error" in
            json.loads(body))
    st, h, body = s.request("POST", "/healthz", b"{}",
                            {"Content-Type": "application/json"},
                            port=s.admin_port)
    r.check("admin POST 405", st == 405, str(st))


def t_accepted(r, s):
    body = example_body()
    r.check("example signature is the known one", sign(body) == EXAMPLE_SIG,
            sign(body))
    before = s.metrics()
    resp = s.post(body, signature=EXAMPLE_SIG)
    expect_status_body(r, "example webhook", resp, "accepted")
    after = s.metrics()
    expect_deltas(r, "accepted", before, after, {
        req_status(200): 1,
        metric_key("payhook_webhooks_total", result="accepted"): 1,
        metric_key("payhook_signature_valid_total", secret="1"): 1,
        metric_key("payhook_journal_commit_seconds_count"): 1})
    rows = row(s, EXAMPLE_ID)
    r.check("accepted: one row", len(rows) == 1, repr(rows))
    if rows:
        mid, state, et, rid, sec, blob, qr = rows[0]
        r.check("accepted: state received (or later in the pipeline)",
                state in PIPELINE_STATES, state)
        r.check("accepted: event_type and resource_id",
                et == "card_payment_captured" and
                rid == "hu20sqlact5260q2nanm0q8u93", "%s %s" % (et, rid))
        r.check("accepted: secret_index 1", sec == 1, repr(sec))
        r.check("accepted: raw body stored byte for byte",
                bytes(blob) == body)
        r.check("accepted: no quarantine reason", qr is None)
    # cross_check = off: the verdict (skipped) is decided at the door and
    # counted once the row is durable (it was never counted)
    skipped = metric_key("payhook_crosscheck_results_total",
                         verdict="skipped")
    r.check("accepted: counted as verdict skipped", wait_for(
        lambda: metrics_delta(before, s.metrics()).get(skipped) == 1, 3),
        repr(metrics_delta(before, s.metrics()).get(skipped)))
    r.check("accepted: journal_rows gauge follows",
            wait_for(lambda: sum(metric(s.metrics(), "payhook_journal_rows",
                                        state=x) for x in PIPELINE_STATES)
                     >= 1, 3))
    NEVER_ECHO.append(EXAMPLE_SIG.encode())


def t_duplicate(r, s):
    body = example_body()
    before = s.metrics()
    resp = s.post(body)
    expect_status_body(r, "same webhook again", resp, "duplicate")
    after = s.metrics()
    expect_deltas(r, "duplicate", before, after, {
        req_status(200): 1,
        metric_key("payhook_webhooks_total", result="duplicate"): 1,
        metric_key("payhook_signature_valid_total", secret="1"): 1,
        metric_key("payhook_journal_commit_seconds_count"): 1})
    r.check("duplicate: stored once",
            s.rows("SELECT count(*) FROM webhooks WHERE message_id = ?",
                   (EXAMPLE_ID,))[0][0] == 1)
    # same id, different body (a redelivery with reordered keys): still dup
    other = webhook(EXAMPLE_ID, amount=1)
    resp = s.post(other)
    expect_status_body(r, "same id, other body", resp, "duplicate")
    rows = row(s, EXAMPLE_ID)
    r.check("duplicate: first body kept", rows and bytes(rows[0][5]) ==
            example_body())


def t_content_type_params(r, s):
    for i, ct in enumerate(("application/json; charset=utf-8",
                            "application/json;charset=\"UTF-8\"",
                            "Application/JSON", "application/json ; x=y",
                            "application/json; charset=utf8")):
        mid = mk(100 + i)
        resp = s.post(webhook(mid), content_type=ct)
        expect_status_body(r, "Content-Type %r" % ct, resp, "accepted")
        r.check("Content-Type %r: stored" % ct, len(row(s, mid)) == 1)


def t_unknown_event_type(r, s):
    mid = mk(200)
    resp = s.post(webhook(mid, event_type="card_payment_teleported"))
    expect_status_body(r, "unknown event_type", resp, "accepted")
    rows = row(s, mid)
    r.check("unknown event_type: stored with its type, not quarantined",
            rows and rows[0][1] in PIPELINE_STATES and
            rows[0][2] == "card_payment_teleported", repr(rows[:1]))


def t_quarantined(r, s):
    cases = [
        ("not a webhook", b'{"hello":"world","secret_value":"zzz-777"}'),
        ("invalid JSON", b'{"webhook_message_id": "abc", zzz-777'),
        ("id with ../", webhook("../zzz777")),
        ("empty body", b""),
    ]
    for name, body in cases:
        qid = quarantine_id(body)
        before = s.metrics()
        resp = s.post(body)
        expect_status_body(r, "quarantine %s" % name, resp, "quarantined")
        after = s.metrics()
        expect_deltas(r, "quarantine %s" % name, before, after, {
            req_status(200): 1,
            metric_key("payhook_webhooks_total", result="quarantined"): 1,
            metric_key("payhook_signature_valid_total", secret="1"): 1,
            metric_key("payhook_journal_commit_seconds_count"): 1})
        rows = row(s, qid)
        r.check("quarantine %s: row q-sha256(body)" % name, len(rows) == 1,
                repr(rows))
        if rows:
            r.check("quarantine %s: state quarantined" % name,
                    rows[0][1] == "quarantined", rows[0][1])
            r.check("quarantine %s: raw body byte for byte" % name,
                    bytes(rows[0][5]) == body)
            reason = rows[0][6] or ""
            r.check("quarantine %s: a reason without body content" % name,
                    reason and "zzz" not in reason and "777" not in reason,
                    repr(reason))
        r.check("quarantine %s: log does not echo the body" % name,
                "zzz" not in s.log())
    # the same bad body again: answered 200 and still stored once
    body = cases[0][1]
    st, h, b = s.post(body)
    r.check("quarantine redelivery: 200", st == 200 and b in (
        b'{"status":"quarantined"}', b'{"status":"duplicate"}'), repr(b))
    r.check("quarantine redelivery: stored once",
            len(row(s, quarantine_id(body))) == 1)
    r.check("journal_rows{quarantined} gauge follows",
            wait_for(lambda: metric(s.metrics(), "payhook_journal_rows",
                                    state="quarantined") >= len(cases), 3))


def t_signature_failures(r, s):
    mid = mk(300)
    body = webhook(mid)
    good = sign(body)
    cases = [
        ("missing", dict(signature=False), "missing"),
        ("uppercase hex", dict(signature=good.upper()), "malformed"),
        ("63 chars", dict(signature=good[:63]), "malformed"),
        ("65 chars", dict(signature=good + "0"), "malformed"),
        ("empty", dict(signature=""), "malformed"),
        ("sha256= prefix", dict(signature="sha256=" + good), "malformed"),
        ("wrong secret", dict(secret="webhook_test_not_the_secret"),
         "mismatch"),
        ("other body", dict(signature=sign(webhook(mk(301))))
         , "mismatch"),
        ("all zero", dict(signature="0" * 64), "mismatch"),
    ]
    n0 = count_rows(s)
    for name, kw, reason in cases:
        before = s.metrics()
        resp = s.post(body, **kw)
        expect_error(r, "401 %s" % name, resp, 401)
        after = s.metrics()
        expect_deltas(r, "401 %s" % name, before, after, {
            req_status(401): 1,
            metric_key("payhook_signature_failures_total", reason=reason): 1})
        sig = kw.get("signature")
        if sig:
            NEVER_ECHO.append(sig.encode())
    # more than one Pay-Signature header (raw: http.client would merge)
    for name, sigs in (("repeated valid", [good, good]),
                       ("valid + bogus", [good, "0" * 64])):
        before = s.metrics()
        data = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: "
                "application/json\r\n%sContent-Length: %d\r\nConnection: "
                "close\r\n\r\n" % (PATH, "".join(
                    "Pay-Signature: %s\r\n" % x for x in sigs), len(body))
                ).encode() + body
        buf, closed = raw_exchange(s.port, data)
        resps = parse_http_responses(buf)
        r.check("401 %s: one response" % name, len(resps) == 1, repr(buf))
        if resps:
            expect_error(r, "401 %s" % name, (resps[0][0], resps[0][1],
                                              resps[0][2]), 401)
        after = s.metrics()
        expect_deltas(r, "401 %s" % name, before, after, {
            req_status(401): 1, metric_key(
                "payhook_signature_failures_total", reason="malformed"): 1})
    r.check("401: nothing stored", count_rows(s) == n0 and not row(s, mid))
    NEVER_ECHO.append(good.encode())
    NEVER_ECHO.append(body[:40])


def t_unsupported_media_type(r, s):
    mid = mk(400)
    body = webhook(mid)
    n0 = count_rows(s)
    for name, ct, sig in (
            ("text/plain, valid signature", "text/plain", None),
            ("missing Content-Type", None, None),
            ("charset latin1", "application/json; charset=iso-8859-1", None),
            ("charset utf-16", "application/json; charset=utf-16", None),
            ("application/jsonp", "application/jsonp", None),
            ("application/json-patch+json", "application/json-patch+json",
             None),
            ("form encoded", "application/x-www-form-urlencoded", None),
            ("text/plain and no signature (415 before 401)", "text/plain",
             False)):
        before = s.metrics()
        resp = s.post(body, content_type=ct, signature=sig)
        expect_error(r, "415 %s" % name, resp, 415)
        after = s.metrics()
        expect_deltas(r, "415 %s" % name, before, after,
                      {req_status(415): 1})
    r.check("415: nothing stored", count_rows(s) == n0 and not row(s, mid))


def t_method_not_allowed(r, s):
    mid = mk(500)
    body = webhook(mid)
    n0 = count_rows(s)
    h = {"Content-Type": "application/json", "Pay-Signature": sign(body)}
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
        before = s.metrics()
        resp = s.request(method, PATH, body if method != "GET" else None, h)
        expect_error(r, "405 %s" % method, resp, 405, allow="POST")
        after = s.metrics()
        expect_deltas(r, "405 %s" % method, before, after,
                      {req_status(405): 1})
    # method is checked before content type and signature
    resp = s.request("PUT", PATH, b"x", {"Content-Type": "text/plain"})
    expect_error(r, "405 before 415", resp, 405, allow="POST")
    r.check("405: nothing stored", count_rows(s) == n0 and not row(s, mid))


def t_not_found(r, s):
    mid = mk(600)
    body = webhook(mid)
    n0 = count_rows(s)
    for path in ("/", "/webhooks", PATH + "/", "/webhooks%2Fgovuk-pay",
                 "/Webhooks/govuk-pay", "/WEBHOOKS/GOVUK-PAY",
                 "/webhooks/govuk-pay%00", "/webhooks/./govuk-pay",
                 "/x/../webhooks/govuk-pay", "/webhooks/govuk-pay.json",
                 "/healthz", "/metrics"):
        before = s.metrics()
        resp = s.post(body, path=path)
        expect_error(r, "404 POST %s" % path, resp, 404)
        after = s.metrics()
        expect_deltas(r, "404 POST %s" % path, before, after,
                      {req_status(404): 1})
    # path is checked before method
    resp = s.request("GET", "/nope")
    expect_error(r, "404 GET /nope (404 before 405)", resp, 404)
    r.check("404: nothing stored", count_rows(s) == n0 and not row(s, mid))


def padded_webhook(mid, size):
    """A valid webhook padded with JSON whitespace to exactly size bytes."""
    body = webhook(mid)
    pad = size - len(body)
    assert pad >= 0
    return b"{" + b" " * pad + body[1:]


def t_too_large(r, s, limit):
    n0 = count_rows(s)
    # exactly at the limit: accepted
    mid = mk(700)
    body = padded_webhook(mid, limit)
    resp = s.post(body)
    expect_status_body(r, "body of exactly max_body_bytes", resp, "accepted")
    r.check("body of exactly max_body_bytes: stored", len(row(s, mid)) == 1)
    n0 = count_rows(s)
    # one byte over, announced by Content-Length
    mid = mk(701)
    body = padded_webhook(mid, limit + 1)
    before = s.metrics()
    data = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            "\r\nPay-Signature: %s\r\nContent-Length: %d\r\n\r\n" % (
                PATH, sign(body), len(body))).encode() + body
    buf, closed = raw_exchange(s.port, data)
    resps = parse_http_responses(buf)
    r.check("413 Content-Length: status 413", len(resps) == 1 and
            resps[0][0] == 413, repr(buf[:200]))
    r.check("413 Content-Length: connection closed", closed)
    if resps:
        r.check("413 Content-Length: body does not echo the request",
                body[:40] not in resps[0][2] and
                sign(body).encode() not in resps[0][2])
    after = s.metrics()
    # status 413 is a row of the webhook table: it must be counted like any
    # other answer (libevent produces it; see report)
    expect_deltas(r, "413 Content-Length", before, after,
                  {req_status(413): 1})
    # over the limit, chunked (no Content-Length to refuse up front)
    mid = mk(702)
    body = padded_webhook(mid, limit + 4096)
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    data = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            "\r\nPay-Signature: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % (
                PATH, sign(body))).encode() + b"".join(
                    b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + \
        b"0\r\n\r\n"
    buf, closed = raw_exchange(s.port, data)
    resps = parse_http_responses(buf)
    r.check("413 chunked: status 413", len(resps) == 1 and
            resps[0][0] == 413, repr(buf[:200]))
    r.check("413 chunked: connection closed", closed)
    r.check("413: nothing stored", count_rows(s) == n0 and
            not row(s, mk(701)) and not row(s, mk(702)))
    r.check("413: service still serves",
            s.post(webhook(mk(703)))[0] == 200)


def t_keep_alive(r, s):
    before = s.metrics()
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    results, socks = [], set()
    mid = mk(800)
    body = webhook(mid)
    plan = [
        ("POST", PATH, body, {"Pay-Signature": sign(body)}, 200,
         b'{"status":"accepted"}'),
        ("POST", PATH, body, {"Pay-Signature": sign(body)}, 200,
         b'{"status":"duplicate"}'),
        ("POST", PATH, body, {"Pay-Signature": "0" * 64}, 401, None),
        ("POST", "/other", body, {"Pay-Signature": sign(body)}, 404, None),
        ("GET", PATH, None, {}, 405, None),
        ("POST", PATH, body, {"Pay-Signature": sign(body),
                              "Content-Type": "text/plain"}, 415, None),
        ("POST", PATH, webhook(mk(801)),
         {"Pay-Signature": sign(webhook(mk(801)))}, 200,
         b'{"status":"accepted"}'),
    ]
    try:
        for method, path, b, h, want, wbody in plan:
            hh = {"Content-Type": "application/json"}
            hh.update(h)
            conn.request(method, path, body=b, headers=hh)
            resp = conn.getresponse()
            data = resp.read()
            socks.add(id(conn.sock))
            results.append((resp.status, data,
                            resp.getheader("Connection")))
            ok = resp.status == want and (wbody is None or data == wbody)
            r.check("keep-alive %s %s -> %d" % (method, path, want), ok,
                    "got %s %r" % (resp.status, data))
    finally:
        conn.close()
    r.check("keep-alive: one connection for all requests", len(socks) == 1,
            repr(socks))
    r.check("keep-alive: server never asked to close",
            all((c or "").lower() != "close" for _, _, c in results))
    after = s.metrics()
    # Every answer on the one connection is counted by its status, not
    # only the first (libevent refuses evbuffer_copyout_from while a
    # socket's output is frozen between writes: only 1 of 7 was seen).
    want = {}
    for _, _, _, _, code, _ in plan:
        want[req_status(code)] = want.get(req_status(code), 0) + 1
    got = {k: v for k, v in metrics_delta(before, after).items()
           if k[0] == "payhook_http_requests_total"}
    r.check("keep-alive: every answer counted by status",
            got == {k: float(v) for k, v in want.items()},
            "got %s want %s" % (got, want))
    r.check("keep-alive: connections_total +1",
            metric(after, "payhook_http_connections_total") -
            metric(before, "payhook_http_connections_total") == 1)
    r.check("keep-alive: connection released after close",
            wait_for(lambda: metric(s.metrics(),
                                    "payhook_http_connections_active") == 0,
                     3))


def t_expect_continue(r, s):
    """A client that sends Expect: 100-continue and waits for the interim
    answer before its body (.NET's HttpWebRequest does) gets 100 then 200;
    the request is counted once, as 200 (the 100 was counted as "other")."""
    before = s.metrics()
    mid = mk(850)
    body = webhook(mid)
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            "application/json\r\nPay-Signature: %s\r\nExpect: "
            "100-continue\r\nContent-Length: %d\r\nConnection: close"
            "\r\n\r\n" % (PATH, sign(body), len(body))).encode()
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    try:
        c.sendall(head)
        interim = c.recv(4096)
        c.sendall(body)
        buf = b""
        while True:
            got = c.recv(4096)
            if not got:
                break
            buf += got
    finally:
        c.close()
    r.check("100-continue: interim 100 first", interim.startswith(
        b"HTTP/1.1 100 "), repr(interim[:40]))
    resps = parse_http_responses(buf)
    r.check("100-continue: then 200 accepted", resps and resps[0][0] == 200
            and resps[0][2] == b'{"status":"accepted"}', repr(buf[:200]))
    expect_deltas(r, "100-continue", before, s.metrics(), {
        req_status(200): 1,
        metric_key("payhook_webhooks_total", result="accepted"): 1,
        metric_key("payhook_signature_valid_total", secret="1"): 1,
        metric_key("payhook_journal_commit_seconds_count"): 1})


def t_journal_locked_503(r, s):
    """Journal cannot commit: 503 + Retry-After, nothing stored, recovers."""
    path = os.path.join(s.state_dir, "journal.db")
    holder = sqlite3.connect(path, timeout=1, isolation_level=None)
    mid = mk(900)
    body = webhook(mid)
    try:
        holder.execute("BEGIN IMMEDIATE")
        before = s.metrics()
        t0 = time.monotonic()
        resp = s.post(body)
        took = time.monotonic() - t0
        expect_error(r, "503 journal locked", resp, 503, retry_after=True)
        r.check("503 journal locked: answered quickly", took < 1.0,
                "%.3fs" % took)
        after = s.metrics()
        expect_deltas(r, "503 journal locked", before, after, {
            req_status(503): 1,
            metric_key("payhook_signature_valid_total", secret="1"): 1,
            metric_key("payhook_journal_commit_failures_total"): 1})
        st, h, b = s.admin("/readyz")
        obj = json.loads(b)
        r.check("503 journal locked: /readyz 503 not ready",
                st == 503 and obj.get("ready") is False and
                obj["checks"].get("journal") != "ok", "%s %r" % (st, b))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    r.check("503 journal locked: nothing stored", not row(s, mid))
    resp = s.post(body)
    expect_status_body(r, "after the lock is released", resp, "accepted")
    r.check("after the lock: stored once", len(row(s, mid)) == 1)
    st, h, b = s.admin("/readyz")
    r.check("after the lock: /readyz 200 again", st == 200, repr(b))


def t_no_echo(r, s):
    bad = []
    for name, body in ERROR_BODIES:
        for needle in NEVER_ECHO:
            if needle and needle in body:
                bad.append((name, needle[:20]))
    r.check("no error response echoes a secret, signature or body (%d "
            "responses)" % len(ERROR_BODIES), not bad and ERROR_BODIES,
            repr(bad[:5]))
    log = s.log()
    r.check("log never contains a secret or a signature",
            all(n.decode("latin-1") not in log for n in NEVER_ECHO
                if len(n) >= 20), "")


def t_sigterm(r, s):
    """SIGTERM while a client is kept alive: late request gets 503 +
    Retry-After, the process exits 0, the acknowledged webhook is kept."""
    mid, late = mk(1000), mk(1001)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        b = webhook(mid)
        conn.request("POST", PATH, body=b, headers={
            "Content-Type": "application/json", "Pay-Signature": sign(b)})
        resp = conn.getresponse()
        r.check("before SIGTERM: 200 accepted", resp.status == 200 and
                resp.read() == b'{"status":"accepted"}')
        proc = s.proc
        proc.send_signal(signal.SIGTERM)
        r.check("SIGTERM logged", wait_for(
            lambda: "event=shutdown" in s.log(), 3), s.log()[-300:])

        def refused():
            try:
                socket.create_connection(("127.0.0.1", s.port), 1).close()
                return False
            except ConnectionRefusedError:
                return True
            except OSError:
                return False
        # the listening socket is closed, not only no longer accepted
        # from: a new client is refused at once instead of hanging
        r.check("during shutdown: a new connection is refused", wait_for(
            refused, 2))
        b = webhook(late)
        try:
            conn.request("POST", PATH, body=b, headers={
                "Content-Type": "application/json",
                "Pay-Signature": sign(b)})
            resp = conn.getresponse()
            data = resp.read()
            expect_error(r, "during shutdown", (resp.status, dict(
                resp.getheaders()), data), 503, retry_after=True)
            r.check("during shutdown: Connection: close",
                    (resp.getheader("Connection") or "").lower() == "close")
        except (http.client.HTTPException, OSError) as e:
            r.check("during shutdown: kept-alive request answered", False,
                    repr(e))
        try:
            rc = proc.wait(8)
        except Exception:
            rc = None
        r.check("SIGTERM: exit status 0", rc == 0, repr(rc))
    finally:
        conn.close()
    s.stop()
    r.check("SIGTERM: acknowledged webhook is in the journal",
            len(row(s, mid)) == 1)
    r.check("SIGTERM: refused webhook is not", not row(s, late))
    r.check("SIGTERM: journal integrity ok", integrity_check(s) == ["ok"])


def t_rotation(r):
    s = Service(secrets=(SECRET, SECRET2))
    try:
        s.start()
        m0 = s.metrics()
        r.check("rotation: two secrets loaded",
                metric(m0, "payhook_signing_secrets") == 2)
        a, b = mk(1100), mk(1101)
        expect_status_body(r, "rotation: old secret (line 1)",
                           s.post(webhook(a), secret=SECRET), "accepted")
        expect_status_body(r, "rotation: new secret (line 2)",
                           s.post(webhook(b), secret=SECRET2), "accepted")
        m1 = s.metrics()
        expect_deltas(r, "rotation: both secrets", m0, m1, {
            req_status(200): 2,
            metric_key("payhook_webhooks_total", result="accepted"): 2,
            metric_key("payhook_signature_valid_total", secret="1"): 1,
            metric_key("payhook_signature_valid_total", secret="2"): 1,
            metric_key("payhook_journal_commit_seconds_count"): 2})
        r.check("rotation: secret_index recorded per row",
                row(s, a)[0][4] == 1 and row(s, b)[0][4] == 2)
        # drop the old secret, SIGHUP
        s.write_secrets((SECRET2,))
        s.proc.send_signal(signal.SIGHUP)
        r.check("rotation: reload logged", wait_for(
            lambda: "event=secrets_reloaded" in s.log(), 3))
        r.check("rotation: one secret loaded", metric(
            s.metrics(), "payhook_signing_secrets") == 1)
        c, d = mk(1102), mk(1103)
        m1 = s.metrics()
        expect_error(r, "rotation: removed secret now 401",
                     s.post(webhook(c), secret=SECRET), 401)
        expect_status_body(r, "rotation: remaining secret accepted",
                           s.post(webhook(d), secret=SECRET2), "accepted")
        m2 = s.metrics()
        expect_deltas(r, "rotation: after reload", m1, m2, {
            req_status(200): 1, req_status(401): 1,
            metric_key("payhook_signature_failures_total",
                       reason="mismatch"): 1,
            metric_key("payhook_webhooks_total", result="accepted"): 1,
            metric_key("payhook_signature_valid_total", secret="1"): 1,
            metric_key("payhook_journal_commit_seconds_count"): 1})
        r.check("rotation: removed secret stored nothing", not row(s, c))
        # broken files on SIGHUP keep the old secrets
        for i, (name, content) in enumerate((
                ("empty file", ""), ("three secrets",
                                     "webhook_test_aaaaaaaaaa\n"
                                     "webhook_test_bbbbbbbbbb\n"
                                     "webhook_test_cccccccccc\n"),
                ("too short", "abc\n"), ("missing file", None))):
            if content is None:
                os.unlink(s.secret_file)
            else:
                with open(s.secret_file, "w") as f:
                    f.write(content)
            nfail = s.log().count("event=secrets_reload_failed")
            s.proc.send_signal(signal.SIGHUP)
            r.check("rotation: %s on SIGHUP is reported" % name, wait_for(
                lambda: s.log().count("event=secrets_reload_failed") >
                nfail, 3))
            mid = mk(1110 + i)
            expect_status_body(r, "rotation: %s keeps the old secret" % name,
                               s.post(webhook(mid), secret=SECRET2),
                               "accepted")
            expect_error(r, "rotation: %s adds nothing" % name,
                         s.post(webhook(mk(1120 + i)),
                                secret="webhook_test_aaaaaaaaaa"), 401)
            st, h, body = s.admin("/readyz")
            r.check("rotation: %s: still ready" % name, st == 200, repr(body))
        log = s.log()
        r.check("rotation: no secret in the log", SECRET not in log and
                SECRET2 not in log and "webhook_test_aaaa" not in log)
        r.check("rotation: integrity ok", integrity_check(s) == ["ok"])
    finally:
        s.cleanup()


def main():
    r = Runner("contract")
    t_parse_prometheus_is_strict(r, None)
    s = Service()
    try:
        s.start()
        for fn in (t_admin_endpoints, t_accepted, t_duplicate,
                   t_content_type_params, t_unknown_event_type,
                   t_quarantined, t_signature_failures,
                   t_unsupported_media_type, t_method_not_allowed,
                   t_not_found):
            r.run(fn, s)
        r.run(t_too_large, s, 65536)
        for fn in (t_keep_alive, t_expect_continue, t_journal_locked_503,
                   t_no_echo):
            r.run(fn, s)
        r.check("service alive after all cases", s.alive())
        try:
            parse_prometheus(s.admin("/metrics")[2].decode("utf-8"))
            r.check("/metrics still well-formed after all cases", True)
        except ValueError as e:
            r.check("/metrics still well-formed after all cases", False,
                    str(e))
        ids = journal_ids(s)
        r.check("every stored id stored once", all(
            v == 1 for v in ids.values()), repr(ids))
        r.check("journal integrity ok", integrity_check(s) == ["ok"])
        r.run(t_sigterm, s)
    finally:
        s.cleanup()
    r.run(t_rotation)
    r.done()


if __name__ == "__main__":
    main()
