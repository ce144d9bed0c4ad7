/*
 * util.h: small pure helpers shared by every module: clocks, RFC 3339
 * timestamps, hex, GOV.UK Pay id checks, strict integer parsing, files.
 * Any thread; nothing here keeps state.
 */
#ifndef PAYHOOK_UTIL_H
#define PAYHOOK_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define UTIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Wall-clock milliseconds since the epoch; monotonic milliseconds. */
int64_t	util_now_ms(void);
int64_t	util_mono_ms(void);
/* Monotonic nanoseconds (latencies, deadlines). */
int64_t	util_mono_ns(void);
/* Name the calling thread (at most 15 characters), as ps -L, top -H,
 * perf and gdb show it; best effort. */
void	util_thread_name(const char *name);
/* pthread_create with the process's asynchronous signals (SIGTERM, SIGINT,
 * SIGHUP, SIGPIPE, ...) blocked in the new thread, so they reach the main
 * loop; faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, ...) stay
 * unblocked, so a crash on any thread is reported (ASan, core dump)
 * rather than killing the process silently. Returns pthread_create's. */
int	util_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);
/* "2026-11-21T10:00:00.000Z" into buf (at least 25 bytes). */
void	util_format_time_ms(int64_t ms, char *buf, size_t len);
/* Parse RFC 3339 UTC "YYYY-MM-DDThh:mm:ss[.fff...]Z"; 0 or -1. */
int	util_parse_time_ms(const char *s, size_t len, int64_t *ms);

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void	util_hex_encode(const unsigned char *in, size_t len, char *out);
/* Decode exactly 2*outlen lower-case hex chars; 0 or -1. */
int	util_hex_decode_lower(const char *in, size_t inlen, unsigned char *out,
	    size_t outlen);

/* True when s[0..len) is 1..26 chars of GOV.UK Pay's id alphabet [0-9a-v]. */
int	util_is_pay_id(const char *s, size_t len);

/* Strict base-10 parse of the whole string into [min, max]; 0 or -1. */
int	util_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Read a whole file (at most max bytes); caller frees *out. 0 or -1+cause. */
int	util_read_file(const char *path, size_t max, char **out, size_t *outlen,
	    char **cause);
/* Create dir (and parents) with mode 0700 if missing; 0 or -1+cause. */
int	util_mkdir_p(const char *path, char **cause);

#endif
