#!/usr/bin/python3
"""perfsplit.py: split payhook's CPU samples into the stages of a webhook.

Reads `perf script -F tid,ip,sym` output of a `perf record --call-graph
dwarf` of `payhook serve` and puts every sample in the first matching
stage below (so the shares add up to 100 %). Also reports malloc/free self
time, which cuts across stages. Used by bench.py --profile; also runs on
its own: perfsplit.py PERF_SCRIPT_OUTPUT [CPU_US_PER_WEBHOOK].
"""
import collections
import sys

MALLOC = {"malloc", "_int_malloc", "_int_free", "malloc_consolidate",
          "unlink_chunk.constprop.0", "__GI___libc_free (inlined)",
          "__GI___libc_malloc (inlined)", "cfree@GLIBC_2.2.5", "free",
          "__libc_calloc", "_int_realloc", "__GI___libc_realloc (inlined)",
          "realloc", "tcache_get (inlined)", "tcache_put (inlined)"}


def _has(st, *names):
    return any(f in names for f in st)


def _has_sub(st, *subs):
    return any(s in f for f in st for s in subs)


# Thread roles, told by the function each thread starts in (a sample's
# stack may be cut short, so a thread's role is what any of its samples
# shows).
ROOTS = [("checkpointer", "journal_checkpoint_main"),
         ("syncer", "journal_sync_main"),
         ("bus", "bus_main"),
         ("http", "server_thread"),
         ("main", "cmd_serve")]
LOOPS = ("main", "http")


def stages():
    return [
        ("WAL checkpointer thread", lambda r, st: r == "checkpointer"),
        ("WAL syncer thread (fdatasync)", lambda r, st: r == "syncer"),
        ("ZeroMQ bus thread", lambda r, st: r == "bus"),
        ("other threads", lambda r, st: r not in LOOPS),
        ("COMMIT: fdatasync (CPU in ext4/virtio)",
         lambda r, st: "journal_commit" in st and
         _has_sub(st, "fdatasync", "fsync")),
        ("COMMIT: WAL frame writes (pwrite)",
         lambda r, st: "journal_commit" in st and _has_sub(st, "pwrite")),
        ("COMMIT: rest of SQLite's commit",
         lambda r, st: "journal_commit" in st),
        ("normalise events (parse body, write event JSON)",
         lambda r, st: "normalise_row" in st),
        ("event rows + out_of_order lookup",
         lambda r, st: _has(st, "journal_insert_event",
                            "journal_later_event_exists",
                            "journal_head_seq")),
        ("INSERT (journal_put, journal_begin: table + indexes)",
         lambda r, st: _has(st, "journal_put", "journal_begin",
                            "journal_begin_nowait")),
        ("publisher on the loop (hand-off to the bus, sent marks)",
         lambda r, st: _has_sub(st, "publisher_")),
        ("HMAC-SHA256 (signature_verify)",
         lambda r, st: "signature_verify" in st),
        ("JSON parse + validation (webhook_parse)",
         lambda r, st: "webhook_parse" in st),
        ("writing replies to sockets (writev, loopback TCP)",
         lambda r, st: _has(st, "__GI___writev", "do_writev", "writev",
                            "evbuffer_write_atmost")),
        ("reading requests from sockets (readv)",
         lambda r, st: _has(st, "__GI___readv", "do_readv", "readv",
                            "evbuffer_read")),
        ("evhttp: HTTP parsing, headers, request objects, timers",
         lambda r, st: _has_sub(st, "evhttp", "bufferevent", "evbuffer",
                                "server_request_cb", "server_reply",
                                "listener_")),
        ("ph-http: epoll_wait and the rest of its event loop",
         lambda r, st: r == "http"),
        ("main loop: epoll_wait and the rest of its event loop",
         lambda r, st: _has_sub(st, "epoll", "event_base_loop")),
    ]


def roles(samples):
    """tid -> role; a thread with no known root is "main" when it has
    the most samples of the unknown ones, else "other"."""
    role = {}
    for tid, st in samples:
        if tid in role:
            continue
        for name, root in ROOTS:
            if root in st:
                role[tid] = name
                break
    if "main" not in role.values():
        left = collections.Counter(t for t, _ in samples if t not in role)
        if left:
            role[left.most_common(1)[0][0]] = "main"
    return role


def parse(lines):
    samples, cur = [], None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                samples.append(cur)
            cur = None
            continue
        if not line.startswith("\t"):     # "<tid> " (tid right-aligned)
            cur = (line.split()[0], [])
            continue
        if cur is None:
            continue
        parts = line.strip().split(None, 1)
        cur[1].append(parts[1] if len(parts) > 1 else "?")
    if cur:
        samples.append(cur)
    return samples


def split(lines):
    """Returns (nsamples, [(stage, share)], malloc_share)."""
    samples = parse(lines)
    if not samples:
        return 0, [], 0.0
    role = roles(samples)
    table = stages()
    counts = collections.Counter()
    nmalloc = 0
    for tid, st in samples:
        r = role.get(tid, "other")
        for name, pred in table:
            if pred(r, st):
                counts[name] += 1
                break
        else:
            counts["other"] += 1
        leaf = next((f for f in st if f != "[unknown]"), "")
        if leaf in MALLOC:
            nmalloc += 1
    n = len(samples)
    out = [(name, counts[name] / n) for name, _ in table]
    out.append(("other", counts["other"] / n))
    return n, out, nmalloc / n


def render(lines, us_per_webhook=None):
    n, rows, malloc = split(lines)
    text = ["%d samples" % n]
    for name, share in rows:
        if us_per_webhook:
            text.append("%5.1f %%  %5.1f µs/webhook  %s" %
                        (100 * share, share * us_per_webhook, name))
        else:
            text.append("%5.1f %%  %s" % (100 * share, name))
    text.append("(malloc/free self time, across all stages: %.1f %%)" %
                (100 * malloc))
    return "\n".join(text)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(render(f, float(sys.argv[2]) if len(sys.argv) > 2 else None))
