"""payhook-sim end to end: every lifecycle path (success, delayed capture,
declined, error, user cancel, service cancel, expiry), the webhooks each
emits (event type, webhook status vocabulary, envelope order, signature by
`openssl dgst -hmac`, schemas/govuk_pay_webhook.json), refunds and lies.
"""

import json
import re
import sys

sys.dont_write_bytecode = True
from simharness import (SECRET, Checks, Receiver, Sim, load_webhook_schema,
                        openssl_hmac, wait_for)

ENVELOPE = ["webhook_message_id", "created_date", "resource_id",
            "api_version", "resource_type", "event_type", "resource"]
GET_ONLY = ["provider_id", "_links", "card_brand", "authorisation_mode",
            "agreement_id", "exemption"]
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ID_RE = re.compile(r"^[0-9a-v]{1,26}$")

c = Checks("test_sim_lifecycle")
validator, schema_err = load_webhook_schema()
if validator is None:
    print("NOTE: webhook schema unavailable (%s); schema checks fail" %
          schema_err)


def check_webhook(j, raw, headers, event_type, payment, status, code=None):
    """Everything a receiver can observe about one delivery."""
    where = "%s/%s" % (event_type, payment)
    c.eq(list(j.keys()), ENVELOPE, "envelope key order " + where)
    c.eq(raw, json.dumps(j, separators=(",", ":"),
                         ensure_ascii=False).encode(),
         "compact JSON " + where)
    c.eq(j["event_type"], event_type, "event_type " + where)
    c.eq(j["resource_id"], payment, "resource_id " + where)
    c.eq(j["resource_type"], "PAYMENT", "resource_type " + where)
    c.eq(j["api_version"], 1, "api_version " + where)
    c.check(ID_RE.match(j["webhook_message_id"]), "message id " + where)
    c.check(TS_RE.match(j["created_date"]), "created_date " + where)
    res = j["resource"]
    keys = list(res.keys())
    c.eq(keys, sorted(keys, key=lambda k: (len(k), k.encode())),
         "resource keys in JSONB order " + where)
    c.eq(res["state"].get("status"), status, "webhook status " + where)
    c.eq(res["state"].get("code"), code, "webhook code " + where)
    c.check("can_retry" not in res["state"], "no can_retry " + where)
    for k in GET_ONLY:
        c.check(k not in res, "no %s in resource %s" % (k, where))
    if "card_details" in res:
        c.check("wallet_type" not in res["card_details"],
                "no wallet_type " + where)
    c.eq(headers.get("content-type"), "application/json",
         "content type " + where)
    sig = headers.get("pay-signature")
    c.eq(sig, openssl_hmac(SECRET, raw), "signature (openssl) " + where)
    if validator is not None:
        errs = [e.message for e in validator.iter_errors(j)]
        c.check(not errs, "schema-valid " + where, errs[:3])
    else:
        c.check(False, "webhook schema available", schema_err)


def events_for(rx, pid):
    return [(j, r) for j, r in rx.by_event(pid)]


def wait_events(rx, pid, n, timeout=10):
    return wait_for(lambda: len(events_for(rx, pid)) >= n and
                    events_for(rx, pid), timeout) or events_for(rx, pid)


def get(sim, pid):
    r = sim.api("GET", "/v1/payments/" + pid)
    return r.json if r.status == 200 else {"status": r.status}


def state(sim, pid):
    return get(sim, pid).get("state", {})


with Receiver() as rx, Sim(webhook_url=rx.url, extra=[
        "--capture-delay-ms", "100", "--refund-delay-ms", "100"]) as sim:
    # --- success, immediate capture ---------------------------------
    p = sim.create(email="a@example.org", metadata={"ledger": "AB1", "n": 3})
    pid = p["payment_id"]
    c.check(re.match(r"^[0-9a-v]{26}$", pid), "payment_id format")
    c.eq(p["state"], {"status": "created", "finished": False}, "created")
    links = p["_links"]
    for k in ("self", "next_url", "next_url_post", "events", "refunds",
              "cancel"):
        c.check(k in links, "create link " + k)
    c.check("capture" not in links, "no capture link when created")
    nxt = links["next_url"]["href"].split(sim.base(), 1)[-1]
    r = sim.api("GET", nxt, key=None)
    c.eq(r.status, 200, "next_url opens the payment page")
    r = sim.api("GET", nxt, key=None)
    c.eq(r.status, 400, "next_url is single-use")
    g = get(sim, pid)
    c.eq(g["state"]["status"], "started", "visit -> started")
    c.check("next_url" not in g["_links"], "no next_url once started")
    r = sim.pay(pid, card_number="4444333322221111", confirm=False)
    c.eq(r.status, 200, "card accepted")
    c.eq(state(sim, pid), {"status": "submitted", "finished": False},
         "card -> submitted")
    r = sim.ctl("POST", "/payments/%s/confirm" % pid)
    c.eq(state(sim, pid), {"status": "success", "finished": True},
         "confirm -> success")
    evs = wait_events(rx, pid, 2)
    types = [j["event_type"] for j, _ in evs]
    c.eq(sorted(types), ["card_payment_captured", "card_payment_succeeded"],
         "success emits succeeded then captured")
    for j, raw in evs:
        check_webhook(j, raw["body"], raw["headers"], j["event_type"], pid,
                      "success")
    g = get(sim, pid)
    c.check("captured_date" in g["settlement_summary"],
            "captured_date after capture")
    res = evs[0][0]["resource"]
    for k in ("amount", "reference", "description", "email", "metadata",
              "created_date", "language", "return_url"):
        c.eq(res.get(k), g.get(k), "webhook resource %s matches GET" % k)
    # refunds
    r = sim.api("POST", "/v1/payments/%s/refunds" % pid, {"amount": 450})
    c.eq(r.status, 202, "refund accepted")
    rid = r.json["refund_id"]
    c.eq(r.json["status"], "submitted", "refund submitted")
    g = get(sim, pid)
    c.eq(g["refund_summary"], {"status": "available",
                               "amount_available": 1000,
                               "amount_submitted": 450}, "refund summary")
    evs = wait_events(rx, pid, 3)
    ref = [j for j, _ in evs if j["event_type"] == "card_payment_refunded"]
    c.eq(len(ref), 1, "card_payment_refunded sent")
    if ref:
        c.eq(ref[0]["resource_id"], pid, "refund webhook names the parent")
        c.eq(ref[0]["resource"]["payment_id"], pid, "parent resource")
        raw = [r for j, r in evs if j["event_type"] ==
               "card_payment_refunded"][0]
        check_webhook(ref[0], raw["body"], raw["headers"],
                      "card_payment_refunded", pid, "success")
    r = sim.api("GET", "/v1/payments/%s/refunds/%s" % (pid, rid))
    c.eq((r.status, r.json.get("status")), (200, "success"),
         "refund succeeded")
    r = sim.api("POST", "/v1/payments/%s/refunds" % pid, {"amount": 1001})
    c.eq((r.status, r.json.get("code")), (400, "P0603"),
         "refund over available")
    r = sim.api("POST", "/v1/payments/%s/refunds" % pid,
                {"amount": 1000, "refund_amount_available": 999})
    c.eq((r.status, r.json.get("code")), (412, "P0604"),
         "refund_amount_available mismatch")
    r = sim.api("POST", "/v1/payments/%s/refunds" % pid, {"amount": 1000})
    c.eq(r.status, 202, "refund the rest")
    c.eq(get(sim, pid)["refund_summary"]["status"], "full", "fully refunded")

    # --- delayed capture ----------------------------------------------
    p = sim.create(delayed_capture=True)
    pid = p["payment_id"]
    sim.pay(pid)
    g = get(sim, pid)
    c.eq(g["state"], {"status": "capturable", "finished": False},
         "delayed capture -> capturable")
    c.check("capture" in g["_links"] and "cancel" in g["_links"],
            "capturable has capture and cancel links")
    r = sim.api("POST", "/v1/payments/%s/capture" % pid)
    c.eq(r.status, 204, "capture 204")
    c.eq(r.body, b"", "capture has no body")
    c.eq(state(sim, pid)["status"], "success", "captured -> success")
    r = sim.api("POST", "/v1/payments/%s/capture" % pid)
    c.eq((r.status, r.json.get("code")), (400, "P1001"), "capture twice")
    evs = wait_events(rx, pid, 2)
    c.eq(sorted(j["event_type"] for j, _ in evs),
         ["card_payment_captured", "card_payment_succeeded"],
         "capturable emitted nothing; capture emitted succeeded+captured")

    # --- failures --------------------------------------------------------
    cases = [
        ("declined card", {"card_number": "4000000000000002"},
         ("failed", "P0010", "Payment method rejected"), ("declined",
                                                          "P0010")),
        ("declined outcome", {"outcome": "declined"},
         ("failed", "P0010", "Payment method rejected"), ("declined",
                                                          "P0010")),
        ("error card", {"card_number": "4000000000000119"},
         ("error", "P0050", "Payment provider returned an error"),
         ("error", "P0050")),
    ]
    for name, body, api_state, wh_state in cases:
        pid = sim.create()["payment_id"]
        sim.pay(pid, **body)
        s = state(sim, pid)
        c.eq((s.get("status"), s.get("code"), s.get("message"),
              s.get("finished")), api_state + (True,), name + " API state")
        evs = wait_events(rx, pid, 1)
        c.eq([j["event_type"] for j, _ in evs], ["card_payment_failed"],
             name + " webhook")
        for j, raw in evs:
            check_webhook(j, raw["body"], raw["headers"],
                          "card_payment_failed", pid, *wh_state)

    pid = sim.create()["payment_id"]
    sim.ctl("POST", "/payments/%s/visit" % pid)
    r = sim.ctl("POST", "/payments/%s/user-cancel" % pid)
    c.eq(r.status, 200, "user cancel")
    s = state(sim, pid)
    c.eq((s["status"], s["code"], s["message"]),
         ("failed", "P0030", "Payment was cancelled by the user"),
         "user cancel API state")
    evs = wait_events(rx, pid, 1)
    for j, raw in evs:
        check_webhook(j, raw["body"], raw["headers"], "card_payment_failed",
                      pid, "cancelled", "P0030")

    pid = sim.create()["payment_id"]
    r = sim.api("POST", "/v1/payments/%s/cancel" % pid)
    c.eq((r.status, r.body), (204, b""), "service cancel 204")
    s = state(sim, pid)
    c.eq((s["status"], s["code"], s["message"]),
         ("cancelled", "P0040", "Payment was cancelled by the service"),
         "service cancel API state")
    c.check("cancel" not in get(sim, pid)["_links"], "no cancel when done")
    r = sim.api("POST", "/v1/payments/%s/cancel" % pid)
    c.eq((r.status, r.json.get("code")), (400, "P0501"), "cancel twice")
    evs = wait_events(rx, pid, 1)
    c.eq([j["event_type"] for j, _ in evs], ["card_payment_failed"],
         "service cancel emits card_payment_failed")
    for j, raw in evs:
        # the webhook vocabulary reports a service cancel as P0030
        check_webhook(j, raw["body"], raw["headers"], "card_payment_failed",
                      pid, "cancelled", "P0030")

    # --- expiry after 90 minutes of simulated time ------------------------
    created = sim.create()["payment_id"]
    started = sim.create()["payment_id"]
    sim.ctl("POST", "/payments/%s/visit" % started)
    submitted = sim.create()["payment_id"]
    sim.pay(submitted, confirm=False)
    capturable = sim.create(delayed_capture=True)["payment_id"]
    sim.pay(capturable)
    sim.advance(minutes=89)
    c.eq(state(sim, created)["status"], "created", "alive at 89 minutes")
    sim.advance(minutes=2)
    for pid in (created, started, submitted):
        s = state(sim, pid)
        c.eq((s["status"], s.get("code"), s.get("message")),
             ("failed", "P0020", "Payment expired"), "expired after 90 min")
        evs = wait_events(rx, pid, 1)
        c.eq([j["event_type"] for j, _ in evs], ["card_payment_expired"],
             "card_payment_expired sent")
        for j, raw in evs:
            check_webhook(j, raw["body"], raw["headers"],
                          "card_payment_expired", pid, "timedout", "P0020")
    c.eq(state(sim, capturable)["status"], "capturable",
         "capturable survives 90 minutes")
    sim.advance(hours=120)
    c.eq(state(sim, capturable).get("code"), "P0020",
         "capturable expires after 120 hours")

    # --- a deliberate lie --------------------------------------------------
    pid = sim.create(amount=2000)["payment_id"]
    sim.pay(pid)
    wait_events(rx, pid, 2)
    r = sim.ctl("POST", "/webhooks/send", {
        "payment_id": pid, "event_type": "card_payment_succeeded",
        "resource_overrides": {"amount": 1}})
    c.eq(r.status, 200, "lie accepted")
    evs = wait_events(rx, pid, 3)
    lies = [j for j, _ in evs if j["resource"]["amount"] == 1]
    c.eq(len(lies), 1, "lie delivered with the wrong amount")
    c.eq(get(sim, pid)["amount"], 2000, "API still tells the truth")

    # nothing else: no started events, nothing for capturable
    all_types = {j["event_type"] for j, _ in rx.by_event()}
    c.check("card_payment_started" not in all_types,
            "card_payment_started never sent")
    log = sim.webhook_log()
    c.check(all(m["status"] == "delivered" for m in log),
            "every message delivered", [m["status"] for m in log])
    c.eq(sim.stop(), 0, "sim exits 0 on SIGTERM")

c.finish()
