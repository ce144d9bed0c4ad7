/*
 * log.h: one line per event on stderr, "ts=... level=... event=... k=v".
 * Any thread (each line is written with one write(2)). Never pass secrets,
 * signatures, card data, email addresses or bodies: log ids only.
 */
#ifndef PAYHOOK_LOG_H
#define PAYHOOK_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Set the minimum level; route libevent's own messages here. */
void	log_init(enum log_level, const char *program);
/* Parse "debug|info|warn|error"; -1 if unknown. */
int	log_level_parse(const char *);
int	log_enabled(enum log_level);
/* event is a short snake_case name; fmt adds "k=v" pairs (may be NULL). */
void	log_msg(enum log_level, const char *event, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) do {						\
	if (log_enabled(LOG_DEBUG))					\
		log_msg(LOG_DEBUG, ev, __VA_ARGS__);			\
} while (0)
#define log_info(ev, ...)	log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...)	log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...)	log_msg(LOG_ERROR, ev, __VA_ARGS__)

/* Print "program: fatal: ..." and exit(code); start-up errors only. */
void	fatalx(int code, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3), noreturn));

#endif
