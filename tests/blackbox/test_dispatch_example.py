#!/usr/bin/python3
"""test_dispatch_example.py: the independent consumer. Runs the Python
example from docs/consumers.md (docs/examples/consumer.py, python3-zmq,
/usr/bin/python3) against a real `payhook serve`: it must receive live
events, replay history when started late, and print every event exactly
once in seq order; each printed event must validate against
schemas/payment_event.v1.json and equal the journal byte for byte. This
proves the wire format outside our own C code.
"""
import json
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

EXAMPLE = os.path.join(phtest.SRC, "docs", "examples", "consumer.py")
EVENTS, _ = phtest.event_validator()


def bodies(base, n):
    out = [phtest.webhook(phtest.pay_id(base + i), phtest.pay_id(base + i % 5),
                          "card_payment_" + ("captured", "failed",
                                             "refunded")[i % 3])
           for i in range(n)]
    out.append(('{"oops":%d}' % base).encode())
    return out


def run_example(feed, replay, *extra):
    return subprocess.Popen(["/usr/bin/python3", EXAMPLE, "--feed", feed,
                             "--replay", replay] + list(extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_example(r):
    with phtest.Service() as svc:
        feed, replay = phtest.dispatch_endpoints(svc)
        # history first, then the example joins late and keeps following
        st = phtest.post_many(svc, bodies(100, 60))
        phtest.wait_for(lambda: svc.rows(
            "SELECT count(*) FROM events")[0][0] == 61, 10)
        proc = run_example(feed, replay, "--from", "1", "--idle-exit", "2")
        sender = threading.Thread(target=lambda: st.extend(
            phtest.post_many(svc, bodies(5000, 80))))
        sender.start()
        sender.join(60)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        r.check("webhooks accepted", all(s == 200 for s in st))
        r.check("example exited 0", proc.returncode == 0,
                (proc.returncode, err[-400:]))
        lines = out.decode().splitlines()
        journal = phtest.journal_events(svc)
        r.check("example printed the journal exactly, in order",
                lines == [j for _, _, j in journal],
                (len(lines), len(journal)))
        events = [json.loads(l) for l in lines]
        errors = phtest.schema_errors(EVENTS, [(e["seq"], e["topic"], l)
                                               for e, l in zip(events, lines)])
        r.check("every printed event validates against the schema",
                not errors and len(events) == 142, errors[:3])
        topics = {e["topic"] for e in events}
        r.check("topics seen", topics == {"payment.captured",
                                          "payment.failed",
                                          "payment.refunded",
                                          "alert.quarantined"}, topics)
        # --from in the middle and --count: resumes exactly there
        proc = run_example(feed, replay, "--from", "100", "--count", "5")
        out, err = proc.communicate(timeout=30)
        seqs = [json.loads(l)["seq"] for l in out.decode().splitlines()]
        r.check("resume from a saved position", proc.returncode == 0 and
                seqs == [100, 101, 102, 103, 104], (seqs, err[-200:]))


def test_docs_examples_validate(r):
    """Every JSON example in docs/events.md is a valid event."""
    import re
    with open(os.path.join(phtest.SRC, "docs", "events.md")) as f:
        blocks = re.findall(r"```json\n(.*?)\n```", f.read(), re.S)
    events = [json.loads(b) for b in blocks]
    errors = phtest.schema_errors(EVENTS, [(e["seq"], e["topic"], b)
                                           for e, b in zip(events, blocks)])
    topics = {e["topic"] for e in events}
    r.check("docs/events.md has an example for every topic",
            topics == set(json.load(open(phtest.EVENT_SCHEMA))["$defs"]
                          ["topic"]["enum"]), topics)
    r.check("docs/events.md examples validate", not errors, errors[:3])


def main():
    r = phtest.Runner("test_dispatch_example")
    r.run(test_example)
    r.run(test_docs_examples_validate)
    r.done()


if __name__ == "__main__":
    main()
