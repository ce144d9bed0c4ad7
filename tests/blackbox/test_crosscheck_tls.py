"""Cross-check over real TLS: a Python ssl proxy terminates TLS in front of
payhook-sim (which serves plain HTTP only). The right CA and host name
confirm; a certificate from another CA or for another host is refused and
the row is never confirmed (it waits, it is not silently accepted)."""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402
import simharness  # noqa: E402
import xcheck  # noqa: E402


def run_case(t, sim, pki, cert, expect_ok):
    proxy = xcheck.TLSProxy(os.path.join(pki, cert + ".pem"),
                            os.path.join(pki, cert + ".key"),
                            sim.host, sim.port)
    svc = xcheck.service_for(sim, base_url="https://127.0.0.1:%d" %
                             proxy.port,
                             extra={"api_ca_file":
                                    os.path.join(pki, "ca.pem")})
    try:
        with svc:
            t.check("%s: start-up says TLS is on" % cert,
                    phtest.wait_for(lambda: "event=api_client" in svc.log()
                                    and "tls=on" in svc.log(), 5),
                    svc.log())
            pid = xcheck.successful_payment(sim)
            mid = xcheck.message_id(hash(cert) & 0xffff)
            status, _, _ = svc.post(xcheck.sim_webhook_body(
                sim, pid, "card_payment_succeeded", mid))
            t.check("%s: webhook accepted" % cert, status == 200, status)
            if expect_ok:
                rs = xcheck.wait_rows(svc, pid, 1, timeout=20)
                t.check("%s: confirmed over TLS" % cert,
                        rs and rs[0]["verdict"] == "confirmed", rs)
                # keep-alive: a second check reuses the TLS connection
                pid2 = xcheck.successful_payment(sim)
                svc.post(xcheck.sim_webhook_body(
                    sim, pid2, "card_payment_succeeded",
                    xcheck.message_id(0xff00)))
                rs = xcheck.wait_rows(svc, pid2, 1, timeout=20)
                t.check("%s: second check confirmed" % cert,
                        rs and rs[0]["verdict"] == "confirmed", rs)
                t.check("%s: one TLS connection for both" % cert,
                        proxy.handshakes == 1, proxy.handshakes)
            else:
                time.sleep(3)
                rs = xcheck.rows_for(svc, pid)
                t.check("%s: refused, row still waiting" % cert,
                        rs and rs[0]["state"] == "received" and
                        not rs[0]["verdict"], rs)
                t.check("%s: the reason names the certificate" % cert,
                        rs and "certificate" in (rs[0]["last_error"] or ""),
                        rs)
                t.check("%s: no TLS session was ever established" % cert,
                        proxy.handshakes == 0, proxy.handshakes)
    finally:
        proxy.close()


def main():
    xcheck.require_wired()
    simharness.require_sim()
    t = phtest.Runner("test_crosscheck_tls")
    with tempfile.TemporaryDirectory(prefix="payhook-pki-") as pki:
        xcheck.make_pki(pki)
        with simharness.Sim() as sim:
            t.run(run_case, sim, pki, "ok", True)
            t.run(run_case, sim, pki, "wrongca", False)
            t.run(run_case, sim, pki, "wronghost", False)
    t.done()


if __name__ == "__main__":
    main()
