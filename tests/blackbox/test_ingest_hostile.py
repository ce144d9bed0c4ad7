#!/usr/bin/python3
"""test_ingest_hostile.py: a catalogue of hostile or broken requests sent to
the real `payhook serve` over raw sockets. Each case states the answer the
contract (CONTRACT.md, "The webhook endpoint") or HTTP/1.1 (RFC 9110/9112)
requires: a status, or for framing errors "no 2xx, connection closed, nothing
stored". After every case the service must still accept a valid webhook; at
the end the journal must hold exactly the rows the cases should have produced
and pass PRAGMA integrity_check. Prints "hostile: N passed, N failed"."""
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phtest import (SECRET, SECRET2, Runner, Service,  # noqa
                    http_request_bytes, integrity_check, journal_ids,
                    metric, parse_http_responses, pay_id, quarantine_id,
                    raw_exchange, sign, wait_for, webhook)

PATH = "/webhooks/govuk-pay"
# An accepted row moves on by itself (received -> checked -> published).
PIPELINE_STATES = ("received", "checked", "published")
MAX_BODY = 65536
ERROR_JSON = "error"          # expected body: {"error": "..."}
FRAMING = "framing"           # no 2xx, connection closed, nothing stored
SILENT_CLOSE = "silent"       # closed without any response, nothing stored

_next = [0]


def fresh_id():
    _next[0] += 1
    return pay_id(0x7000 + _next[0])


def req(body, sig=None, path=PATH, ctype="application/json", extra=(),
        method="POST", version="HTTP/1.1", close=True, sigs=None):
    """Bytes of one request; sig None = correct signature, False = none."""
    h = []
    if ctype is not None:
        h.append(("Content-Type", ctype))
    if sigs is not None:
        h += [("Pay-Signature", x) for x in sigs]
    elif sig is None:
        h.append(("Pay-Signature", sign(body)))
    elif sig is not False:
        h.append(("Pay-Signature", sig))
    h += list(extra)
    if close:
        h.append(("Connection", "close"))
    return http_request_bytes(method, path, body, h, version=version)


def head(path=PATH, sig=None, body=b"", extra=(), te=None, cl=None,
         ctype="application/json", close=True):
    """Just the head of a POST (for framing cases); body sent separately."""
    lines = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1"]
    if ctype:
        lines.append("Content-Type: %s" % ctype)
    lines.append("Pay-Signature: %s" % (sig or sign(body)))
    if te:
        lines.append("Transfer-Encoding: %s" % te)
    if cl is not None:
        lines.append("Content-Length: %s" % cl)
    lines += ["%s: %s" % kv for kv in extra]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(body, size):
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]),
                                       body[i:i + size])
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"


def envelope(mid, **changes):
    """The example webhook with message id mid and top-level changes."""
    d = json.loads(webhook(mid))
    d.update(changes)
    return d


def dumps(d):
    return json.dumps(d, separators=(",", ":")).encode()


def with_raw(mid, placeholder_key, raw_value):
    """A webhook whose resource.<key> is replaced by raw JSON bytes."""
    d = json.loads(webhook(mid))
    d["resource"][placeholder_key] = "@@RAW@@"
    return dumps(d).replace(b'"@@RAW@@"', raw_value)


class Case:
    def __init__(self, name, data=None, expect=None, store=(), chunks=None,
                 pause=0.0, shut_wr=False, timeout=3.0, head_only=False,
                 allow=None, need_close=True, rst=False):
        self.name, self.data, self.expect = name, data, expect
        self.store = list(store)     # [(message_id, state, body|None)]
        self.chunks, self.pause, self.shut_wr = chunks, pause, shut_wr
        self.timeout, self.head_only, self.allow = timeout, head_only, allow
        self.need_close, self.rst = need_close, rst


def accepted(name, body, mid, **kw):
    return Case(name, req(body, **kw), [(200, "accepted")],
                [(mid, "received", body)])


def quarantined(name, body, **kw):
    return Case(name, req(body, **kw), [(200, "quarantined")],
                [(quarantine_id(body), "quarantined", body)])


def status(name, data, code, **kw):
    return Case(name, data, [(code, ERROR_JSON)], **kw)


def build_cases(port):
    C = []
    # --- Pay-Signature ------------------------------------------------
    b = webhook(fresh_id())
    good = sign(b)
    C.append(status("signature missing -> 401", req(b, sig=False), 401))
    C.append(status("signature empty -> 401", req(b, sig=""), 401))
    C.append(status("signature 63 hex -> 401", req(b, sig=good[:63]), 401))
    C.append(status("signature 65 hex -> 401", req(b, sig=good + "a"), 401))
    C.append(status("signature 128 hex -> 401", req(b, sig=good * 2), 401))
    C.append(status("signature upper-case hex -> 401",
                    req(b, sig=good.upper()), 401))
    C.append(status("signature header twice (same valid value) -> 401",
                    req(b, sigs=[good, good]), 401))
    C.append(status("signature header twice (valid + bogus) -> 401",
                    req(b, sigs=["0" * 64, good]), 401))
    C.append(status("signature of a different body -> 401",
                    req(b, sig=sign(webhook(fresh_id()))), 401))
    C.append(status("signature of the body plus a newline -> 401",
                    req(b, sig=sign(b + b"\n")), 401))
    C.append(status("signature with a space inside -> 401",
                    req(b, sig=good[:32] + " " + good[32:]), 401))
    C.append(status("signature 64 non-hex chars -> 401",
                    req(b, sig="g" * 64), 401))
    C.append(status("signature with sha256= prefix -> 401",
                    req(b, sig="sha256=" + good), 401))
    C.append(status("signature by a secret not loaded -> 401",
                    req(b, sig=sign(b, SECRET2)), 401))
    C.append(status("signature with a NUL byte inside -> 401",
                    req(b, sig=good[:10] + "\x00" + good[11:]), 401))
    C.append(status("signature as base64 of the MAC -> 401",
                    req(b, sig=__import__("base64").b64encode(
                        bytes.fromhex(good)).decode()), 401))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(accepted("signature with surrounding spaces -> 200 (RFC 9110 "
                      "5.5: OWS is not part of the value)", b2, mid,
                      sig="  " + sign(b2) + "  "))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(Case("header name case-insensitive (pAY-sIGNATURE) -> 200",
                  http_request_bytes("POST", PATH, b2, [
                      ("content-type", "application/json"),
                      ("pAY-sIGNATURE", sign(b2)),
                      ("Connection", "close")]),
                  [(200, "accepted")], [(mid, "received", b2)]))

    # --- framing and size --------------------------------------------
    b = webhook(fresh_id())
    C.append(Case("Content-Length larger than sent, then close -> closed, "
                  "nothing stored", head(body=b, cl=len(b) + 500) + b,
                  SILENT_CLOSE, shut_wr=True))
    C.append(Case("Content-Length larger than sent, then RST -> nothing "
                  "stored", head(body=b, cl=len(b) + 500) + b[:50],
                  SILENT_CLOSE, rst=True))
    big = b"{" + b" " * MAX_BODY + b"}"
    C.append(Case("Content-Length over max_body_bytes -> 413, closed",
                  head(body=big, cl=len(big)), [(413, None)]))
    C.append(Case("Content-Length 10^18 -> 413, closed",
                  head(body=big, cl=10 ** 18), [(413, None)]))
    C.append(Case("chunked over max_body_bytes -> 413, closed",
                  head(body=big, te="chunked") + chunked(big, 8192),
                  [(413, None)]))
    C.append(Case("Expect: 100-continue over the limit -> 413 before the "
                  "body", head(body=big, cl=len(big),
                               extra=[("Expect", "100-continue")]),
                  [(413, None)]))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(Case("valid chunked under the limit -> 200 accepted",
                  head(body=b2, te="chunked") + chunked(b2, 100),
                  [(200, "accepted")], [(mid, "received", b2)]))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(Case("chunked in 1-byte chunks, sent in pieces -> 200",
                  None, [(200, "accepted")], [(mid, "received", b2)],
                  chunks=[head(body=b2, te="chunked"),
                          chunked(b2, 1)[:700], chunked(b2, 1)[700:]],
                  pause=0.05))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(Case("Expect: 100-continue under the limit -> 100 then 200",
                  None, [(200, "accepted")], [(mid, "received", b2)],
                  chunks=[head(body=b2, cl=len(b2), extra=[
                      ("Expect", "100-continue")]), b2], pause=0.2))
    b = webhook(fresh_id())
    C.append(Case("chunk size not hex (zz) -> framing error",
                  head(body=b, te="chunked") + b"zz\r\n" + b + b"\r\n0\r\n"
                  b"\r\n", FRAMING))
    C.append(Case("chunk size negative -> framing error",
                  head(body=b, te="chunked") + b"-5\r\nabcde\r\n0\r\n\r\n",
                  FRAMING))
    C.append(Case("chunk size 2^80 -> framing error",
                  head(body=b, te="chunked") + b"100000000000000000000\r\n"
                  + b + b"\r\n0\r\n\r\n", FRAMING))
    C.append(Case("chunk longer than its size line says -> framing error",
                  head(body=b, te="chunked") + b"5\r\n" + b + b"\r\n0\r\n"
                  b"\r\n", FRAMING))
    C.append(Case("chunked body cut short, then close -> nothing stored",
                  head(body=b, te="chunked") + b"%x\r\n" % len(b) +
                  b[:100], SILENT_CLOSE, shut_wr=True))
    C.append(Case("Content-Length and Transfer-Encoding both -> 400",
                  head(body=b, te="chunked", cl=5) + chunked(b, 4096),
                  [(400, None)]))
    C.append(Case("Content-Length not a number -> 400",
                  head(body=b, cl="12abc") + b, [(400, None)]))
    C.append(Case("Content-Length negative -> 400",
                  head(body=b, cl="-1") + b, [(400, None)]))
    C.append(Case("two different Content-Length headers -> 400 (RFC 9112 "
                  "6.3)", head(body=b, cl=len(b),
                               extra=[("Content-Length", "5")]) + b,
                  [(400, None)]))

    # --- bodies with a valid signature: quarantined ------------------
    def q(name, body):
        C.append(quarantined(name + " -> 200 quarantined", body))

    m = fresh_id()
    q("invalid JSON", b'{"webhook_message_id":"%s",' % m.encode())
    q("invalid UTF-8 (0xff) in a string",
      with_raw(fresh_id(), "description", b'"Pay \xff tax"'))
    q("overlong UTF-8 (C0 AF = '/')",
      with_raw(fresh_id(), "description", b'"a\xc0\xafb"'))
    q("UTF-8 encoded surrogate (ED A0 80)",
      with_raw(fresh_id(), "description", b'"a\xed\xa0\x80b"'))
    q("truncated UTF-8 sequence",
      with_raw(fresh_id(), "description", b'"a\xe2\x82"'))
    q("10,000 nested arrays in metadata",
      with_raw(fresh_id(), "metadata", b"[" * 10000 + b"]" * 10000))
    q("10,000 nested objects at top level",
      b'{"a":' * 10000 + b"1" + b"}" * 10000)
    q("amount 1e400", with_raw(fresh_id(), "amount", b"1e400"))
    q("amount 99999999999999999999",
      with_raw(fresh_id(), "amount", b"99999999999999999999"))
    q("amount -1", with_raw(fresh_id(), "amount", b"-1"))
    q("amount 1.5", with_raw(fresh_id(), "amount", b"1.5"))
    q("amount NaN", with_raw(fresh_id(), "amount", b"NaN"))
    q("amount Infinity", with_raw(fresh_id(), "amount", b"Infinity"))
    q("amount as a string", with_raw(fresh_id(), "amount", b'"5000"'))
    d = webhook(fresh_id())
    q("duplicate key webhook_message_id", d[:-1] + b',"webhook_message_id":"'
      + fresh_id().encode() + b'"}')
    q("trailing garbage after the object", webhook(fresh_id()) + b"garbage")
    q("two objects back to back", webhook(fresh_id()) * 2)
    q("UTF-8 BOM before the object", b"\xef\xbb\xbf" + webhook(fresh_id()))
    q("raw NUL byte inside a string",
      with_raw(fresh_id(), "description", b'"a\x00b"'))
    q("raw control character inside a string",
      with_raw(fresh_id(), "description", b'"a\x01b"'))
    q("webhook_message_id ../x", webhook("../x"))
    q("webhook_message_id %2F", webhook("%2F"))
    q("webhook_message_id upper case", webhook("ABCDEFGHIJ"))
    q("webhook_message_id 27 chars", webhook("a" * 27))
    q("webhook_message_id empty", webhook(""))
    q("webhook_message_id with w (outside 0-9a-v)", webhook("abcw"))
    q("resource_id ../../etc/passwd",
      dumps(envelope(fresh_id(), resource_id="../../etc/passwd")))
    q("webhook_message_id a number",
      dumps(envelope(fresh_id(), webhook_message_id=12345)))
    q("resource not an object", dumps(envelope(fresh_id(), resource=[])))
    q("envelope key missing (event_type)", dumps({
        k: v for k, v in envelope(fresh_id()).items()
        if k != "event_type"}))
    q("top-level array", b"[" + webhook(fresh_id()) + b"]")
    q("JSON null", b"null")
    q("empty body", b"")
    q("whitespace only", b" \r\n\t ")
    q("lone surrogate escape in a string",
      with_raw(fresh_id(), "description", b'"a\\ud800b"'))
    mid = fresh_id()
    b2 = webhook(mid, event_type="card_payment_unheard_of")
    C.append(accepted("unknown event_type -> 200 accepted", b2, mid))

    # --- method -------------------------------------------------------
    b = webhook(fresh_id())
    for meth in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
        C.append(Case("%s on the webhook path -> 405 Allow: POST" % meth,
                      req(b if meth not in ("GET", "TRACE") else b"",
                          method=meth), [(405, ERROR_JSON)], allow="POST"))
    C.append(Case("HEAD on the webhook path -> 405 Allow: POST, no body "
                  "(RFC 9110 9.3.2)", req(None, method="HEAD"),
                  [(405, None)], allow="POST", head_only=True))
    C.append(Case("unknown method FOO -> not 2xx, nothing stored",
                  req(b, method="FOO"), FRAMING))
    C.append(Case("CONNECT -> not 2xx, nothing stored",
                  b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % port,
                  FRAMING, timeout=1.0, need_close=False))

    # --- path ---------------------------------------------------------
    for path in ("/", "/webhooks", PATH + "/", "/webhooks%2Fgovuk-pay",
                 "/Webhooks/Govuk-Pay", "/WEBHOOKS/GOVUK-PAY",
                 "/x/../webhooks/govuk-pay", "/webhooks/./govuk-pay",
                 "/webhooks//govuk-pay", "//webhooks/govuk-pay",
                 "/%77ebhooks/govuk-pay", "/webhooks/govuk-pay%20",
                 "/../../etc/passwd", "*"):
        C.append(status("POST %s -> 404" % path, req(b, path=path), 404))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(accepted("absolute-form URI -> 200 (RFC 9112 3.2.2)", b2, mid,
                      path="http://127.0.0.1:%d%s" % (port, PATH)))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(accepted("query string on the path -> 200 (path matches)", b2,
                      mid, path=PATH + "?from=test&x=%2F"))
    C.append(Case("URL of 100,000 bytes -> rejected (over max_header_bytes)",
                  req(b, path=PATH + "?" + "a" * 100000), FRAMING))
    C.append(Case("NUL byte in the path -> not 2xx",
                  req(b, path="/webhooks/govuk\x00-pay"), FRAMING,
                  need_close=False))

    # --- content type -------------------------------------------------
    for ct in ("text/plain", None, "", "application/json; charset=latin1",
               "application/jsonx", "application/xml", "text/json",
               "multipart/form-data; boundary=x"):
        C.append(status("Content-Type %r with valid signature -> 415" % ct,
                        req(b, ctype=ct), 415))

    # --- headers and request line --------------------------------------
    C.append(Case("one header over max_header_bytes -> rejected",
                  req(b, extra=[("X-Big", "a" * 9000)]), FRAMING))
    C.append(Case("5,000 headers -> rejected",
                  req(b, extra=[("X-H%d" % i, "y") for i in range(5000)]),
                  FRAMING))
    C.append(Case("request line garbage -> 400",
                  b"\x00\x01\x02GARBAGE\xff\r\n\r\n", [(400, None)]))
    C.append(Case("HTTP/0.9 request -> 400", b"GET " + PATH.encode() +
                  b"\r\n", [(400, None)]))
    C.append(Case("HTTP/2 preface on an HTTP/1.1 port -> 400",
                  b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [(400, None)]))
    C.append(Case("TLS ClientHello on a plain port -> not 2xx",
                  b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" +
                  b"\x00" * 160, FRAMING, timeout=1.0, need_close=False))
    C.append(Case("NUL byte in a header name -> 400",
                  req(b, extra=[("X-A\x00b", "1")]), [(400, None)]))
    C.append(Case("header line without a colon -> 400",
                  req(b, extra=[("NoColonHere", "")]).replace(
                      b"NoColonHere: \r\n", b"NoColonHere\r\n"),
                  [(400, None)]))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(Case("HTTP/1.0 POST -> 200, then closed", req(
        b2, version="HTTP/1.0", close=False), [(200, "accepted")],
        [(mid, "received", b2)]))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(Case("bare LF line endings -> 200 (RFC 9112 2.2 allows)",
                  req(b2).replace(b"\r\n", b"\n"), [(200, "accepted")],
                  [(mid, "received", b2)]))

    # --- pipelining and connection abuse ------------------------------
    ids = [fresh_id() for _ in range(3)]
    bodies = [webhook(i) for i in ids]
    C.append(Case("three webhooks pipelined in one write -> 3 x 200 in "
                  "order", b"".join(req(x, close=False) for x in bodies[:2])
                  + req(bodies[2]), [(200, "accepted")] * 3,
                  [(i, "received", x) for i, x in zip(ids, bodies)]))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(Case("pipelined 200, dup, 401, 404, 405, 415 -> in order",
                  req(b2, close=False) + req(b2, close=False) +
                  req(b2, sig="0" * 64, close=False) +
                  req(b2, path="/x", close=False) +
                  req(b2, method="PUT", close=False) +
                  req(b2, ctype="text/plain"),
                  [(200, "accepted"), (200, "duplicate"), (401, ERROR_JSON),
                   (404, ERROR_JSON), (405, ERROR_JSON), (415, ERROR_JSON)],
                  [(mid, "received", b2)]))
    mid = fresh_id()
    b2 = webhook(mid)
    C.append(Case("pipelined webhook then garbage -> 200 then 400",
                  req(b2, close=False) + b"\x00GARBAGE\r\n\r\n",
                  [(200, "accepted"), (400, None)], [(mid, "received", b2)]))
    C.append(Case("connect and close without a byte -> nothing", b"",
                  SILENT_CLOSE, shut_wr=True))
    C.append(Case("half a request line then RST -> nothing",
                  b"POST /webh", SILENT_CLOSE, rst=True))
    return C


def send_case(port, c):
    if c.rst:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        try:
            s.sendall(c.data)
            time.sleep(0.05)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))
        finally:
            s.close()
        return b"", True
    return raw_exchange(port, c.data, timeout=c.timeout, shut_wr=c.shut_wr,
                        chunks=c.chunks, pause=c.pause)


def same_state(got, want):
    if want == "received":
        return got in PIPELINE_STATES
    return got == want


def run_case(r, s, c, expected_rows):
    n0 = s.rows("SELECT count(*) FROM webhooks")[0][0]
    t0 = time.monotonic()
    buf, closed = send_case(s.port, c)
    took = time.monotonic() - t0
    try:
        resps = parse_http_responses(buf, head_only=(0,) if c.head_only
                                     else ())
        parse_err = None
    except ValueError as e:
        resps, parse_err = [], str(e)
    name = c.name
    if c.expect == SILENT_CLOSE:
        r.check(name, closed and not buf, "closed=%s got %r" % (closed,
                                                                buf[:120]))
    elif c.expect == FRAMING:
        codes = [x[0] for x in resps]
        ok = (parse_err is None and all(not 200 <= x < 300 for x in codes)
              and (closed or not c.need_close))
        r.check(name, ok, "closed=%s codes=%s err=%s raw=%r" % (
            closed, codes, parse_err, buf[:120]))
    else:
        codes = [x[0] for x in resps]
        want = [x[0] for x in c.expect]
        ok = parse_err is None and codes == want
        for (code, hdrs, body), (wcode, wbody) in zip(resps, c.expect):
            if wbody == ERROR_JSON:
                try:
                    obj = json.loads(body)
                    ok = ok and list(obj) == ["error"] and hdrs.get(
                        "content-type", "").startswith("application/json")
                except ValueError:
                    ok = False
            elif wbody is not None:
                ok = ok and body == json.dumps(
                    {"status": wbody}, separators=(",", ":")).encode()
        if c.allow and resps:
            ok = ok and resps[0][1].get("allow") == c.allow
        if c.head_only and resps:
            # a HEAD response carries no body: nothing may follow its head
            ok = ok and len(resps) == 1 and resps[0][2] == b"" and \
                buf.endswith(b"\r\n\r\n")
        if any(x[0] in (413, 400) for x in resps) or c.data and \
                b"Connection: close" in (c.data or b""):
            ok = ok and closed
        r.check(name, ok, "closed=%s codes=%s want=%s err=%s raw=%r" % (
            closed, codes, want, parse_err, buf[:300]))
    r.check(name + " [bounded in time]", took < c.timeout + 2.0,
            "%.2fs" % took)
    # rows: exactly what the case should have produced
    for mid, state, body in c.store:
        expected_rows[mid] = state
    want_new = len([1 for mid, _, _ in c.store])
    n1 = s.rows("SELECT count(*) FROM webhooks")[0][0]
    ok = n1 - n0 == want_new
    for mid, state, body in c.store:
        got = s.rows("SELECT state, body FROM webhooks WHERE message_id = ?",
                     (mid,))
        ok = ok and len(got) == 1 and same_state(got[0][0], state) and (
            body is None or bytes(got[0][1]) == body)
    r.check(name + " [journal: exactly the expected rows]", ok,
            "new rows %d, expected %d" % (n1 - n0, want_new))


def still_serves(r, s, name, expected_rows):
    if not s.alive():
        r.check(name + " [service survived]", False,
                "exit %s\n%s" % (s.proc.poll(), s.log()[-2000:]))
        s.stop()
        s.start()     # keep going with the same journal
        return
    mid = fresh_id()
    try:
        st, h, body = s.request(
            "POST", PATH, webhook(mid), {
                "Content-Type": "application/json",
                "Pay-Signature": sign(webhook(mid))}, timeout=5)
    except OSError as e:
        st, body = None, repr(e).encode()
    ok = st == 200 and body == b'{"status":"accepted"}'
    if ok:
        expected_rows[mid] = "received"
    r.check(name + " [then a valid webhook is accepted]", ok,
            "%s %r" % (st, body[:100]))


def main():
    r = Runner("hostile")
    s = Service({"request_timeout": "5s"})
    expected = {}
    try:
        s.start()
        cases = build_cases(s.port)
        names = [c.name for c in cases]
        r.check("catalogue has at least 40 cases (%d)" % len(cases),
                len(cases) >= 40)
        r.check("case names are unique", len(set(names)) == len(names))
        for c in cases:
            try:
                run_case(r, s, c, expected)
            except Exception as e:   # a case that raises is a failed case
                r.check(c.name + " (raised)", False, repr(e))
            still_serves(r, s, c.name, expected)
        ids = journal_ids(s)
        r.check("journal holds exactly the expected message ids",
                set(ids) == set(expected),
                "unexpected %s missing %s" % (
                    sorted(set(ids) - set(expected))[:5],
                    sorted(set(expected) - set(ids))[:5]))
        r.check("every id stored exactly once",
                all(v == 1 for v in ids.values()))
        states = dict(s.rows("SELECT message_id, state FROM webhooks"))
        r.check("every row in the expected state", set(states) == set(
            expected) and all(same_state(states[k], expected[k])
                              for k in expected))
        r.check("PRAGMA integrity_check ok", integrity_check(s) == ["ok"])
        r.check("no connection leaked", wait_for(
            lambda: metric(s.metrics(), "payhook_http_connections_active")
            == 0, 6), str(metric(s.metrics(),
                                 "payhook_http_connections_active")))
        log = s.log()
        r.check("log never contains the secret", SECRET not in log)
        r.check("service still alive at the end", s.alive())
    finally:
        rc = s.stop()
        r.check("SIGTERM at the end: exit 0", rc == 0, repr(rc))
        s.cleanup()
    r.done()


if __name__ == "__main__":
    main()
