/*
 * validate.c: POST /v1/payments body rules, checked in publicapi's order:
 * JSON parse, unexpected attributes, types (400), bean limits (422), then
 * connector-side rules (missing return_url, https for live, zero amount).
 * Any thread. Never logs field values (they may hold personal data).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "common/xmalloc.h"
#include "sim/json.h"
#include "sim/store.h"
#include "sim/validate.h"

static const char *const known_fields[] = {
	"amount", "reference", "description", "return_url", "language",
	"email", "delayed_capture", "moto", "metadata",
	"prefilled_cardholder_details", "authorisation_mode", "agreement_id",
	"set_up_agreement", "agreement_payment_type", "internal"
};

static int	verr(struct api_error *, int, const char *, const char *,
		    const char *, ...) __attribute__((format(printf, 5, 6)));

static int
verr(struct api_error *e, int status, const char *code, const char *field,
    const char *fmt, ...)
{
	va_list ap;

	e->status = status;
	e->code = code;
	xsnprintf(e->field, sizeof e->field, "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(e->description, sizeof e->description, fmt, ap);
	va_end(ap);
	return -1;
}

#define INVALID(e, st, f, msg) \
	verr(e, st, "P0102", f, "Invalid attribute value: %s. %s", f, msg)
#define MISSING(e, f) \
	verr(e, 400, "P0101", f, "Missing mandatory attribute: %s", f)

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && strchr(" \t\r\n", *p) != NULL && *p != '\0')
		p++;
	return p;
}

static const char *
skip_string(const char *p, const char *end)
{
	for (p++; p < end && *p != '"'; p++) {
		if (*p == '\\')
			p++;
	}
	return p < end ? p + 1 : end;
}

static const char *
skip_value(const char *p, const char *end)
{
	int depth = 0;

	if (p < end && *p == '"')
		return skip_string(p, end);
	if (p < end && (*p == '{' || *p == '[')) {
		for (; p < end; p++) {
			if (*p == '"') {
				p = skip_string(p, end) - 1;
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0)
				return p + 1;
		}
		return end;
	}
	while (p < end && strchr(",}] \t\r\n", *p) == NULL)
		p++;
	return p;
}

int
validate_raw_member(const char *body, size_t len, const char *key,
    const char **val, size_t *vlen)
{
	const char *p = body, *end = body + len, *k, *v;
	size_t klen, want = strlen(key);

	p = skip_ws(p, end);
	if (p >= end || *p++ != '{')
		return -1;
	for (;;) {
		p = skip_ws(p, end);
		if (p >= end || *p != '"')
			return -1;
		k = p + 1;
		p = skip_string(p, end);
		klen = (size_t)(p - 1 - k);
		p = skip_ws(p, end);
		if (p >= end || *p++ != ':')
			return -1;
		v = skip_ws(p, end);
		p = skip_value(v, end);
		if (klen == want && memcmp(k, key, want) == 0) {
			*val = v;
			*vlen = (size_t)(p - v);
			return 0;
		}
		p = skip_ws(p, end);
		if (p >= end || *p++ != ',')
			return -1;
	}
}

int
validate_int_token(const char *tok, size_t len, int64_t *out)
{
	int64_t v = 0;
	size_t i = 0;
	int neg = 0;

	if (len > 0 && tok[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i == len || len - i > 10)
		return -1;
	for (; i < len; i++) {
		if (!isdigit((unsigned char)tok[i]))
			return -1;
		v = v * 10 + (tok[i] - '0');
	}
	if (neg)
		v = -v;
	if (v < INT32_MIN || v > INT32_MAX)
		return -1;
	*out = v;
	return 0;
}

static int
is_blank(const char *s)
{
	for (; *s != '\0'; s++) {
		if (!isspace((unsigned char)*s))
			return 0;
	}
	return 1;
}

static int
has_url(const char *s)
{
	const char *needles[] = { "http://", "https://", "www." };
	size_t i, j, n;

	for (i = 0; s[i] != '\0'; i++) {
		for (j = 0; j < UTIL_ARRAY_LEN(needles); j++) {
			n = strlen(needles[j]);
			if (strncasecmp(s + i, needles[j], n) == 0)
				return 1;
		}
	}
	return 0;
}

/* A required non-blank string without <, > or |. */
static int
check_text(const cJSON *root, const char *f, struct api_error *e)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, f);

	if (it == NULL || cJSON_IsNull(it))
		return MISSING(e, f);
	if (!cJSON_IsString(it))
		return INVALID(e, 400, f, "Must be a valid string format");
	if (is_blank(it->valuestring))
		return MISSING(e, f);
	if (strpbrk(it->valuestring, "<>|") != NULL)
		return INVALID(e, 400, f,
		    "Must not contain any of the characters <, > or |");
	return 0;
}

/* Optional string: absent or null is fine, any other type is a 400. */
static int
opt_string(const cJSON *obj, const char *f, const char *msg,
    const char **out, struct api_error *e)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, f);

	*out = NULL;
	if (it == NULL || cJSON_IsNull(it))
		return 0;
	if (!cJSON_IsString(it))
		return INVALID(e, 400, f, msg);
	*out = it->valuestring;
	return 0;
}

static int
opt_bool(const cJSON *root, const char *f, bool *out, struct api_error *e)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, f);

	if (it == NULL)
		return 0;
	if (!cJSON_IsBool(it))
		return INVALID(e, 400, f, "Must be true or false");
	*out = cJSON_IsTrue(it);
	return 0;
}

static int
check_types_prefilled(const cJSON *root, struct create_req *out,
    struct api_error *e)
{
	static const char *afields[] = { "line1", "line2", "postcode", "city",
	    "country" };
	const cJSON *pf, *ad;
	const char *v[5], *name;
	size_t i;

	pf = cJSON_GetObjectItemCaseSensitive(root,
	    "prefilled_cardholder_details");
	if (!cJSON_IsObject(pf))
		return 0;	/* publicapi ignores a non-object here */
	if (opt_string(pf, "cardholder_name", "Field must be a string", &name,
	    e) != 0)
		return -1;
	out->prefill_name = name ? xstrdup(name) : NULL;
	ad = cJSON_GetObjectItemCaseSensitive(pf, "billing_address");
	if (!cJSON_IsObject(ad))
		return 0;
	for (i = 0; i < UTIL_ARRAY_LEN(afields); i++) {
		if (opt_string(ad, afields[i], "Field must be a string", &v[i],
		    e) != 0)
			return -1;
	}
	out->has_addr = true;
	out->addr.line1 = v[0] ? xstrdup(v[0]) : NULL;
	out->addr.line2 = v[1] ? xstrdup(v[1]) : NULL;
	out->addr.postcode = v[2] ? xstrdup(v[2]) : NULL;
	out->addr.city = v[3] ? xstrdup(v[3]) : NULL;
	out->addr.country = v[4] ? xstrdup(v[4]) : NULL;
	return 0;
}

static int
check_metadata(const cJSON *root, struct create_req *out, struct api_error *e)
{
	const cJSON *md, *c, *d;
	int n = 0;

	if ((md = cJSON_GetObjectItemCaseSensitive(root, "metadata")) == NULL)
		return 0;
	if (cJSON_IsNull(md))
		return INVALID(e, 422, "metadata", "Value must not be null");
	if (!cJSON_IsObject(md))
		return INVALID(e, 422, "metadata",
		    "Must be an object of JSON key-value pairs");
	for (c = md->child; c != NULL; c = c->next) {
		n++;
		if (jstrlen16(c->string) < 1 || jstrlen16(c->string) > 30)
			return INVALID(e, 422, "metadata",
			    "Keys must be between 1 and 30 characters long");
		if (!cJSON_IsString(c) && !cJSON_IsNumber(c) &&
		    !cJSON_IsBool(c))
			return INVALID(e, 422, "metadata",
			    "Values must be of type String, Boolean or Number");
		if (cJSON_IsString(c) && jstrlen16(c->valuestring) > 100)
			return INVALID(e, 422, "metadata",
			    "Values must be no greater than 100 characters long");
		for (d = md->child; d != c; d = d->next) {
			if (strcasecmp(d->string, c->string) == 0 &&
			    strcmp(d->string, c->string) != 0)
				return INVALID(e, 422, "metadata",
				    "Keys must be case-insensitively unique");
		}
	}
	if (n > 15)
		return INVALID(e, 422, "metadata",
		    "Cannot have more than 15 key-value pairs");
	out->metadata = jdup(md);
	return 0;
}

static int
check_agreement(const cJSON *root, struct api_error *e)
{
	const cJSON *mode, *aid, *sua, *apt;
	const char *m = "web";

	mode = cJSON_GetObjectItemCaseSensitive(root, "authorisation_mode");
	aid = cJSON_GetObjectItemCaseSensitive(root, "agreement_id");
	sua = cJSON_GetObjectItemCaseSensitive(root, "set_up_agreement");
	apt = cJSON_GetObjectItemCaseSensitive(root, "agreement_payment_type");
	if (mode != NULL) {
		if (!cJSON_IsString(mode))
			return INVALID(e, 400, "authorisation_mode",
			    "Must be one of web, moto_api, agreement");
		m = mode->valuestring;
		if (strcmp(m, "moto_api") == 0)
			return verr(e, 422, "P0195", "authorisation_mode",
			    "Using authorisation_mode of moto_api is not "
			    "allowed for this account");
		if (strcmp(m, "web") != 0 && strcmp(m, "agreement") != 0)
			return INVALID(e, 422, "authorisation_mode",
			    "Must be one of web, moto_api, agreement");
	}
	if (strcmp(m, "agreement") != 0 && aid != NULL)
		return verr(e, 400, "P0104", "agreement_id",
		    "Unexpected attribute: agreement_id");
	if (strcmp(m, "agreement") == 0) {
		if (cJSON_GetObjectItemCaseSensitive(root, "return_url"))
			return verr(e, 400, "P0104", "return_url",
			    "Unexpected attribute: return_url");
		if (aid == NULL || cJSON_IsNull(aid))
			return MISSING(e, "agreement_id");
		if (!cJSON_IsString(aid) || strlen(aid->valuestring) != 26)
			return INVALID(e, 422, "agreement_id",
			    "Field [agreement_id] length must be 26");
		return INVALID(e, 400, "agreement_id",
		    "Agreement ID does not exist");
	}
	if (apt != NULL && (!cJSON_IsString(apt) ||
	    (strcmp(apt->valuestring, "instalment") != 0 &&
	    strcmp(apt->valuestring, "recurring") != 0 &&
	    strcmp(apt->valuestring, "unscheduled") != 0)))
		return INVALID(e, 422, "agreement_payment_type",
		    "Must be one of instalment, recurring, unscheduled");
	if (apt != NULL && sua == NULL)
		return INVALID(e, 422, "agreement_payment_type",
		    "Requires set_up_agreement or authorisation_mode agreement");
	if (sua != NULL) {
		if (!cJSON_IsString(sua) || strlen(sua->valuestring) != 26)
			return INVALID(e, 422, "set_up_agreement",
			    "Field [set_up_agreement] length must be 26");
		return verr(e, 400, "P0103", "set_up_agreement",
		    "Invalid attribute value: set_up_agreement. Agreement ID "
		    "does not exist");
	}
	return 0;
}

static int
check_len(const char *s, const char *f, size_t max, struct api_error *e)
{
	char msg[96];

	if (s == NULL || jstrlen16(s) <= max)
		return 0;
	xsnprintf(msg, sizeof msg, "Must be less than or equal to %zu "
	    "characters length", max);
	return INVALID(e, 422, f, msg);
}

static int
check_limits(const struct create_req *r, bool reject_urls,
    struct api_error *e)
{
	if (r->amount > 10000000)
		return INVALID(e, 422, "amount",
		    "Must be less than or equal to 10000000");
	if (r->amount < 0)
		return INVALID(e, 422, "amount",
		    "Must be greater than or equal to 1");
	if (check_len(r->reference, "reference", 255, e) != 0 ||
	    check_len(r->description, "description", 255, e) != 0 ||
	    check_len(r->email, "email", 254, e) != 0 ||
	    check_len(r->return_url, "return_url", 2000, e) != 0 ||
	    check_len(r->prefill_name,
	    "prefilled_cardholder_details.cardholder_name", 255, e) != 0 ||
	    check_len(r->addr.line1,
	    "prefilled_cardholder_details.billing_address.line1", 255, e) != 0 ||
	    check_len(r->addr.line2,
	    "prefilled_cardholder_details.billing_address.line2", 255, e) != 0 ||
	    check_len(r->addr.city,
	    "prefilled_cardholder_details.billing_address.city", 255, e) != 0 ||
	    check_len(r->addr.postcode,
	    "prefilled_cardholder_details.billing_address.postcode", 25, e) != 0)
		return -1;
	if (reject_urls && has_url(r->reference))
		return INVALID(e, 422, "reference", "Must not contain URLs");
	if (reject_urls && has_url(r->description))
		return INVALID(e, 422, "description", "Must not contain URLs");
	return 0;
}

static int
is_url(const char *s)
{
	const char *host;

	if (strncmp(s, "https://", 8) == 0)
		host = s + 8;
	else if (strncmp(s, "http://", 7) == 0)
		host = s + 7;
	else
		return 0;
	if (*host == '\0' || strchr("/?#:", *host) != NULL)
		return 0;
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s <= ' ')
			return 0;
	}
	return 1;
}

/* What connector checks after publicapi accepted the request. */
static int
check_connector(const struct create_req *r, int account, struct api_error *e)
{
	if (r->return_url == NULL)
		return MISSING(e, "return_url");
	if (!is_url(r->return_url))
		return INVALID(e, 422, "return_url", "Must be a valid URL format");
	if (account == SIM_ACCOUNT_LIVE && strncmp(r->return_url, "https://",
	    8) != 0)
		return verr(e, 422, "P0920", "return_url",
		    "Must begin with https:// for a live gateway account");
	if (r->amount == 0)
		return INVALID(e, 422, "amount",
		    "Must be greater than or equal to 1");
	if (r->moto)
		return verr(e, 422, "P0196", "moto", "MOTO payments are not "
		    "enabled for this account. Please contact support if you "
		    "would like to process MOTO payments");
	return 0;
}

static int
check_idempotency(const char *key, struct api_error *e)
{
	const char *p;

	if (key == NULL || *key == '\0')
		return 0;
	for (p = key; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && *p != '-')
			break;
	}
	if (*p == '\0' && p - key <= 255)
		return 0;
	verr(e, 422, "P0102", NULL, "Invalid header value: Idempotency-Key. "
	    "Must be 1 to 255 characters of a-z, A-Z, 0-9 and -");
	xsnprintf(e->field, sizeof e->field, "header:Idempotency-Key");
	return -1;
}

static int
check_unexpected(const cJSON *root, struct api_error *e)
{
	const cJSON *c;
	size_t i;

	for (c = root->child; c != NULL; c = c->next) {
		for (i = 0; i < UTIL_ARRAY_LEN(known_fields); i++) {
			if (strcmp(c->string, known_fields[i]) == 0)
				break;
		}
		if (i == UTIL_ARRAY_LEN(known_fields))
			return verr(e, 400, "P0104", c->string,
			    "Unexpected attribute: %s", c->string);
	}
	return 0;
}

static int
check_types(const char *body, size_t len, const cJSON *root,
    struct create_req *out, struct api_error *e)
{
	const cJSON *it;
	const char *tok, *s;
	size_t toklen;

	it = cJSON_GetObjectItemCaseSensitive(root, "amount");
	if (it == NULL || cJSON_IsNull(it))
		return MISSING(e, "amount");
	if (!cJSON_IsNumber(it) ||
	    validate_raw_member(body, len, "amount", &tok, &toklen) != 0 ||
	    validate_int_token(tok, toklen, &out->amount) != 0)
		return INVALID(e, 400, "amount", "Must be a valid numeric format");
	if (check_text(root, "reference", e) != 0 ||
	    check_text(root, "description", e) != 0)
		return -1;
	out->reference = xstrdup(cJSON_GetObjectItemCaseSensitive(root,
	    "reference")->valuestring);
	out->description = xstrdup(cJSON_GetObjectItemCaseSensitive(root,
	    "description")->valuestring);
	if (opt_string(root, "return_url", "Must be a valid URL format", &s,
	    e) != 0)
		return -1;
	out->return_url = s ? xstrdup(s) : NULL;
	if (opt_bool(root, "moto", &out->moto, e) != 0)
		return -1;
	it = cJSON_GetObjectItemCaseSensitive(root, "language");
	if (it != NULL && !cJSON_IsString(it))
		return INVALID(e, 400, "language", "Must be \"en\" or \"cy\"");
	if (it != NULL && strcmp(it->valuestring, "en") != 0 &&
	    strcmp(it->valuestring, "cy") != 0)
		return INVALID(e, 422, "language", "Must be \"en\" or \"cy\"");
	xsnprintf(out->language, sizeof out->language, "%s",
	    it ? it->valuestring : "en");
	if (opt_bool(root, "delayed_capture", &out->delayed_capture, e) != 0)
		return -1;
	if (opt_string(root, "email", "Field must be a string", &s, e) != 0)
		return -1;
	out->email = s ? xstrdup(s) : NULL;
	if (check_types_prefilled(root, out, e) != 0 ||
	    check_metadata(root, out, e) != 0 || check_agreement(root, e) != 0)
		return -1;
	return 0;
}

int
validate_create(const char *body, size_t len, int account, bool reject_urls,
    const char *idempotency_key, struct create_req *out, struct api_error *e)
{
	cJSON *root;
	int ret = -1;

	memset(out, 0, sizeof *out);
	memset(e, 0, sizeof *e);
	if ((root = jparse(body, len)) == NULL || !cJSON_IsObject(root)) {
		verr(e, 400, "P0197", NULL, "Unable to parse JSON");
		goto out;
	}
	if (check_idempotency(idempotency_key, e) != 0 ||
	    check_unexpected(root, e) != 0 ||
	    check_types(body, len, root, out, e) != 0 ||
	    check_limits(out, reject_urls, e) != 0 ||
	    check_connector(out, account, e) != 0)
		goto out;
	ret = 0;
out:
	cJSON_Delete(root);
	if (ret != 0)
		create_req_clear(out);
	return ret;
}

void
create_req_clear(struct create_req *r)
{
	free(r->reference);
	free(r->description);
	free(r->return_url);
	free(r->email);
	cJSON_Delete(r->metadata);
	free(r->prefill_name);
	address_clear(&r->addr);
	memset(r, 0, sizeof *r);
}
