"""Cross-check verdicts against the real payhook-sim: every verdict, every
webhook-vs-API vocabulary difference through real lifecycles, and
out-of-order events. Reads verdicts from the journal."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402
import simharness  # noqa: E402
import xcheck  # noqa: E402


def lifecycles(t, sim, svc):
    # success: card_payment_succeeded then card_payment_captured
    ok = xcheck.successful_payment(sim)
    # declined: webhook "declined" P0010, API failed P0010
    declined = sim.create()["payment_id"]
    sim.pay(declined, card_number="4000000000000002")
    # PSP error: error P0050 both sides
    err = sim.create()["payment_id"]
    sim.pay(err, card_number="4000000000000119")
    # user cancel: webhook "cancelled" P0030, API failed P0030
    ucancel = sim.create()["payment_id"]
    sim.ctl("POST", "/payments/%s/visit" % ucancel)
    sim.ctl("POST", "/payments/%s/user-cancel" % ucancel)
    # service cancel: webhook "cancelled" P0030 (sic), API cancelled P0040
    scancel = sim.create()["payment_id"]
    r = sim.api("POST", "/v1/payments/%s/cancel" % scancel)
    t.check("service cancel accepted", r.status == 204, r)
    # expiry: webhook "timedout" P0020, API failed P0020
    expired = sim.create()["payment_id"]
    sim.ctl("POST", "/payments/%s/expire" % expired)
    # refund: card_payment_refunded carries the parent payment
    refunded = xcheck.successful_payment(sim, amount=3000)
    sim.advance(seconds=5)          # capture completes
    r = sim.api("POST", "/v1/payments/%s/refunds" % refunded,
                {"amount": 3000, "refund_amount_available": 3000})
    t.check("refund accepted", r.status == 202, r)
    sim.advance(seconds=5)          # refund succeeds

    want = [
        (ok, "card_payment_succeeded"), (ok, "card_payment_captured"),
        (declined, "card_payment_failed"), (err, "card_payment_failed"),
        (ucancel, "card_payment_failed"), (scancel, "card_payment_failed"),
        (expired, "card_payment_expired"),
        (refunded, "card_payment_refunded"),
    ]
    for pid, ev in want:
        def got(pid=pid, ev=ev):
            rs = [r for r in xcheck.rows_for(svc, pid)
                  if r["event_type"] == ev and r["verdict"]]
            return rs or None
        rs = phtest.wait_for(got, 30.0, 0.1)
        t.check("%s is confirmed (%s)" % (ev, pid[:6]),
                rs and all(r["verdict"] == "confirmed" for r in rs),
                rs or xcheck.rows_for(svc, pid))
        if rs:
            t.check("%s keeps the API answer" % ev,
                    all(r["api_status"] == 200 for r in rs), rs)
    # the webhooks really used the other vocabulary
    for pid, status in ((declined, "declined"), (expired, "timedout"),
                        (scancel, "cancelled"), (ucancel, "cancelled")):
        info = sim.ctl("GET", "/payments/%s" % pid).json
        t.check("sim webhook view of %s says %s" % (pid[:6], status),
                info["webhook_resource"]["state"]["status"] == status,
                info["webhook_resource"]["state"])
    info = sim.ctl("GET", "/payments/%s" % scancel).json
    t.check("service cancel: webhook P0030 vs API P0040",
            info["webhook_resource"]["state"].get("code") == "P0030" and
            info["payment"]["state"].get("code") == "P0040",
            (info["webhook_resource"]["state"], info["payment"]["state"]))


def lie_is_a_mismatch(t, sim, svc):
    pid = xcheck.successful_payment(sim, amount=2500, reference="lie-ref")
    r = sim.ctl("POST", "/webhooks/send", {
        "payment_id": pid, "event_type": "card_payment_captured",
        "resource_overrides": {"amount": 1, "reference": "other"}})
    t.check("sim sent a lying webhook", r.status in (200, 201, 202), r)
    mid = (r.json or {}).get("webhook_message_id")

    def got():
        v = xcheck.verdicts(svc).get(mid)
        return v if v and v["verdict"] else None
    v = phtest.wait_for(got, 20.0, 0.1)
    t.check("lie -> mismatch", v and v["verdict"] == "mismatch", v)
    t.check("mismatch names amount and reference",
            v and v["mismatches"] == '["amount","reference"]', v)


def unknown_payment_is_not_found(t, sim, svc):
    pid = phtest.pay_id(0xdeadbeef)
    body = phtest.webhook(xcheck.message_id(1), payment_id=pid)
    status, _, _ = svc.post(body)
    t.check("forged-but-signed webhook accepted", status == 200, status)
    rs = xcheck.wait_rows(svc, pid, 1, timeout=2.0, checked=True)
    t.check("no not_found before the re-check", not rs, rs)
    rs = xcheck.wait_rows(svc, pid, 1, timeout=20.0)
    t.check("unknown payment -> not_found after one re-check",
            rs and rs[0]["verdict"] == "not_found" and
            rs[0]["api_status"] == 404 and rs[0]["attempts"] == 1, rs)


def out_of_order(t, sim, svc):
    pid = xcheck.successful_payment(sim, amount=4200)
    sim.advance(seconds=5)
    r = sim.api("POST", "/v1/payments/%s/refunds" % pid,
                {"amount": 4200, "refund_amount_available": 4200})
    sim.advance(seconds=5)
    # refunded before captured before succeeded, all for the same payment
    order = ["card_payment_refunded", "card_payment_captured",
             "card_payment_succeeded"]
    mids = []
    for i, ev in enumerate(order):
        mid = xcheck.message_id(100 + i)
        mids.append(mid)
        body = xcheck.sim_webhook_body(sim, pid, ev, mid)
        status, _, _ = svc.post(body)
        t.check("%s posted" % ev, status == 200, status)

    def got():
        v = xcheck.verdicts(svc)
        rs = [v.get(m) for m in mids]
        return rs if all(r and r["verdict"] for r in rs) else None
    rs = phtest.wait_for(got, 20.0, 0.1)
    t.check("refunded, captured, succeeded in reverse order all confirmed",
            rs and all(r["verdict"] == "confirmed" for r in rs), rs)
    t.check("refund request accepted", r.status == 202, r)


def skipped_when_off(t):
    svc = phtest.Service(extra={"cross_check": "off"})
    with svc:
        pid = phtest.pay_id(77)
        svc.post(phtest.webhook(xcheck.message_id(2), payment_id=pid))
        rs = xcheck.wait_rows(svc, pid, 1, timeout=10.0)
        t.check("cross_check = off -> skipped",
                rs and rs[0]["verdict"] == "skipped" and
                not rs[0]["api_status"], rs)


def main():
    xcheck.require_wired()
    simharness.require_sim()
    t = phtest.Runner("test_crosscheck_verdicts")
    port = phtest.free_port()
    url = "http://127.0.0.1:%d/webhooks/govuk-pay" % port
    with simharness.Sim(webhook_url=url) as sim:
        svc = xcheck.service_for(sim, extra={"listen": "127.0.0.1:%d" % port})
        with svc:
            t.run(lifecycles, sim, svc)
            t.run(lie_is_a_mismatch, sim, svc)
            t.run(unknown_payment_is_not_found, sim, svc)
            t.run(out_of_order, sim, svc)
            m = svc.metrics()
            t.check("confirmed counted in metrics", phtest.metric(
                m, "payhook_crosscheck_results_total",
                verdict="confirmed") >= 10, m)
            t.check("api key never logged",
                    simharness.TEST_KEY not in svc.log())
    t.run(skipped_when_off)
    t.done()


if __name__ == "__main__":
    main()
