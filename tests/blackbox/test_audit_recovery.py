#!/usr/bin/python3
"""test_audit_recovery.py: `payhook audit` holds every seq exactly once,
in order and chained, when

  * it is killed with SIGKILL many times while a stream flows (and rotates
    files under it), and the service is killed with SIGKILL and restarted
    on the same state directory and endpoints in the middle of it: the log
    verifies (C verify, an independent Python check and --replay) and its
    events are the journal's, byte for byte;
  * every head hash it logged for anchoring (after fsync) is still in the
    chain after all the kills: recovery never rewrites history;
  * its log ends with a torn line (a write cut short) or a torn header
    (a crash mid-rotation): verify names it, audit cuts it away on start,
    re-fetches those seqs from replay and the log verifies again;
  * a second audit on the same directory is refused (lock), and --count
    exits once that many events are synced.

Ports are picked free at run time (phtest.free_port), never fixed.
"""
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

N = 1200
KILLS = 14


def bodies(base, n):
    return [phtest.webhook(phtest.pay_id(base + i),
                           phtest.pay_id(base + 500000 + i % 89))
            for i in range(n)]


def audit_cmd(d, feed, replay, *extra):
    return [phtest.BIN, "audit", "--out", d, "--feed", feed, "--replay",
            replay, "--rotate-bytes", "120000", "--fsync-batch", "32",
            "--fsync-ms", "50", "--anchor-ms", "100"] + list(extra)


def anchors(text):
    return re.findall(r"event=audit_anchor file=\S+ line=\d+ seq=(\d+) "
                      r"head=([0-9a-f]{64})", text)


def log_seqs(d):
    return [l["seq"] for _, _, l in phtest.audit_lines(d)
            if l["kind"] == "event"]


def check_log(r, what, svc, d, replay):
    problems, seqs = phtest.audit_chain_problems(d)
    r.check(what + ": independent check: the chain recomputes",
            not problems, problems[:3])
    journal = {s: j for s, _, j in phtest.journal_events(svc)}
    r.check(what + ": every journal seq exactly once, in order",
            seqs == list(range(1, len(journal) + 1)),
            (len(seqs), len(journal), seqs[:3], seqs[-3:]))
    r.check(what + ": every event byte for byte the journal's",
            phtest.audit_events(d) == journal)
    rc, out, probs, err = phtest.audit_verify(d, "--replay", replay)
    r.check(what + ": verify --replay says intact", rc == 0 and
            "intact" in out[-1], (rc, out[-4:], err[-300:]))


def test_kills(r):
    feed = "tcp://127.0.0.1:%d" % phtest.free_port()
    replay = "tcp://127.0.0.1:%d" % phtest.free_port()
    svc = phtest.Service(extra={"publish_endpoint": feed,
                                "replay_endpoint": replay})
    rnd = random.Random(8)
    try:
        svc.start()
        d = os.path.join(svc.tmp, "audit")
        deadline = time.monotonic() + 60
        result = {"st": []}

        def send():             # paced, so the kills land mid-stream
            all_bodies = bodies(40000, N)
            for i in range(0, N, 60):
                result["st"] += phtest.post_many(
                    svc, all_bodies[i:i + 60], retry_until=deadline)
                time.sleep(0.2)
        sender = threading.Thread(target=send)
        sender.start()
        logs, progress, service_killed_at = [], [], None
        for i in range(KILLS):
            p = subprocess.Popen(audit_cmd(d, feed, replay),
                                 stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            time.sleep(rnd.uniform(0.15, 0.45))
            if i == KILLS // 3:
                service_killed_at = svc.rows(
                    "SELECT count(*) FROM events")[0][0]
                svc.kill()          # the service too, mid-stream
                time.sleep(0.3)
                svc.start()
                time.sleep(rnd.uniform(0.1, 0.4))
            p.send_signal(signal.SIGKILL)
            logs.append(p.communicate(timeout=10)[1].decode())
            progress.append(len(log_seqs(d)) if os.path.isdir(d) else 0)
        sender.join(90)
        r.check("every webhook acknowledged (with retries)",
                len(result["st"]) == N and
                all(s == 200 for s in result["st"]))
        phtest.wait_for(lambda: svc.rows(
            "SELECT count(*) FROM webhooks WHERE state = 'published'")[0][0]
            == N, 30)
        r.check("the service was killed mid-stream",
                0 < service_killed_at < N, service_killed_at)
        mid = sum(1 for n in progress if n < N)
        r.check("the audit was killed %d times, %d of them mid-stream, "
                "always making progress" % (KILLS, mid), mid >= KILLS // 2
                and progress[-1] > 0 and progress == sorted(progress),
                progress)
        resumed = sum(1 for t in logs if re.search(
            r"event=audit_resumed .* seq=[1-9]", t))
        r.check("restarts resumed from their own log", resumed >= KILLS - 2,
                resumed)
        p = subprocess.run(audit_cmd(d, feed, replay, "--idle-exit", "1500"),
                           capture_output=True, timeout=60)
        logs.append(p.stderr.decode())
        r.check("a last run catches up and exits by itself",
                p.returncode == 0, (p.returncode, p.stderr[-400:]))
        r.check("the log rotated", len(phtest.audit_files(d)) >= 3,
                phtest.audit_files(d))
        check_log(r, "after %d kills" % KILLS, svc, d, replay)
        # Every head logged for anchoring, even by killed runs, is still
        # in the chain at the seq it named.
        seen = {l["hash"]: l.get("seq") for _, _, l in
                phtest.audit_lines(d)}
        logged = [a for t in logs for a in anchors(t)]
        lost = [a for a in logged if a[1] not in seen]
        r.check("every anchored head (%d) is still in the chain" %
                len(logged), logged and not lost, lost[:3])
        some = logged[len(logged) // 2][1]
        rc, out, _, _ = phtest.audit_verify(d, "--anchor", some)
        r.check("verify --anchor finds a logged head", rc == 0 and any(
            l.startswith("anchor " + some + ": audit-") for l in out), out)
        test_torn(r, svc, d, feed, replay)
        test_lock_and_count(r, svc, d, feed, replay)
    finally:
        svc.cleanup()


def test_torn(r, svc, d, feed, replay):
    files = phtest.audit_files(d)
    last = os.path.join(d, files[-1])
    with open(last, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")[:-1]
    # A write cut short: the last k lines gone, half of one left.
    k = min(3, len(lines) - 1)
    keep = b"\n".join(lines[:-k]) + b"\n" + lines[-k][:150]
    torn_seq = int(re.match(rb'\{"seq":(\d+),', lines[-k]).group(1))
    with open(last, "wb") as f:
        f.write(keep)
    rc, out, probs, _ = phtest.audit_verify(d)
    r.check("torn line: verify names it (%s:%d seq %d)" % (
        files[-1], len(lines) - k + 1, torn_seq), rc == 1 and probs and
        probs[0][:3] == (files[-1], str(len(lines) - k + 1),
                         str(torn_seq)) and
        "torn" in probs[0][3], probs[:2])
    # A crash mid-rotation: the next file exists with half a header.
    nxt = os.path.join(d, "audit-%08d.jsonl" % (int(files[-1][6:14]) + 1))
    with open(nxt, "wb") as f:
        f.write(b'{"audit":"payhook.audit.v1","file":')
    rc, out, probs, _ = phtest.audit_verify(d)
    r.check("torn header: verify names it", rc == 1 and any(
        p[0] == os.path.basename(nxt) and p[1] == "1" and "torn header" in
        p[3] for p in probs), probs[:3])
    p = subprocess.run(audit_cmd(d, feed, replay, "--idle-exit", "800"),
                       capture_output=True, timeout=60)
    err = p.stderr.decode()
    r.check("audit repairs both on start and says so", p.returncode == 0 and
            "audit_torn_file_removed" in err and
            "audit_torn_line_truncated" in err, (p.returncode, err[-600:]))
    check_log(r, "after the torn tail", svc, d, replay)


def test_lock_and_count(r, svc, d, feed, replay):
    p1 = subprocess.Popen(audit_cmd(d, feed, replay),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    p2 = subprocess.run(audit_cmd(d, feed, replay, "--idle-exit", "500"),
                        capture_output=True, timeout=20)
    p1.terminate()
    err1 = p1.communicate(timeout=10)[1].decode()
    r.check("a second audit on the same directory is refused",
            p2.returncode == 1 and b"another payhook audit" in p2.stderr,
            (p2.returncode, p2.stderr[-300:]))
    r.check("SIGTERM: exits 0 after logging the synced head",
            p1.returncode == 0 and anchors(err1), (p1.returncode,
                                                   err1[-300:]))
    before = len(log_seqs(d))
    phtest.post_many(svc, bodies(90000, 20))
    p = subprocess.run(audit_cmd(d, feed, replay, "--count", "5"),
                       capture_output=True, timeout=30)
    got = anchors(p.stderr.decode())
    r.check("--count 5: exits 0 with 5 more events synced and anchored",
            p.returncode == 0 and len(log_seqs(d)) == before + 5 and
            got and int(got[-1][0]) == before + 5,
            (p.returncode, before, len(log_seqs(d)), got[-1:]))


def main():
    r = phtest.Runner("test_audit_recovery")
    r.run(test_kills)
    r.done()


if __name__ == "__main__":
    main()
