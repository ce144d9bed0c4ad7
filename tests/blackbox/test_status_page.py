#!/usr/bin/python3
"""test_status_page.py: the admin listener's status page (/ and /status.json).

Starts `payhook serve`, sends webhooks (one of them quarantined) and checks:
/status.json is JSON whose head seq, pending rows and counters equal
/metrics, whose newest events match the journal's events (ids, topics,
verdicts only) and which carries no body content; / is HTML with a strict
Content-Security-Policy; payhook_ready is exported. Then headless Chromium
(Debian's `chromium`) loads / and the DOM its script built must show the
head seq, the counters and the newest event ids; a screenshot is taken (set
PAYHOOK_STATUS_SCREENSHOT=docs/status-page.png to keep it). Without
chromium the browser part is skipped (exit 77).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

EMAIL = "sherlock.holmes@example.com"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-quic", "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--window-size=1200,900"]


def load(svc):
    kinds = ["succeeded", "captured", "refunded", "failed", "expired"]
    bodies = [phtest.webhook(phtest.pay_id(4000 + i), phtest.pay_id(9000 + i),
                             "card_payment_" + kinds[i % len(kinds)])
              for i in range(8)]
    sts = phtest.post_many(svc, bodies)
    st, _, _ = svc.post(b'{"email":"%s"}' % EMAIL.encode())
    return sts + [st]


def check_json(r, svc):
    st, h, body = svc.admin("/status.json")
    r.check("/status.json 200 application/json", st == 200 and
            h.get("Content-Type", "").startswith("application/json"), h)
    s = json.loads(body)
    m = svc.metrics()
    head = phtest.metric(m, "payhook_head_seq")
    r.check("head_seq equals /metrics", s["head_seq"] == head and head == 9,
            (s["head_seq"], head))
    r.check("pending rows equal payhook_journal_rows",
            s["pending"]["received"] == phtest.metric(
                m, "payhook_journal_rows", state="received") and
            s["pending"]["checked"] == phtest.metric(
                m, "payhook_journal_rows", state="checked"), s["pending"])
    names = {k[0] + ("{%s}" % ",".join('%s="%s"' % kv for kv in sorted(k[1]))
                     if k[1] else "") for k in m}
    r.check("every counter on the page is a /metrics sample",
            set(s["metrics"]) <= names, set(s["metrics"]) - names)
    r.check("counters: 8 accepted, 1 quarantined",
            s["metrics"].get('payhook_webhooks_total{result="accepted"}') ==
            8 and s["metrics"].get(
                'payhook_webhooks_total{result="quarantined"}') == 1)
    r.check("ready and payhook_ready = 1", s["ready"] is True and
            phtest.metric(m, "payhook_ready") == 1, s["checks"])
    r.check("no body content in /status.json", EMAIL.encode() not in body
            and b"Sherlock" not in body and b"Baker" not in body)
    if not s["events_available"]:
        r.skip("newest events", "the journal is not attached to the admin "
               "listener in this build (serve.c: admin_set_journal)")
        return s
    journal = {seq: (topic, json.loads(j)) for seq, topic, j in
               phtest.journal_events(svc)}
    ok = len(s["events"]) == 9
    for e in s["events"]:
        topic, ev = journal.get(e["seq"], (None, {}))
        ok = ok and e["topic"] == topic
        if topic != "alert.quarantined":
            ok = ok and e["event_id"] == ev.get("event_id") and \
                e["payment_id"] == ev.get("payment_id") and \
                e["verdict"] == "skipped"
        else:
            ok = ok and e["event_id"].startswith("q-") and \
                len(e["event_id"]) == 18
    r.check("newest events match the journal (ids, topics, verdicts)", ok,
            s["events"][:3])
    r.check("newest first", [e["seq"] for e in s["events"]] ==
            list(range(9, 0, -1)))
    return s


def check_page(r, svc):
    st, h, body = svc.admin("/")
    csp = h.get("Content-Security-Policy", "")
    r.check("/ is HTML", st == 200 and h.get("Content-Type", "").startswith(
        "text/html"), h)
    r.check("/ has a strict CSP", "default-src 'none'" in csp and
            "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp,
            csp)
    r.check("/ carries no data of its own (the script fetches it)",
            EMAIL.encode() not in body and b"status.json" in body)
    st, _, _ = svc.admin("/nope")
    r.check("other paths still 404", st == 404, st)


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def check_browser(r, svc, s):
    exe = chromium()
    if exe is None:
        r.skip("headless chromium", "chromium is not installed "
               "(apt-get install chromium)")
        return
    url = "http://127.0.0.1:%d/" % svc.admin_port
    prof = tempfile.mkdtemp(prefix="payhook-chromium-")
    try:
        p = subprocess.run([exe] + CHROMIUM_FLAGS + [
            "--user-data-dir=" + os.path.join(prof, "dom"),
            "--virtual-time-budget=5000", "--dump-dom", url],
            capture_output=True, text=True, timeout=60)
        dom = p.stdout

        def text(eid):
            m = re.search(r'id="%s"[^>]*>([^<]*)<' % eid, dom)
            return m.group(1) if m else None
        r.check("chromium rendered the page", p.returncode == 0 and
                "<title>payhook status</title>" in dom, p.stderr[-500:])
        r.check("page shows the head seq (%s)" % s["head_seq"],
                text("head_seq") == str(s["head_seq"]), text("head_seq"))
        r.check("page says ready", text("state") == "ready", text("state"))
        r.check("page shows pending rows", text("pending") == str(
            s["pending"]["received"] + s["pending"]["checked"]))
        r.check("page script ran (updated time set)",
                text("updated") not in (None, "never"), text("updated"))
        r.check("page shows the accepted counter",
                re.search(r"<td>webhooks accepted</td><td[^>]*>8</td>", dom)
                is not None)
        r.check("no body content in the rendered page", EMAIL not in dom)
        if s["events_available"]:
            ids = [e["event_id"] for e in s["events"]]
            r.check("page lists the newest event ids",
                    all(i in dom for i in ids), ids[:3])
        shot = os.path.join(prof, "status.png")
        p = subprocess.run([exe] + CHROMIUM_FLAGS + [
            "--user-data-dir=" + os.path.join(prof, "shot"),
            "--virtual-time-budget=5000", "--screenshot=" + shot, url],
            capture_output=True, text=True, timeout=60)
        ok = os.path.exists(shot) and os.path.getsize(shot) > 1000
        with open(shot, "rb") if ok else open(os.devnull, "rb") as f:
            ok = ok and f.read(8) == b"\x89PNG\r\n\x1a\n"
        r.check("screenshot is a PNG", ok, p.stderr[-300:])
        keep = os.environ.get("PAYHOOK_STATUS_SCREENSHOT")
        if ok and keep:
            shutil.copy(shot, keep)
            print("screenshot kept in %s" % keep)
    finally:
        shutil.rmtree(prof, ignore_errors=True)


def main():
    r = phtest.Runner("test_status_page")
    svc = phtest.Service()
    try:
        svc.start()
        sts = load(svc)
        r.check("webhooks answered 200", sts == [200] * 9, sts)
        r.check("all published", phtest.wait_for(
            lambda: phtest.metric(svc.metrics(), "payhook_head_seq") == 9
            and phtest.metric(svc.metrics(), "payhook_publish_queue") == 0,
            10))
        time.sleep(0.6)     # the journal_rows gauge caches for 500 ms
        s = check_json(r, svc)
        check_page(r, svc)
        check_browser(r, svc, s)
    finally:
        svc.cleanup()
    r.done_skippable()


if __name__ == "__main__":
    main()
