/*
 * util.c: clocks, timestamps, hex, id checks, integer parsing, file reads,
 * thread names. Any thread; no globals (util_thread_name names the
 * calling thread).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "common/xmalloc.h"

int64_t
util_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
util_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
util_thread_name(const char *name)
{
	(void)pthread_setname_np(pthread_self(), name);
}

int
util_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	static const int faults[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL,
	    SIGTRAP, SIGABRT, SIGSYS };
	sigset_t async, old;
	size_t i;
	int error;

	/* A blocked fault signal is not reported: the kernel kills the
	 * process with its default action, and no handler runs. */
	sigfillset(&async);
	for (i = 0; i < UTIL_ARRAY_LEN(faults); i++)
		sigdelset(&async, faults[i]);
	pthread_sigmask(SIG_BLOCK, &async, &old);
	error = pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return error;
}

/*
 * Days since 1970-01-01 of a proleptic Gregorian date, and back (Howard
 * Hinnant's algorithms): the same arithmetic timegm and gmtime do, without
 * their time-zone machinery, which was a visible share of normalising.
 * Days past a month's end carry into the next month, as with timegm.
 */
static int64_t
util_days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void
util_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static char *
util_put_digits(char *p, int64_t v, int width)
{
	int i;

	for (i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + width;
}

void
util_format_time_ms(int64_t ms, char *buf, size_t len)
{
	int64_t secs, days, rem, y;
	int m, d;
	char out[32], *p = out;

	secs = ms / 1000 - (ms % 1000 < 0);
	days = secs / 86400 - (secs % 86400 < 0);
	rem = secs - days * 86400;
	util_civil_from_days(days, &y, &m, &d);
	if (y < 0 || y > 9999) {
		/* Out of RFC 3339's range: still one line, never a crash. */
		xsnprintf(buf, len, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ",
		    (long long)y, m, d, (int)(rem / 3600), (int)(rem / 60 % 60),
		    (int)(rem % 60), (int)(ms - secs * 1000));
		return;
	}
	p = util_put_digits(p, y, 4);
	*p++ = '-';
	p = util_put_digits(p, m, 2);
	*p++ = '-';
	p = util_put_digits(p, d, 2);
	*p++ = 'T';
	p = util_put_digits(p, rem / 3600, 2);
	*p++ = ':';
	p = util_put_digits(p, rem / 60 % 60, 2);
	*p++ = ':';
	p = util_put_digits(p, rem % 60, 2);
	*p++ = '.';
	p = util_put_digits(p, ms - secs * 1000, 3);
	*p++ = 'Z';
	if (len == 0)
		return;
	if ((size_t)(p - out) >= len)
		p = out + len - 1;	/* cut short, like snprintf */
	memcpy(buf, out, (size_t)(p - out));
	buf[p - out] = '\0';
}

static int
util_digits(const char *s, size_t n, int *out)
{
	int v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int
util_parse_time_ms(const char *s, size_t len, int64_t *ms)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31,
	    30, 31 };
	int y, mo, d, h, mi, sec, frac = 0, scale = 100;
	size_t i;

	if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
	    s[13] != ':' || s[16] != ':' || s[len - 1] != 'Z')
		return -1;
	if (util_digits(s, 4, &y) || util_digits(s + 5, 2, &mo) ||
	    util_digits(s + 8, 2, &d) || util_digits(s + 11, 2, &h) ||
	    util_digits(s + 14, 2, &mi) || util_digits(s + 17, 2, &sec))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
	    mi > 59 || sec > 60)
		return -1;
	if (len > 20) {
		if (s[19] != '.' || len < 22 || len > 30)
			return -1;
		for (i = 20; i < len - 1; i++) {
			if (s[i] < '0' || s[i] > '9')
				return -1;
			frac += (s[i] - '0') * scale;
			scale /= 10;
		}
	}
	*ms = ((util_days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 +
	    (int64_t)sec * 1000 + frac;
	return 0;
}

void
util_hex_encode(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

static int
util_hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
util_hex_decode_lower(const char *in, size_t inlen, unsigned char *out,
    size_t outlen)
{
	size_t i;
	int hi, lo;

	if (inlen != 2 * outlen)
		return -1;
	for (i = 0; i < outlen; i++) {
		hi = util_hex_nibble(in[2 * i]);
		lo = util_hex_nibble(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int
util_is_pay_id(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 26)
		return 0;
	for (i = 0; i < len; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'v')))
			return 0;
	}
	return 1;
}

int
util_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	long long v;
	char *end;

	if (*s == '\0' || (*s != '-' && (*s < '0' || *s > '9')))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
util_read_file(const char *path, size_t max, char **out, size_t *outlen,
    char **cause)
{
	struct stat st;
	char *buf = NULL;
	size_t have = 0;
	ssize_t n;
	int fd, ret = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		*cause = xasprintf("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		*cause = xasprintf("%s is not a regular file", path);
		goto out;
	}
	buf = xmalloc(max + 1);
	for (;;) {
		n = read(fd, buf + have, max + 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*cause = xasprintf("cannot read %s: %s", path,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		if (have > max) {
			*cause = xasprintf("%s is larger than %zu bytes", path,
			    max);
			goto out;
		}
	}
	buf[have] = '\0';
	*out = buf;
	*outlen = have;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	close(fd);
	return ret;
}

int
util_mkdir_p(const char *path, char **cause)
{
	char tmp[PATH_MAX];
	size_t i, len;

	len = strlen(path);
	if (len == 0 || len >= sizeof tmp) {
		*cause = xasprintf("bad directory path");
		return -1;
	}
	memcpy(tmp, path, len + 1);
	for (i = 1; i <= len; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
			*cause = xasprintf("cannot create %s: %s", tmp,
			    strerror(errno));
			return -1;
		}
		if (i < len)
			tmp[i] = '/';
	}
	return 0;
}
