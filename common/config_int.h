/*
 * config_int.h: the configuration table's entry type, shared by config.c
 * (parsing, validation) and config_doc.c (help, example file, docs). Not for
 * use outside common/config*.c. Main thread, at start-up.
 */
#ifndef PAYHOOK_CONFIG_INT_H
#define PAYHOOK_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

enum config_type {
	CONFIG_STRING,		/* free text (validated by check hook) */
	CONFIG_FILE,		/* an existing readable file */
	CONFIG_DIR,		/* a directory (created if missing) */
	CONFIG_ADDR,		/* host:port, port 0 = any free port */
	CONFIG_URLPATH,		/* an absolute URL path */
	CONFIG_URL,		/* http(s)://host[:port][/path] */
	CONFIG_ZMQ,		/* tcp://host:port or ipc://path */
	CONFIG_BOOL,		/* on/off */
	CONFIG_INT,
	CONFIG_SIZE,		/* bytes, with k/m/g suffixes */
	CONFIG_DURATION,	/* milliseconds, with ms/s/m/h/d suffixes */
	CONFIG_ENUM,
};

#define CONFIG_SECRET	0x1	/* the file holds a secret: never print it */
#define CONFIG_REQUIRED	0x2	/* must be set (a cross-key rule may relax) */
#define CONFIG_UNSET_OK	0x4	/* "" means unset */

struct config_entry {
	const char	*name;
	enum config_type type;
	const char	*def;		/* default as text; "" = unset */
	int64_t		 min, max;	/* INT, SIZE, DURATION */
	const char *const *choices;	/* ENUM, in value order */
	int		 flags;
	size_t		 offset;	/* into struct config */
	const char	*help;
};

extern const struct config_entry config_table[];
extern const size_t config_table_len;

/* What a value of this entry must look like, in words (for errors, docs). */
const char *config_type_expect(const struct config_entry *, char *buf,
	    size_t len);

#endif
