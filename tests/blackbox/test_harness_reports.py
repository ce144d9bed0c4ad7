#!/usr/bin/python3
"""test_harness_reports.py: the sanitizer and valgrind runs of the suite
(scripts/test.sh) are only worth something if a report really fails a
test. This checks phtest's report scanner on canned ASan, UBSan, LSan and
valgrind output, and then, against the binary under test, provokes a real
one: a preloaded library that leaks at start-up, seen by LeakSanitizer in
the ASan build or by memcheck under PAYHOOK_VALGRIND=1 (in the plain build
only the scanner part runs)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phtest  # noqa: E402
from phtest import Runner, Service, webhook, pay_id  # noqa: E402

ASAN_TEXT = """event=listening webhooks=127.0.0.1:1 admin=127.0.0.1:2
=================================================================
==123==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x1
READ of size 1 at 0x602000000011 thread T0
    #0 0x55 in json_tokenize receiver/json.c:99
SUMMARY: AddressSanitizer: heap-buffer-overflow receiver/json.c:99"""
UBSAN_TEXT = "receiver/json.c:12:5: runtime error: signed integer overflow"
LSAN_TEXT = """==9==ERROR: LeakSanitizer: detected memory leaks
Direct leak of 77 byte(s) in 1 object(s) allocated from:"""
CLEAN_TEXT = """event=listening webhooks=127.0.0.1:1 admin=127.0.0.1:2
event=shutdown signal=15 connections=0"""
VG_CLEAN = """==1== Memcheck, a memory error detector
==1== HEAP SUMMARY:
==1==     in use at exit: 0 bytes in 0 blocks
==1== All heap blocks were freed -- no leaks are possible
==1== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 0 from 0)"""
VG_LEAK = """==1== LEAK SUMMARY:
==1==    definitely lost: 77 bytes in 1 blocks
==1== ERROR SUMMARY: 1 errors from 1 contexts (suppressed: 0 from 0)"""

LEAK_C = r"""
#include <stdlib.h>
#include <string.h>
static void __attribute__((constructor)) payhook_test_leak(void)
{
	char *p = malloc(4242);
	memset(p, 1, 4242);
	p = NULL;	/* definitely lost */
}
"""


def scanned(r, name, want, *args, **kw):
    before = len(phtest.SANITIZER_FINDINGS)
    import io
    import contextlib
    with contextlib.redirect_stdout(io.StringIO()):
        got = phtest.sanitizer_report(name, *args, **kw)
    del phtest.SANITIZER_FINDINGS[before:]     # canned: not a real finding
    r.check("scanner: %s" % name, bool(got) == want, repr(got)[:300])


def scanner(r):
    tmp = tempfile.mkdtemp(prefix="payhook-harness-")
    try:
        scanned(r, "ASan heap overflow is a finding", True, ASAN_TEXT, -6)
        scanned(r, "UBSan runtime error is a finding", True, UBSAN_TEXT, 0)
        scanned(r, "LSan leak is a finding", True, LSAN_TEXT, 23)
        scanned(r, "clean log is not a finding", False, CLEAN_TEXT, 0)
        clean = os.path.join(tmp, "clean.log")
        leak = os.path.join(tmp, "leak.log")
        with open(clean, "w") as f:
            f.write(VG_CLEAN)
        with open(leak, "w") as f:
            f.write(VG_LEAK)
        scanned(r, "valgrind clean summary is not a finding", False,
                CLEAN_TEXT, 0, valgrind_log=clean)
        scanned(r, "valgrind definite leak is a finding", True, CLEAN_TEXT,
                99, valgrind_log=leak)
        scanned(r, "valgrind without a summary is a finding", True,
                CLEAN_TEXT, 0, valgrind_log=os.path.join(tmp, "none"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def asan_runtime():
    """Path of the ASan runtime the binary links, or None (plain build)."""
    try:
        out = subprocess.run(["ldd", phtest.BIN], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(/\S*libasan\.so\S*)", out)
    return m.group(1) if m else None


def provoked(r):
    """A real leak in the real service must be reported and fail."""
    libasan = asan_runtime()
    if not libasan and not phtest.VALGRIND:
        print("note: plain build without PAYHOOK_VALGRIND=1: the provoked "
              "report part runs in the ASan and valgrind passes only")
        return
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        r.check("a C compiler to build the leaking library", False)
        return
    tmp = tempfile.mkdtemp(prefix="payhook-harness-")
    try:
        src, lib = os.path.join(tmp, "leak.c"), os.path.join(tmp, "leak.so")
        with open(src, "w") as f:
            f.write(LEAK_C)
        subprocess.run([cc, "-O0", "-shared", "-fPIC", "-o", lib, src],
                       check=True, timeout=60)
        env = {"LD_PRELOAD": (libasan + ":" if libasan else "") + lib}
        if libasan:
            env["ASAN_OPTIONS"] = os.environ.get(
                "ASAN_OPTIONS", "detect_leaks=1") + \
                ":verify_asan_link_order=0"
        before = len(phtest.SANITIZER_FINDINGS)
        s = Service(env=env)
        try:
            s.start()
            mid = pay_id(0x7a11)
            st, _, _ = s.post(webhook(mid))
            r.check("the leaking service still answers 200", st == 200, st)
        finally:
            rc = s.stop()
            s.cleanup()
        found = phtest.SANITIZER_FINDINGS[before:]
        r.check("the leak is reported as a finding (%s)" % (
            "valgrind" if phtest.VALGRIND else "LeakSanitizer"),
            len(found) == 1, repr(found)[:500])
        r.check("the leak makes the exit status non-zero", rc not in (0, None),
                rc)
        # Expected here, so it must not fail this test at exit.
        del phtest.SANITIZER_FINDINGS[before:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    r = Runner("harness-reports")
    r.run(scanner)
    r.run(provoked)
    r.done()


if __name__ == "__main__":
    main()
