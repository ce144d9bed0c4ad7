/*
 * admin.h: the admin listener: GET /healthz, /readyz, /metrics, and the
 * status page (/ and /status.json). Readiness is the AND of checks that
 * other modules register. Main thread only.
 */
#ifndef PAYHOOK_ADMIN_H
#define PAYHOOK_ADMIN_H

struct event_base;
struct admin;

/* A readiness check: 1 ready, 0 not (with a short static reason). */
typedef int (*admin_check_fn)(void *arg, const char **why);

struct admin *admin_new(struct event_base *, const char *addr, char **cause);
void	admin_free(struct admin *);
/* Add a named readiness check (name is borrowed; static strings). */
void	admin_add_check(struct admin *, const char *name, admin_check_fn,
	    void *arg);
const char *admin_address(const struct admin *);
/* Let the status page list the newest events (ids, topics, verdicts) from
 * the journal (borrowed; NULL: none). Without it the page shows counters. */
struct journal;
void	admin_set_journal(struct admin *, struct journal *);

#endif
