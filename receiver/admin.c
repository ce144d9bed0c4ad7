/*
 * admin.c: /healthz (the process runs), /readyz (every registered check
 * passes), /metrics (Prometheus text format), and the status page: / (HTML
 * with a small inline script) polling /status.json (counters from the
 * metrics registry, readiness, the newest events' ids and verdicts).
 * Main thread only. Answers only GET/HEAD; never exposes secrets or PII
 * (no body, email, name or address: ids, topics and verdicts only).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "journal/journal.h"
#include "receiver/admin.h"
#include "receiver/listener.h"

#define ADMIN_MAX_CHECKS	8
#define ADMIN_RECENT		12	/* events on the status page */
#define ADMIN_NAME_MAX		200	/* a sample's name{labels} */

struct admin_check {
	const char	*name;
	admin_check_fn	 fn;
	void		*arg;
};

struct admin {
	struct evhttp		*http;
	struct listener		*listener;
	struct admin_check	 checks[ADMIN_MAX_CHECKS];
	size_t			 nchecks;
	struct journal		*journal;	/* borrowed; NULL: no events */
	double			 started;	/* Unix time, seconds */
};

/* The status page: static, so it can carry a strict CSP. It fetches
 * /status.json every 2 s and writes values with textContent only. */
static const char admin_page[] =
"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
"<title>payhook status</title>\n"
"<meta name=\"viewport\" content=\"width=device-width\">\n<style>\n"
"body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#0b0c0c;"
"background:#f3f2f1}\n"
"h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px}\n"
"#state{display:inline-block;padding:2px 10px;border-radius:3px;"
"color:#fff;background:#505a5f;font-weight:bold}\n"
"#state.ready{background:#00703c}#state.notready{background:#d4351c}\n"
".tiles{display:flex;flex-wrap:wrap;gap:10px}\n"
".tile{background:#fff;padding:10px 14px;min-width:150px;"
"border-left:5px solid #1d70b8}\n"
".tile b{display:block;font-size:26px}\n"
"table{border-collapse:collapse;background:#fff}\n"
"td,th{padding:3px 8px;font-size:13px;border-bottom:1px solid #ddd;text-align"
":left;"
"font-variant-numeric:tabular-nums;white-space:nowrap}\n"
"td.n{text-align:right}.muted{color:#505a5f}\n"
"</style></head><body>\n"
"<h1>payhook <span id=\"state\">loading</span></h1>\n"
"<div class=\"muted\">version <span id=\"version\">?</span> &middot; "
"checks <span id=\"checks\">?</span> &middot; updated "
"<span id=\"updated\">never</span></div>\n"
"<h2>Pipeline</h2><div class=\"tiles\">\n"
"<div class=\"tile\">head seq<b id=\"head_seq\">-</b></div>\n"
"<div class=\"tile\">pending rows<b id=\"pending\">-</b>"
"<span class=\"muted\" id=\"pending_detail\"></span></div>\n"
"<div class=\"tile\">publish queue<b id=\"publish_queue\">-</b></div>\n"
"<div class=\"tile\">quarantined rows<b id=\"quarantined\">-</b></div>\n"
"<div class=\"tile\">published rows<b id=\"published\">-</b></div>\n"
"</div>\n<h2>Newest events</h2><table id=\"events\"><thead><tr>"
"<th>seq</th><th>topic</th><th>event id</th><th>payment id</th>"
"<th>event type</th><th>verdict</th><th>received (UTC)</th></tr></thead>"
"<tbody></tbody></table>\n<div class=\"muted\" id=\"events_note\"></div>\n"
"<h2>Counters</h2><table id=\"counters\"></table>\n"
"<script>\n"
"'use strict';\n"
"const rows=[['webhooks accepted','payhook_webhooks_total{result=\"accepted\""
"}'],"
"['webhooks duplicate','payhook_webhooks_total{result=\"duplicate\"}'],"
"['webhooks quarantined','payhook_webhooks_total{result=\"quarantined\"}'],"
"['signature failures (missing)','payhook_signature_failures_total{reason=\"m"
"issing\"}'],"
"['signature failures (malformed)','payhook_signature_failures_total{reason="
"\"malformed\"}'],"
"['signature failures (mismatch)','payhook_signature_failures_total{reason=\""
"mismatch\"}'],"
"['503 (journal could not commit)','payhook_http_requests_total{status=\"503"
"\"}'],"
"['cross-check confirmed','payhook_crosscheck_results_total{verdict=\"confirm"
"ed\"}'],"
"['cross-check mismatch','payhook_crosscheck_results_total{verdict=\"mismatch"
"\"}'],"
"['cross-check not_found','payhook_crosscheck_results_total{verdict=\"not_fou"
"nd\"}'],"
"['cross-check skipped','payhook_crosscheck_results_total{verdict=\"skipped\""
"}'],"
"['cross-check unverified','payhook_crosscheck_results_total{verdict=\"unveri"
"fied\"}'],"
"['cross-check waiting','payhook_crosscheck_pending'],"
"['API key rejected','payhook_api_auth_failing'],"
"['events published (payment)','payhook_events_published_total{family=\"payme"
"nt\"}'],"
"['events published (alert)','payhook_events_published_total{family=\"alert\""
"}'],"
"['replay requests','payhook_replay_requests_total{result=\"ok\"}'],"
"['signing secrets loaded','payhook_signing_secrets']];\n"
"function $(id){return document.getElementById(id);}\n"
"function num(m,k){return k in m&&m[k]!==null?m[k]:0;}\n"
"function set(id,v){$(id).textContent=String(v);}\n"
"function cell(tr,v,n){const td=document.createElement('td');"
"td.textContent=String(v);if(n)td.className='n';tr.appendChild(td);}\n"
"function render(s){const m=s.metrics;\n"
" $('state').textContent=s.ready?'ready':'not ready';"
"$('state').className=s.ready?'ready':'notready';\n"
" set('version',s.version);set('checks',Object.keys(s.checks).map("
"function(k){return k+': '+s.checks[k];}).join(', '));\n"
" set('head_seq',s.head_seq);set('pending',s.pending.received+"
"s.pending.checked);\n"
" set('pending_detail',' received '+s.pending.received+', checked '+"
"s.pending.checked);\n"
" set('publish_queue',num(m,'payhook_publish_queue'));\n"
" set('quarantined',num(m,'payhook_journal_rows{state=\"quarantined\"}'));\n"
" set('published',num(m,'payhook_journal_rows{state=\"published\"}'));\n"
" const ct=$('counters');ct.textContent='';rows.forEach(function(r){"
"const tr=document.createElement('tr');cell(tr,r[0]);cell(tr,num(m,r[1]),1);"
"ct.appendChild(tr);});\n"
" const tb=$('events').tBodies[0];tb.textContent='';\n"
" s.events.forEach(function(e){const tr=document.createElement('tr');"
"cell(tr,e.seq,1);cell(tr,e.topic);cell(tr,e.event_id);cell(tr,e.payment_id);"
"cell(tr,e.event_type);cell(tr,e.verdict);"
"cell(tr,e.received_at.slice(11));"
"if(!e.published)tr.className='muted';tb.appendChild(tr);});\n"
" set('events_note',s.events_available?(s.events.length?'':'no events yet'):"
"'the journal is not attached to this page');\n"
" set('updated',new Date().toLocaleTimeString());}\n"
"function poll(){fetch('status.json',{cache:'no-store'}).then(function(r){"
"if(!r.ok)throw new Error(r.status);return r.json();}).then(render)"
".catch(function(e){$('state').textContent='unreachable';"
"$('state').className='notready';}).finally(function(){"
"setTimeout(poll,2000);});}\n"
"poll();\n"
"</script></body></html>\n";

static void
admin_send(struct evhttp_request *req, int code, const char *reason,
    const char *type, struct evbuffer *body)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", type);
	evhttp_add_header(out, "Cache-Control", "no-store");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		evbuffer_drain(body, evbuffer_get_length(body));
	evhttp_send_reply(req, code, reason, body);
}

/* Append "checks":{...} to body; 1 when every check passes. Names and
 * reasons are static strings of ours (no quotes to escape). */
static int
admin_checks_json(struct admin *a, struct evbuffer *body)
{
	const char *why;
	size_t i;
	int ready = 1, ok;

	evbuffer_add_printf(body, "\"checks\":{");
	for (i = 0; i < a->nchecks; i++) {
		why = "ok";
		ok = a->checks[i].fn(a->checks[i].arg, &why);
		ready &= ok;
		evbuffer_add_printf(body, "%s\"%s\":\"%s\"", i ? "," : "",
		    a->checks[i].name, ok ? "ok" : why);
	}
	evbuffer_add_printf(body, "}");
	return ready;
}

static void
admin_readyz(struct admin *a, struct evhttp_request *req,
    struct evbuffer *body)
{
	int ready;

	evbuffer_add_printf(body, "{");
	ready = admin_checks_json(a, body);
	evbuffer_add_printf(body, ",\"ready\":%s}\n", ready ? "true" :
	    "false");
	admin_send(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable",
	    "application/json", body);
}

/* Prometheus' usual process_start_time_seconds: restarts show as changes
 * (the PayhookRestarting alert). */
static double
admin_start_gauge(void *arg)
{
	const struct admin *a = arg;

	return a->started;
}

static double
admin_ready_gauge(void *arg)
{
	struct admin *a = arg;
	const char *why;
	size_t i;

	for (i = 0; i < a->nchecks; i++) {
		if (!a->checks[i].fn(a->checks[i].arg, &why))
			return 0;
	}
	return 1;
}

/* A JSON string of s (ids, topics, metric names: ASCII of ours). */
static void
admin_json_str(struct evbuffer *b, const char *s)
{
	evbuffer_add(b, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			evbuffer_add_printf(b, "\\%c", *s);
		else if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			evbuffer_add_printf(b, "\\u%04x", (unsigned char)*s);
		else
			evbuffer_add(b, s, 1);
	}
	evbuffer_add(b, "\"", 1);
}

/* Every sample of the registry but histogram buckets, as "name{labels}":
 * value; head seq and pending rows picked out on the way. */
static void
admin_metrics_json(struct evbuffer *b, int64_t *head, int64_t *received,
    int64_t *checked)
{
	char *text, *line, *next, *sp, name[ADMIN_NAME_MAX], *end;
	size_t len;
	double v;
	int first = 1;

	text = metrics_render(&len);
	evbuffer_add_printf(b, "\"metrics\":{");
	for (line = text; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if (*line == '#' || (sp = strrchr(line, ' ')) == NULL ||
		    (size_t)(sp - line) >= sizeof name)
			continue;
		memcpy(name, line, (size_t)(sp - line));
		name[sp - line] = '\0';
		if (strstr(name, "_bucket{") != NULL)
			continue;
		v = strtod(sp + 1, &end);
		if (end == sp + 1)
			continue;
		if (strcmp(name, "payhook_head_seq") == 0)
			*head = (int64_t)v;
		else if (strcmp(name, "payhook_journal_rows{state=\"received\"}")
		    == 0)
			*received = (int64_t)v;
		else if (strcmp(name, "payhook_journal_rows{state=\"checked\"}")
		    == 0)
			*checked = (int64_t)v;
		evbuffer_add_printf(b, "%s", first ? "" : ",");
		first = 0;
		admin_json_str(b, name);
		if (isfinite(v))
			evbuffer_add_printf(b, ":%.17g", v);
		else
			evbuffer_add_printf(b, ":null");
	}
	evbuffer_add_printf(b, "}");
	free(text);
}

/* The newest events: ids, topics and verdicts only. */
static void
admin_events_json(struct admin *a, struct evbuffer *b)
{
	struct journal_recent ev[ADMIN_RECENT];
	char *cause = NULL, when[32];
	size_t n = 0, i;

	if (a->journal != NULL && journal_recent_events(a->journal,
	    ADMIN_RECENT, ev, &n, &cause) != 0) {
		log_warn("status_page_events_failed", "error=\"%s\"", cause);
		free(cause);
		n = 0;
	}
	evbuffer_add_printf(b, "\"events_available\":%s,\"events\":[",
	    a->journal != NULL ? "true" : "false");
	for (i = 0; i < n; i++) {
		util_format_time_ms(ev[i].received_ms, when, sizeof when);
		/* A quarantined row's key is a body hash: show its prefix. */
		if (strncmp(ev[i].event_id, "q-", 2) == 0)
			ev[i].event_id[18] = '\0';
		evbuffer_add_printf(b, "%s{\"seq\":%lld,\"topic\":", i ? "," :
		    "", (long long)ev[i].seq);
		admin_json_str(b, ev[i].topic);
		evbuffer_add_printf(b, ",\"event_id\":");
		admin_json_str(b, ev[i].event_id);
		evbuffer_add_printf(b, ",\"payment_id\":");
		admin_json_str(b, ev[i].payment_id);
		evbuffer_add_printf(b, ",\"event_type\":");
		admin_json_str(b, ev[i].event_type);
		evbuffer_add_printf(b, ",\"verdict\":");
		admin_json_str(b, ev[i].verdict);
		evbuffer_add_printf(b, ",\"received_at\":");
		admin_json_str(b, ev[i].received_ms > 0 ? when : "");
		evbuffer_add_printf(b, ",\"published\":%s}", ev[i].published ?
		    "true" : "false");
	}
	evbuffer_add_printf(b, "]");
}

static void
admin_status_json(struct admin *a, struct evhttp_request *req,
    struct evbuffer *b)
{
	int64_t head = 0, received = 0, checked = 0;
	char now[32];
	int ready;

	util_format_time_ms(util_now_ms(), now, sizeof now);
	evbuffer_add_printf(b, "{\"version\":\"%s\",\"time\":\"%s\",",
	    PAYHOOK_VERSION, now);
	ready = admin_checks_json(a, b);
	evbuffer_add_printf(b, ",\"ready\":%s,", ready ? "true" : "false");
	admin_metrics_json(b, &head, &received, &checked);
	evbuffer_add_printf(b, ",\"head_seq\":%lld,\"pending\":{"
	    "\"received\":%lld,\"checked\":%lld},", (long long)head,
	    (long long)received, (long long)checked);
	admin_events_json(a, b);
	evbuffer_add_printf(b, "}\n");
	admin_send(req, 200, "OK", "application/json", b);
}

static void
admin_page_send(struct evhttp_request *req, struct evbuffer *b)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Security-Policy", "default-src 'none'; "
	    "script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
	    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'");
	evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(out, "Referrer-Policy", "no-referrer");
	evbuffer_add(b, admin_page, sizeof admin_page - 1);
	admin_send(req, 200, "OK", "text/html; charset=utf-8", b);
}

static void
admin_request_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evbuffer *body;
	char *text;
	size_t len;

	listener_request_done(a->listener, req);
	if ((body = evbuffer_new()) == NULL)
		abort();
	if (path == NULL) {
		evbuffer_add_printf(body, "{\"error\":\"bad request\"}\n");
		admin_send(req, 400, "Bad Request", "application/json", body);
	} else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		evbuffer_add_printf(body, "{\"error\":\"method not allowed; "
		    "use GET\"}\n");
		admin_send(req, 405, "Method Not Allowed", "application/json",
		    body);
	} else if (strcmp(path, "/healthz") == 0) {
		evbuffer_add_printf(body, "{\"status\":\"ok\"}\n");
		admin_send(req, 200, "OK", "application/json", body);
	} else if (strcmp(path, "/readyz") == 0) {
		admin_readyz(a, req, body);
	} else if (strcmp(path, "/") == 0) {
		admin_page_send(req, body);
	} else if (strcmp(path, "/status.json") == 0) {
		admin_status_json(a, req, body);
	} else if (strcmp(path, "/metrics") == 0) {
		text = metrics_render(&len);
		evbuffer_add(body, text, len);
		free(text);
		admin_send(req, 200, "OK", "text/plain; version=0.0.4; "
		    "charset=utf-8", body);
	} else {
		evbuffer_add_printf(body, "{\"error\":\"not found\"}\n");
		admin_send(req, 404, "Not Found", "application/json", body);
	}
	evbuffer_free(body);
}

struct admin *
admin_new(struct event_base *base, const char *addr, char **cause)
{
	struct listener_config lc;
	struct admin *a;

	a = xcalloc(1, sizeof *a);
	if ((a->http = evhttp_new(base)) == NULL)
		abort();
	evhttp_set_max_body_size(a->http, 4096);
	evhttp_set_max_headers_size(a->http, 16384);
	evhttp_set_timeout(a->http, 10);
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(a->http, admin_request_cb, a);
	memset(&lc, 0, sizeof lc);
	lc.addr = addr;
	lc.max_connections = 64;
	lc.request_timeout_ms = 10000;
	if ((a->listener = listener_new(base, a->http, &lc, cause)) == NULL) {
		admin_free(a);
		return NULL;
	}
	metrics_gauge("payhook_ready", "1 while every readiness check passes "
	    "(what /readyz answers 200 for).", NULL, admin_ready_gauge, a);
	a->started = (double)util_now_ms() / 1000;
	metrics_gauge("process_start_time_seconds", "Start time of the "
	    "process since the Unix epoch, in seconds.", NULL,
	    admin_start_gauge, a);
	return a;
}

void
admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	/* First: evhttp_free frees the listening socket before the
	 * connections, whose close callbacks must not re-enable it. */
	if (a->listener != NULL)
		listener_close(a->listener);
	if (a->http != NULL)
		evhttp_free(a->http);
	listener_free(a->listener);
	free(a);
}

void
admin_add_check(struct admin *a, const char *name, admin_check_fn fn,
    void *arg)
{
	if (a->nchecks == ADMIN_MAX_CHECKS)
		abort();
	a->checks[a->nchecks].name = name;
	a->checks[a->nchecks].fn = fn;
	a->checks[a->nchecks].arg = arg;
	a->nchecks++;
}

void
admin_set_journal(struct admin *a, struct journal *j)
{
	a->journal = j;
}

const char *
admin_address(const struct admin *a)
{
	return listener_address(a->listener);
}
