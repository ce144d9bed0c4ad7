"""Cross-check resilience against the real payhook-sim and its /_sim/faults:
an API that is down (resets, 5xx, timeouts) then back, 429 storms, slow
answers, a wrong API key then the right one, a restart (SIGTERM and
kill -9) in the middle of pending checks, and give-up -> unverified."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402
import simharness  # noqa: E402
import xcheck  # noqa: E402

_next_mid = [1000]


def post_payments(t, sim, svc, n, event="card_payment_captured"):
    """Create n successful payments (faults off) and post one signed
    webhook per payment ourselves. Returns the message ids."""
    pids = [xcheck.successful_payment(sim) for _ in range(n)]
    return post_for(t, sim, svc, pids, event)


def post_for(t, sim, svc, pids, event="card_payment_captured"):
    mids = []
    for pid in pids:
        _next_mid[0] += 1
        mid = xcheck.message_id(_next_mid[0])
        status, _, _ = svc.post(xcheck.sim_webhook_body(sim, pid, event,
                                                        mid))
        t.check("webhook accepted while the API is in trouble",
                status == 200, status)
        mids.append(mid)
    return mids


def wait_verdicts(svc, mids, timeout):
    def ok():
        v = xcheck.verdicts(svc)
        rs = [v.get(m) for m in mids]
        return rs if all(r and r["verdict"] for r in rs) else None
    return phtest.wait_for(ok, timeout, 0.1) or [
        xcheck.verdicts(svc).get(m) for m in mids]


def faults(sim, **kw):
    r = sim.ctl("POST", "/faults", kw)
    assert r.status == 200, r


def clear(sim):
    sim.ctl("DELETE", "/faults")


def api_down_then_back(t, sim, svc):
    pids = [xcheck.successful_payment(sim) for _ in range(10)]
    faults(sim, rate_5xx=1)
    mids = post_for(t, sim, svc, pids)
    time.sleep(2.5)
    v = xcheck.verdicts(svc)
    t.check("nothing decided while the API answers 500",
            all(v[m]["state"] == "received" for m in mids),
            [v[m] for m in mids])
    faults(sim, rate_reset=1)
    time.sleep(2.5)
    faults(sim, rate_timeout=1)
    time.sleep(2.5)
    v = xcheck.verdicts(svc)
    t.check("rows retried with backoff, none dropped",
            all(v[m]["state"] == "received" and v[m]["attempts"] >= 2
                for m in mids), [v[m] for m in mids])
    clear(sim)
    rs = wait_verdicts(svc, mids, 60)
    t.check("every row confirmed once the API is back",
            all(r and r["verdict"] == "confirmed" for r in rs), rs)
    m = svc.metrics()
    for outcome in ("error", "5xx", "timeout"):
        t.check("requests counted as %s" % outcome, phtest.metric(
            m, "payhook_crosscheck_requests_total", outcome=outcome) > 0)


def storm_429(t, sim, svc):
    pids = [xcheck.successful_payment(sim) for _ in range(10)]
    faults(sim, rate_429=0.6)
    mids = post_for(t, sim, svc, pids)
    time.sleep(4)
    clear(sim)
    rs = wait_verdicts(svc, mids, 60)
    t.check("429 storm: every row confirmed",
            all(r and r["verdict"] == "confirmed" for r in rs), rs)
    m = svc.metrics()
    t.check("429s counted", phtest.metric(
        m, "payhook_crosscheck_requests_total", outcome="429") > 0)


def slow_answers(t, sim, svc):
    pids = [xcheck.successful_payment(sim) for _ in range(8)]
    before = svc.metrics()
    faults(sim, latency_ms=600)
    t0 = time.monotonic()
    mids = post_for(t, sim, svc, pids)
    rs = wait_verdicts(svc, mids, 30)
    took = time.monotonic() - t0
    clear(sim)
    t.check("slow answers still confirm",
            all(r and r["verdict"] == "confirmed" for r in rs), rs)
    t.check("slow answers overlap (pool 4): 8 x 0.6 s in < 4 s",
            took < 4.0, took)
    after = svc.metrics()
    d = phtest.metrics_delta(before, after)
    t.check("latency histogram saw the slow answers",
            d.get(phtest.metric_key("payhook_crosscheck_seconds_sum"), 0)
            >= 8 * 0.5, d)


def wrong_key_then_fixed(t, sim):
    svc = xcheck.service_for(sim, key="api_test_wrongwrongwrong")
    with svc:
        mids = post_payments(t, sim, svc, 3)
        ok = phtest.wait_for(lambda: "event=api_key_rejected" in svc.log(),
                             10)
        t.check("one error line says the key is rejected", ok, svc.log())
        t.check("it names the status",
                "status=401" in svc.log(), svc.log())
        t.check("exactly one such line", svc.log().count(
            "event=api_key_rejected") == 1, svc.log())
        t.check("the key is never logged",
                "wrongwrong" not in svc.log() and
                simharness.TEST_KEY not in svc.log())
        m = svc.metrics()
        t.check("payhook_api_auth_failing = 1",
                phtest.metric(m, "payhook_api_auth_failing") == 1)
        status, _, body = svc.admin("/readyz")
        t.check("/readyz is not ready while the key is rejected",
                status != 200, (status, body))
        time.sleep(2)
        v = xcheck.verdicts(svc)
        t.check("rows wait (not burnt) while the key is rejected",
                all(v[m]["state"] == "received" for m in mids), v)
        xcheck.write_file(svc.api_key_file, simharness.TEST_KEY + "\n")
        rs = wait_verdicts(svc, mids, 30)
        t.check("fixing the key file is enough: all confirmed",
                all(r and r["verdict"] == "confirmed" for r in rs), rs)
        status, _, body = svc.admin("/readyz")
        t.check("/readyz ready again", status == 200, (status, body))
        t.check("auth gauge back to 0", phtest.metric(
            svc.metrics(), "payhook_api_auth_failing") == 0)


def restart_mid_check(t, sim, how):
    svc = xcheck.service_for(sim)
    try:
        svc.start()
        pids = [xcheck.successful_payment(sim) for _ in range(12)]
        faults(sim, latency_ms=1500)
        mids = post_for(t, sim, svc, pids)
        time.sleep(0.7)             # some requests are in flight now
        if how == "kill":
            svc.kill()
        else:
            t.check("SIGTERM exits 0", svc.stop() == 0)
        v = xcheck.verdicts(svc)
        undecided = [m for m in mids if v[m]["state"] == "received"]
        t.check("%s: checks were pending at the stop" % how,
                len(undecided) >= 8, [v[m] for m in mids])
        clear(sim)
        svc.start()
        rs = wait_verdicts(svc, mids, 30)
        t.check("%s: every row confirmed after the restart" % how,
                all(r and r["verdict"] == "confirmed" for r in rs), rs)
        t.check("%s: no row lost or duplicated" % how,
                len(xcheck.verdicts(svc)) == 12)
    finally:
        clear(sim)
        svc.cleanup()


def give_up_unverified(t, sim):
    svc = xcheck.service_for(sim, extra={"cross_check_give_up": "60s"})
    with svc:
        pids = [xcheck.successful_payment(sim)]
        faults(sim, rate_5xx=1)
        mids = post_for(t, sim, svc, pids)
        rs = wait_verdicts(svc, mids, 30)
        t.check("still trying after 30 s", rs[0]["state"] == "received",
                rs)
        rs = wait_verdicts(svc, mids, 60)
        clear(sim)
        t.check("unverified after cross_check_give_up",
                rs[0] and rs[0]["verdict"] == "unverified" and
                rs[0]["api_status"] == 500, rs)


def main():
    xcheck.require_wired()
    simharness.require_sim()
    t = phtest.Runner("test_crosscheck_faults")
    with simharness.Sim() as sim:
        svc = xcheck.service_for(sim)
        with svc:
            t.run(api_down_then_back, sim, svc)
            clear(sim)
            t.run(storm_429, sim, svc)
            clear(sim)
            t.run(slow_answers, sim, svc)
            clear(sim)
        t.run(wrong_key_then_fixed, sim)
        t.run(restart_mid_check, sim, "sigterm")
        t.run(restart_mid_check, sim, "kill")
        t.run(give_up_unverified, sim)
    t.done()


if __name__ == "__main__":
    main()
