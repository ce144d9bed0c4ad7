#!/usr/bin/python3
"""test_audit_tamper.py: `payhook audit verify` finds every kind of
tampering and names it precisely (file, line, seq), exit status 1:

  * an edited byte (in the event, the seq, the prev and the hash fields);
  * a deleted line, two swapped lines;
  * a file truncated in the middle of a rotation (at a line boundary and
    mid-line), and the last file truncated at a line boundary, which the
    chain alone cannot see (docs/audit.md) but --replay and --anchor do;
  * a file removed from the middle of a rotation;
  * an edit with the line's hash recomputed (the next link breaks), and a
    whole chain rewritten after an edit, which only an anchor or the
    service's replay can expose.

The log is written by the real `payhook audit` from a real service (small
--rotate-bytes so it spans many files); the intact log is also checked by
an independent Python reading of the canonical form (phtest.audit_*).
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402

N = 120


def make_log(svc, feed, replay):
    d = os.path.join(svc.tmp, "audit")
    st = phtest.post_many(svc, [phtest.webhook(phtest.pay_id(70000 + i))
                                for i in range(N)])
    assert all(s == 200 for s in st), st
    phtest.wait_for(lambda: svc.rows("SELECT count(*) FROM events WHERE "
                                     "seq <= (SELECT upto FROM "
                                     "events_sent)")[0][0] == N, 20)
    p = subprocess.run([phtest.BIN, "audit", "--out", d, "--feed", feed,
                        "--replay", replay, "--rotate-bytes", "8000",
                        "--idle-exit", "800"], capture_output=True,
                       timeout=40)
    return d, p


def where(d):
    """{seq: (file, line)} and {file: [line dicts]}"""
    pos, files = {}, {}
    for name, n, l in phtest.audit_lines(d):
        files.setdefault(name, []).append(l)
        if l["kind"] == "event":
            pos[l["seq"]] = (name, n)
    return pos, files


class Tamper:
    """A scratch copy of the intact log."""

    def __init__(self, base, name):
        self.d = base + "-" + name
        shutil.rmtree(self.d, ignore_errors=True)
        shutil.copytree(base, self.d)

    def path(self, f):
        return os.path.join(self.d, f)

    def read(self, f):
        with open(self.path(f), "rb") as fh:
            return fh.read().split(b"\n")[:-1]

    def write(self, f, lines, tail=b"\n"):
        with open(self.path(f), "wb") as fh:
            fh.write(b"\n".join(lines) + (tail if lines else b""))


def first(r, name, out, want_file, want_line, want_seqs, *words):
    """The first problem names want_file:want_line with a seq in want_seqs
    (None: "-"), the exit status is 1 and the message has every word."""
    rc, lines, probs, err = out
    ok = rc == 1 and probs and probs[0][0] == want_file and \
        int(probs[0][1]) == want_line and \
        (probs[0][2] in [str(s) for s in want_seqs] if want_seqs
         else probs[0][2] == "-") and \
        all(w in probs[0][3] for w in words) and \
        any("BROKEN" in l for l in lines)
    r.check(name, ok, (rc, lines[:3], err[-200:], want_file, want_line,
                       want_seqs, words))


def test_intact(r, d, p, svc, replay):
    r.check("audit wrote the log and exited by itself", p.returncode == 0,
            (p.returncode, p.stderr[-400:]))
    files = phtest.audit_files(d)
    r.check("the log spans many files", len(files) >= 8, files)
    problems, seqs = phtest.audit_chain_problems(d)
    r.check("independent check: every link recomputes from the zero hash",
            not problems, problems[:3])
    r.check("independent check: seqs 1..N once each, in order",
            seqs == list(range(1, N + 1)), seqs[:5])
    journal = {s: j for s, _, j in phtest.journal_events(svc)}
    r.check("every line holds the event exactly as the journal has it",
            phtest.audit_events(d) == journal)
    heads = [l for _, _, l in phtest.audit_lines(d) if l["kind"] == "header"]
    r.check("each file starts with a header holding the previous file's "
            "last hash", [h["file"] for h in heads] ==
            list(range(1, len(files) + 1)) and heads[0]["prev"] ==
            phtest.AUDIT_ZERO)
    rc, lines, probs, err = phtest.audit_verify(d, "--replay", replay)
    r.check("verify --replay: intact, exit 0",
            rc == 0 and not probs and "intact" in lines[-1] and
            any("%d events compared" % N in l for l in lines), (rc, lines))
    anchor = lines[-1].rsplit(" ", 1)[1]
    r.check("verify prints the head hash (the last line's)", anchor ==
            phtest.audit_lines(d)[-1][2]["hash"], lines[-1])
    return anchor


def test_edited_byte(r, base):
    pos, _ = where(base)
    seq = 40
    f, n = pos[seq]
    for label, find, repl in (
            ("in the event", b'"amount":5000', b'"amount":5001'),
            ("in the seq field", b'{"seq":40,', b'{"seq":41,'),
            ("in the prev field", b'"prev":"', b'"prev":"'),
            ("in the hash field", b'"hash":"', b'"hash":"')):
        t = Tamper(base, "edit")
        lines = t.read(f)
        line = lines[n - 1]
        if label.endswith("prev field") or label.endswith("hash field"):
            i = line.index(find) + len(find) + 10
            c = b"0" if line[i:i + 1] != b"0" else b"1"
            line = line[:i] + c + line[i + 1:]
        else:
            line = line.replace(find, repl, 1)
        r.check("edit %s changed the line" % label, line != lines[n - 1])
        lines[n - 1] = line
        t.write(f, lines)
        first(r, "edited byte %s: named at %s:%d seq %d" % (label, f, n, seq),
              phtest.audit_verify(t.d), f, n, [seq, 41])
    # a byte that makes the line unparseable
    t = Tamper(base, "edit")
    lines = t.read(f)
    lines[n - 1] = lines[n - 1].replace(b'"event":', b'"evenT":', 1)
    t.write(f, lines)
    first(r, "a byte breaking the line's format: named, seq %d" % seq,
          phtest.audit_verify(t.d), f, n, [seq], "malformed")


def test_deleted_and_swapped(r, base):
    pos, _ = where(base)
    f, n = pos[50]
    t = Tamper(base, "del")
    lines = t.read(f)
    if n == len(lines):     # keep a following line in the same file
        f, n = pos[49]
        lines = t.read(f)
    gone = json.loads(lines[n - 1].split(b',"event":', 1)[1][:-1])["seq"]
    del lines[n - 1]
    t.write(f, lines)
    first(r, "deleted line: named where it was (%s:%d), seq %d missing" %
          (f, n, gone), phtest.audit_verify(t.d), f, n, [gone + 1],
          "%d..%d are missing" % (gone, gone))

    f, n = pos[60]
    t = Tamper(base, "swap")
    lines = t.read(f)
    if n == len(lines):
        f, n = pos[59]
        lines = t.read(f)
    a = json.loads(lines[n - 1].split(b',"event":', 1)[1][:-1])["seq"]
    lines[n - 1], lines[n] = lines[n], lines[n - 1]
    t.write(f, lines)
    out = phtest.audit_verify(t.d)
    first(r, "swapped lines: named at %s:%d (seq %d where %d was expected)"
          % (f, n, a + 1, a), out, f, n, [a + 1],
          "where %d was expected" % a)
    r.check("swapped lines: the second one is named too",
            len(out[2]) >= 2 and out[2][1][:3] == (f, str(n + 1), str(a)),
            out[2][:3])


def test_truncated(r, base, replay, anchor):
    files = phtest.audit_files(base)
    mid = files[len(files) // 2]
    nxt = files[len(files) // 2 + 1]
    t = Tamper(base, "trunc")
    lines = t.read(mid)
    cut = [json.loads(l)["seq"] for l in lines[-2:]]
    t.write(mid, lines[:-2])
    first(r, "middle file cut at a line boundary: named at %s:1, seqs "
          "%d..%d" % (nxt, cut[0], cut[1]), phtest.audit_verify(t.d), nxt,
          1, None, "%d..%d are missing" % (cut[0], cut[1]), mid)

    t = Tamper(base, "torn")
    lines = t.read(mid)
    seq = json.loads(lines[-1].split(b',"event":', 1)[1][:-1])["seq"]
    t.write(mid, lines[:-1] + [lines[-1][:100]], tail=b"")
    first(r, "middle file cut mid-line: torn line named at %s:%d seq %d" %
          (mid, len(lines), seq), phtest.audit_verify(t.d), mid, len(lines),
          [seq], "torn")

    last = files[-1]
    t = Tamper(base, "tail")
    lines = t.read(last)
    k = min(2, len(lines) - 1)      # events only, never the header
    t.write(last, lines[:-k])
    rc, out, probs, _ = phtest.audit_verify(t.d)
    r.check("last file cut at a line boundary: the chain alone cannot "
            "tell (documented)", rc == 0, out[-2:])
    first(r, "... but --replay names the missing seqs %d..%d" % (
          N - k + 1, N), phtest.audit_verify(t.d, "--replay", replay), last,
          len(lines) - k + 1, ["%d..%d" % (N - k + 1, N)],
          "published by the service, not in the log")
    rc, out, probs, _ = phtest.audit_verify(t.d, "--anchor", anchor)
    r.check("... and so does the anchored head hash", rc == 1 and any(
        "anchor %s: not in the log" % anchor in l for l in out), out[-3:])


def test_file_removed(r, base):
    files = phtest.audit_files(base)
    gone = files[3]
    _, by_file = where(base)
    seqs = [l["seq"] for l in by_file[gone] if l["kind"] == "event"]
    t = Tamper(base, "rm")
    os.unlink(t.path(gone))
    first(r, "file removed from the middle: %s named, seqs %d..%d" % (
        gone, seqs[0], seqs[-1]), phtest.audit_verify(t.d), files[4], 1,
        None, gone + " is missing", "%d..%d are missing" % (seqs[0], seqs[-1]))
    t = Tamper(base, "rm1")
    os.unlink(t.path(files[0]))
    first(r, "first file removed: named", phtest.audit_verify(t.d),
          files[1], 1, None, files[0] + " is missing")


def rehash_from(t, start_file, start_line):
    """Recompute every hash from start_file:start_line on, as someone who
    can rewrite the whole chain would."""
    prev = None
    for name in phtest.audit_files(t.d):
        lines = t.read(name)
        for i, raw in enumerate(lines):
            if (name, i + 1) < (start_file, start_line):
                continue
            if raw.startswith(b'{"audit":'):
                h = json.loads(raw)
                h["prev"] = prev or h["prev"]
                new = phtest.audit_hash(h["prev"], h["next_seq"],
                                        file_no=h["file"], opened=h["opened"])
                lines[i] = (
                    '{"audit":"payhook.audit.v1","file":%d,"next_seq":%d,'
                    '"opened":"%s","prev":"%s","hash":"%s"}' % (
                        h["file"], h["next_seq"], h["opened"], h["prev"],
                        new)).encode()
            else:
                m = phtest._AUDIT_EVENT.match(raw)
                seq, old_prev, ev = int(m.group(1)), m.group(2).decode(), \
                    m.group(4)
                p = prev or old_prev
                new = phtest.audit_hash(p, seq, ev)
                lines[i] = b'{"seq":%d,"prev":"%s","hash":"%s","event":%s}' % (
                    seq, p.encode(), new.encode(), ev)
            prev = new
        t.write(name, lines)


def test_rehashed(r, base, replay, anchor):
    pos, _ = where(base)
    f, n = pos[30]
    t = Tamper(base, "rehash1")
    lines = t.read(f)
    lines[n - 1] = lines[n - 1].replace(b'"amount":5000', b'"amount":9000')
    t.write(f, lines)
    rehash_from(t, f, n)
    problems, _ = phtest.audit_chain_problems(t.d)
    r.check("a whole chain rewritten after an edit is self-consistent",
            not problems, problems[:2])
    rc, out, _, _ = phtest.audit_verify(t.d)
    r.check("... verify alone cannot see it (documented)", rc == 0, out[-1:])
    rc, out, probs, _ = phtest.audit_verify(t.d, "--anchor", anchor)
    r.check("... the anchored head hash exposes it", rc == 1 and any(
        "not in the log" in l for l in out), out[-2:])
    first(r, "... and --replay names the line (%s:%d seq 30)" % (f, n),
          phtest.audit_verify(t.d, "--replay", replay), f, n, [30],
          "differs from the event the service published")

    # Only the edited line rehashed: the next line's link names it.
    t = Tamper(base, "rehash2")
    lines = t.read(f)
    m = phtest._AUDIT_EVENT.match(lines[n - 1])
    ev = m.group(4).replace(b'"amount":5000', b'"amount":9000')
    h = phtest.audit_hash(m.group(2).decode(), 30, ev)
    lines[n - 1] = b'{"seq":30,"prev":"%s","hash":"%s","event":%s}' % (
        m.group(2), h.encode(), ev)
    t.write(f, lines)
    nf, nn = pos[31] if pos[31][0] == f else (pos[31][0], 1)
    first(r, "edit with its own hash recomputed: the next line (%s:%d) "
          "names it" % (nf, nn), phtest.audit_verify(t.d), nf, nn,
          [31] if nn > 1 else None, f, str(n))


def test_usage(r, base):
    rc, out, _, err = phtest.audit_verify(os.path.join(base, "nope"))
    r.check("verify of a missing directory: exit 2", rc == 2, (rc, err))
    empty = base + "-empty"
    os.makedirs(empty, exist_ok=True)
    rc, out, _, _ = phtest.audit_verify(empty)
    r.check("verify of a directory without a log: exit 1", rc == 1, out)
    p = subprocess.run([phtest.BIN, "audit"], capture_output=True,
                       timeout=10)
    r.check("audit without --out: exit 2", p.returncode == 2, p.stderr)
    # Number options refuse what is not a non-negative number, naming the
    # option, before connecting anywhere (tail and audit share the parser).
    for cmd, opt in (("audit", "--fsync-ms"), ("audit", "--anchor-ms"),
                     ("tail", "--count"), ("tail", "--from"),
                     ("tail", "--idle-exit")):
        for bad in ("-1", "x", "12abc", "", "99999999999999999999"):
            args = [phtest.BIN, cmd, opt, bad]
            if cmd == "audit":
                args += ["--out", empty]
            p = subprocess.run(args, capture_output=True, timeout=10)
            want = ("payhook %s: %s needs a non-negative number"
                    % (cmd, opt)).encode()
            r.check("%s %s %r: exit 2 naming the option" % (cmd, opt, bad),
                    p.returncode == 2 and want in p.stderr,
                    (p.returncode, p.stderr))


def main():
    r = phtest.Runner("test_audit_tamper")
    with phtest.Service() as svc:
        feed, replay = phtest.dispatch_endpoints(svc)
        d, p = make_log(svc, feed, replay)
        anchor = None
        try:
            anchor = test_intact(r, d, p, svc, replay)
        except Exception as e:  # noqa: BLE001
            r.check("intact log (raised)", False, repr(e))
        if anchor:
            r.run(test_edited_byte, d)
            r.run(test_deleted_and_swapped, d)
            r.run(test_truncated, d, replay, anchor)
            r.run(test_file_removed, d)
            r.run(test_rehashed, d, replay, anchor)
            r.run(test_usage, d)
    r.done()


if __name__ == "__main__":
    main()
