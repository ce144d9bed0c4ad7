/*
 * auditlog.h: payhook's tamper-evident audit log (docs/audit.md): JSON-lines
 * files audit-NNNNNNNN.jsonl, each starting with a header line, every line
 * hash-chained to the one before across files. auditlog.c holds the
 * canonical form, the line format, the reader and the chain checker;
 * auditlog_writer.c the appender with batched fsync, torn-tail repair and
 * rotation. No state shared between objects; each object belongs to the
 * thread that created it.
 */
#ifndef PAYHOOK_AUDITLOG_H
#define PAYHOOK_AUDITLOG_H

#include <stddef.h>
#include <stdint.h>

#define AUDITLOG_FORMAT		"payhook.audit.v1"
#define AUDITLOG_HASH_LEN	32	/* SHA-256 */
#define AUDITLOG_HEX_LEN	64
#define AUDITLOG_TIME_LEN	24	/* 2026-11-21T10:00:00.000Z */
#define AUDITLOG_NAME_MAX	32	/* audit-NNNNNNNN.jsonl + NUL */

enum auditlog_kind { AUDITLOG_HEADER, AUDITLOG_EVENT };

/* One parsed line. The event bytes are borrowed from the parsed text. */
struct auditlog_line {
	enum auditlog_kind kind;
	int64_t		 seq;		/* event: its seq; header: next_seq */
	int64_t		 file_no;	/* header: the file's number */
	char		 opened[AUDITLOG_TIME_LEN + 1];	/* header: UTC */
	unsigned char	 prev[AUDITLOG_HASH_LEN];
	unsigned char	 hash[AUDITLOG_HASH_LEN];
	const char	*event;		/* event: the JSON exactly as published */
	size_t		 event_len;
};

/* SHA-256 of the line's canonical form (docs/audit.md) into out. */
void	auditlog_hash(const struct auditlog_line *, unsigned char *out);
/* Compute l->hash and format the line (ending in '\n'); caller frees. */
char	*auditlog_format(struct auditlog_line *l, size_t *len);
/* Strict parse of one line without its '\n'. 0, or -1 with *why (static). */
int	auditlog_parse(const char *text, size_t len, struct auditlog_line *,
	    const char **why);
/* "audit-%08lld.jsonl" into name (AUDITLOG_NAME_MAX). */
void	auditlog_file_name(int64_t file_no, char *name);
/* Numbers of the log files in dir, ascending; caller frees *nums. */
int	auditlog_list(const char *dir, int64_t **nums, size_t *n,
	    char **cause);
/* True when two wall-clock ms fall on different UTC days. */
int	auditlog_other_day(int64_t a_ms, int64_t b_ms);

/* Line by line through the files of a log, in file order. */
struct auditlog_rec {
	const char	*file;		/* base name; valid until the next call */
	int64_t		 file_no;
	int64_t		 line_no;	/* 1-based within the file */
	int64_t		 offset;	/* of the line's first byte */
	const char	*text;		/* without '\n' */
	size_t		 len;
	int		 torn;		/* the file ends without a '\n' here */
};
/* Read dir's files from number first_file (0: all). NULL + cause. */
struct auditlog_reader *auditlog_reader_open(const char *dir,
	    int64_t first_file, char **cause);
/* Next line: 1, 0 at the end, -1 + cause on an I/O error. An empty file
 * yields one torn record of length 0. */
int	auditlog_reader_next(struct auditlog_reader *, struct auditlog_rec *,
	    char **cause);
void	auditlog_reader_free(struct auditlog_reader *);

/* The chain checker: fed every record in order, it reports each broken
 * line once (file, line, seq) and re-anchors on it to find the next. */
typedef void (*auditlog_problem_fn)(void *arg, const struct auditlog_rec *,
	    int64_t seq, const char *what);
typedef void (*auditlog_line_fn)(void *arg, const struct auditlog_rec *,
	    const struct auditlog_line *);
struct auditlog_check {
	auditlog_problem_fn problem;
	auditlog_line_fn line;		/* each parsed line; may be NULL */
	void		*arg;
	int		 trust_start;	/* first file read need not link back */
	/* the state after the last complete line */
	int		 have_prev;
	unsigned char	 prev[AUDITLOG_HASH_LEN];
	char		 prev_file[AUDITLOG_NAME_MAX];
	int64_t		 prev_line;
	int64_t		 next_seq;	/* 0: unknown */
	int64_t		 file_no;	/* of the file being read */
	int		 header_ok;	/* it has a good header */
	char		 opened[AUDITLOG_TIME_LEN + 1];	/* its header's */
	int64_t		 file_lines;	/* complete lines in it */
	/* totals */
	int64_t		 files, events, first_seq, last_seq, problems;
};
void	auditlog_check_init(struct auditlog_check *, auditlog_problem_fn,
	    auditlog_line_fn, void *arg);
void	auditlog_check_rec(struct auditlog_check *,
	    const struct auditlog_rec *);

/* The appender. */
struct auditlog_writer_config {
	const char	*dir;
	int64_t		 from;		/* first seq of a new log; 0: 1 */
	int64_t		 rotate_bytes;	/* 0: no size rotation */
	int		 rotate_daily;	/* a new file each UTC day */
	int64_t		 fsync_batch;	/* sync after this many lines */
	int64_t		 fsync_ms;	/* or once the oldest is this old */
};
/* What has been fsync'd: the consumer answers for this much only. */
struct auditlog_head {
	int64_t		 seq;		/* last event synced; 0: none */
	int64_t		 file_no, line_no;
	char		 hash[AUDITLOG_HEX_LEN + 1];
	int64_t		 events;	/* events synced since open */
};
/* Lock dir, check the last file's chain, cut a torn last line away and
 * resume (or start file 1). NULL + cause when the log is broken. */
struct auditlog_writer *auditlog_writer_open(
	    const struct auditlog_writer_config *, char **cause);
/* The seq the log needs next. */
int64_t	auditlog_writer_next_seq(const struct auditlog_writer *);
/* Append the event with that seq (rotating first when due; syncing when
 * the batch is full). -1 + cause: the log is left as it was. */
int	auditlog_writer_append(struct auditlog_writer *, int64_t seq,
	    const char *json, size_t len, char **cause);
/* fdatasync now if anything is pending / if the oldest pending line is
 * older than fsync_ms. */
int	auditlog_writer_sync(struct auditlog_writer *, char **cause);
int	auditlog_writer_tick(struct auditlog_writer *, char **cause);
void	auditlog_writer_head(const struct auditlog_writer *,
	    struct auditlog_head *);
/* Close without syncing (sync first). NULL: no-op. */
void	auditlog_writer_free(struct auditlog_writer *);

#endif
