/*
 * control.c: /_sim/ endpoints. Event-loop thread. Faults never apply
 * here, and nothing here is part of GOV.UK Pay's API: it stands in for
 * the paying user, the clock and the admin tool.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "sim/api.h"
#include "sim/control.h"
#include "sim/http.h"
#include "sim/lifecycle.h"
#include "sim/repr.h"
#include "sim/sched.h"
#include "sim/store.h"
#include "sim/webhook.h"

static void
control_error(struct evhttp_request *req, int status, const char *msg)
{
	cJSON *o = jnew_obj();

	jadd_str(o, "error", msg);
	http_reply_json(req, status, o);
}

static void
control_ok(struct evhttp_request *req)
{
	cJSON *o = jnew_obj();

	jadd_str(o, "status", "ok");
	http_reply_json(req, 200, o);
}

/* The JSON body as an object ({} when empty); NULL after replying 400. */
static cJSON *
control_body(struct evhttp_request *req)
{
	cJSON *o;
	char *body;
	size_t len;

	body = http_body(req, &len);
	o = len == 0 ? jnew_obj() : jparse(body, len);
	free(body);
	if (o == NULL || !cJSON_IsObject(o)) {
		cJSON_Delete(o);
		control_error(req, 400, "body must be a JSON object");
		return NULL;
	}
	return o;
}

static const char *
control_str(const cJSON *o, const char *key)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(it) ? it->valuestring : NULL;
}

static cJSON *
control_time_json(const struct sim *sim)
{
	char ts[32];
	cJSON *o;

	o = jnew_obj();
	util_format_time_ms(sim_now(sim), ts, sizeof ts);
	jadd_str(o, "now", ts);
	jadd_int(o, "now_ms", sim_now(sim));
	jadd_int(o, "offset_ms", sim->clock_offset_ms);
	jadd_num(o, "time_scale", sim->cfg.time_scale);
	return o;
}

static void
control_advance(struct sim *sim, struct evhttp_request *req)
{
	const cJSON *it;
	double ms = 0;
	cJSON *o;

	if ((o = control_body(req)) == NULL)
		return;
	if (cJSON_IsNumber(it = cJSON_GetObjectItemCaseSensitive(o, "ms")))
		ms += it->valuedouble;
	if (cJSON_IsNumber(it = cJSON_GetObjectItemCaseSensitive(o,
	    "seconds")))
		ms += it->valuedouble * 1000;
	if (cJSON_IsNumber(it = cJSON_GetObjectItemCaseSensitive(o,
	    "minutes")))
		ms += it->valuedouble * 60000;
	if (cJSON_IsNumber(it = cJSON_GetObjectItemCaseSensitive(o, "hours")))
		ms += it->valuedouble * 3600000;
	if (cJSON_IsNumber(it = cJSON_GetObjectItemCaseSensitive(o, "days")))
		ms += it->valuedouble * 86400000;
	cJSON_Delete(o);
	if (ms < 0 || ms > 365.0 * 86400000) {
		control_error(req, 400, "time only moves forward (up to a year)");
		return;
	}
	sim->clock_offset_ms += (int64_t)ms;
	sched_run(sim->sched);
	http_reply_json(req, 200, control_time_json(sim));
}

static cJSON *
control_payment_json(const struct sim *sim, const struct payment *p)
{
	char ts[32];
	cJSON *o;

	o = jnew_obj();
	jadd_item(o, "payment", repr_payment(sim, p));
	jadd_item(o, "webhook_resource", repr_payment_webhook(p));
	jadd_str(o, "account", p->account == SIM_ACCOUNT_LIVE ? "live" :
	    "test");
	jadd_str(o, "next_url_token", p->token);
	jadd_bool(o, "next_url_used", p->token_used);
	util_format_time_ms(p->created_ms + LIFECYCLE_EXPIRY_MS, ts, sizeof ts);
	jadd_str(o, "expires_at", ts);
	return o;
}

static void
control_payment(struct sim *sim, struct evhttp_request *req, char **parts,
    int n)
{
	const char *action = n > 3 ? parts[3] : NULL, *cause = NULL;
	struct payment *p;
	cJSON *o = NULL;
	int rc = 0;
	const cJSON *c;

	if ((p = store_by_id_any(sim->store, parts[2])) == NULL) {
		control_error(req, 404, "no such payment");
		return;
	}
	if (action == NULL) {
		http_reply_json(req, 200, control_payment_json(sim, p));
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		control_error(req, 405, "use POST");
		return;
	}
	if ((o = control_body(req)) == NULL)
		return;
	if (strcmp(action, "visit") == 0)
		rc = lifecycle_visit(sim, p, &cause);
	else if (strcmp(action, "card") == 0) {
		c = cJSON_GetObjectItemCaseSensitive(o, "confirm");
		rc = lifecycle_enter_card(sim, p, control_str(o, "card_number"),
		    control_str(o, "outcome"), control_str(o, "cardholder_name"),
		    !cJSON_IsFalse(c), &cause);
	} else if (strcmp(action, "confirm") == 0)
		rc = lifecycle_confirm(sim, p, &cause);
	else if (strcmp(action, "user-cancel") == 0)
		rc = lifecycle_user_cancel(sim, p, &cause);
	else if (strcmp(action, "expire") == 0)
		rc = lifecycle_expire(sim, p, &cause);
	else if (strcmp(action, "abandon") == 0)
		rc = 0;	/* the user walks away; expiry does the rest */
	else {
		cause = "unknown action";
		rc = -2;
	}
	cJSON_Delete(o);
	if (rc != 0) {
		control_error(req, rc == -2 ? 404 : 409, cause);
		return;
	}
	http_reply_json(req, 200, control_payment_json(sim, p));
}

static void
control_send(struct sim *sim, struct evhttp_request *req)
{
	const char *pid, *type, *id;
	const cJSON *over;
	struct payment *p;
	cJSON *o, *r;

	if ((o = control_body(req)) == NULL)
		return;
	pid = control_str(o, "payment_id");
	type = control_str(o, "event_type");
	over = cJSON_GetObjectItemCaseSensitive(o, "resource_overrides");
	if (pid == NULL || (p = store_by_id_any(sim->store, pid)) == NULL) {
		control_error(req, 404, "payment_id: no such payment");
		goto out;
	}
	if (over != NULL && !cJSON_IsObject(over)) {
		control_error(req, 400, "resource_overrides must be an object");
		goto out;
	}
	if (!webhook_enabled(sim->webhook)) {
		control_error(req, 409, "webhooks are off (no --webhook-url)");
		goto out;
	}
	id = webhook_emit(sim->webhook, type ? type : "card_payment_succeeded",
	    p, sim_now(sim), over);
	if (id == NULL) {
		control_error(req, 400, "event_type not subscribed or unknown");
		goto out;
	}
	r = jnew_obj();
	jadd_str(r, "webhook_message_id", id);
	http_reply_json(req, 200, r);
out:
	cJSON_Delete(o);
}

static void
control_webhook_config(struct sim *sim, struct evhttp_request *req)
{
	const cJSON *it;
	cJSON *o;

	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		if ((o = control_body(req)) == NULL)
			return;
		it = cJSON_GetObjectItemCaseSensitive(o, "duplicate_rate");
		if (it != NULL && (!cJSON_IsNumber(it) || it->valuedouble < 0 ||
		    it->valuedouble > 1)) {
			cJSON_Delete(o);
			control_error(req, 400, "duplicate_rate must be 0..1");
			return;
		}
		if (it != NULL)
			webhook_set_duplicate_rate(sim->webhook,
			    it->valuedouble);
		cJSON_Delete(o);
	}
	o = jnew_obj();
	jadd_num(o, "duplicate_rate", webhook_duplicate_rate(sim->webhook));
	jadd_str(o, "url", sim->cfg.webhook_url);
	http_reply_json(req, 200, o);
}

static void
control_signing_key(struct sim *sim, struct evhttp_request *req)
{
	const char *secret;
	cJSON *o;

	if (!webhook_enabled(sim->webhook)) {
		control_error(req, 409, "webhooks are off (no --webhook-url)");
		return;
	}
	if ((o = control_body(req)) == NULL)
		return;
	secret = control_str(o, "signing_secret");
	if (secret != NULL && *secret == '\0') {
		cJSON_Delete(o);
		control_error(req, 400, "signing_secret must not be empty");
		return;
	}
	webhook_set_secret(sim->webhook, secret);
	cJSON_Delete(o);
	o = jnew_obj();
	jadd_str(o, "signing_secret", webhook_secret(sim->webhook));
	http_reply_json(req, 200, o);
}

static void
control_webhooks(struct sim *sim, struct evhttp_request *req, char **parts,
    int n)
{
	char pid[64], type[64], lim[32];
	const char *p, *t, *l;
	int64_t limit = 0;

	if (n == 2) {
		p = http_query(req, "payment_id", pid, sizeof pid);
		t = http_query(req, "event_type", type, sizeof type);
		l = http_query(req, "limit", lim, sizeof lim);
		if (l != NULL && util_parse_int64(l, 0, 1000000, &limit) != 0) {
			control_error(req, 400, "limit must be 0..1000000");
			return;
		}
		http_reply_json(req, 200, webhook_log_json(sim->webhook, p, t,
		    (size_t)limit));
	} else if (strcmp(parts[2], "config") == 0)
		control_webhook_config(sim, req);
	else if (strcmp(parts[2], "signing-key") == 0 &&
	    evhttp_request_get_command(req) == EVHTTP_REQ_POST)
		control_signing_key(sim, req);
	else if ((strcmp(parts[2], "send") == 0 ||
	    strcmp(parts[2], "lie") == 0) &&
	    evhttp_request_get_command(req) == EVHTTP_REQ_POST)
		control_send(sim, req);
	else
		control_error(req, 404, "unknown /_sim/webhooks endpoint");
}

static void
control_faults(struct sim *sim, struct evhttp_request *req)
{
	const char *cause = NULL;
	cJSON *o;

	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		if ((o = control_body(req)) == NULL)
			return;
		if (api_set_faults(sim->api, o, &cause) != 0) {
			cJSON_Delete(o);
			control_error(req, 400, cause);
			return;
		}
		cJSON_Delete(o);
	} else if (evhttp_request_get_command(req) == EVHTTP_REQ_DELETE)
		api_clear_faults(sim->api);
	http_reply_json(req, 200, api_faults_json(sim->api));
}

static void
control_stats(struct sim *sim, struct evhttp_request *req)
{
	size_t counts[8], i;
	cJSON *o, *by;

	store_count_status(sim->store, counts);
	o = jnew_obj();
	jadd_int(o, "payments", (int64_t)store_count(sim->store));
	by = jadd_obj(o, "payments_by_status");
	for (i = 0; i < 8; i++)
		jadd_int(by, repr_status_name((enum pay_status)i),
		    (int64_t)counts[i]);
	jadd_int(o, "api_requests", (int64_t)sim->stats.api_requests);
	jadd_int(o, "api_faults", (int64_t)sim->stats.api_faults);
	jadd_int(o, "scheduled", (int64_t)sched_pending(sim->sched));
	jadd_item(o, "webhooks", webhook_stats_json(sim->webhook));
	jadd_item(o, "time", control_time_json(sim));
	http_reply_json(req, 200, o);
}

static void
control_reset(struct sim *sim, struct evhttp_request *req)
{
	sched_drop_kinds(sim->sched, (1u << SCHED_EXPIRE) |
	    (1u << SCHED_CAPTURE) | (1u << SCHED_REFUND));
	store_clear(sim->store);
	webhook_reset(sim->webhook);
	api_clear_faults(sim->api);
	memset(&sim->stats, 0, sizeof sim->stats);
	control_ok(req);
}

void
control_handle(struct sim *sim, struct evhttp_request *req, char **parts,
    int n)
{
	int post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;

	if (n == 2 && strcmp(parts[1], "health") == 0)
		control_ok(req);
	else if (n == 2 && strcmp(parts[1], "stats") == 0)
		control_stats(sim, req);
	else if (n == 2 && strcmp(parts[1], "reset") == 0 && post)
		control_reset(sim, req);
	else if (n == 2 && strcmp(parts[1], "time") == 0)
		http_reply_json(req, 200, control_time_json(sim));
	else if (n == 3 && strcmp(parts[1], "time") == 0 &&
	    strcmp(parts[2], "advance") == 0 && post)
		control_advance(sim, req);
	else if (n == 2 && strcmp(parts[1], "faults") == 0)
		control_faults(sim, req);
	else if (n >= 3 && n <= 4 && strcmp(parts[1], "payments") == 0)
		control_payment(sim, req, parts, n);
	else if (n >= 2 && n <= 3 && strcmp(parts[1], "webhooks") == 0)
		control_webhooks(sim, req, parts, n);
	else
		control_error(req, 404, "unknown /_sim/ endpoint");
}
