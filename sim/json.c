/*
 * json.c: thin cJSON wrappers. Any thread. Allocation failure aborts
 * through fatalx; parse failure is an ordinary NULL for the caller.
 */
#include <string.h>

#include "common/log.h"
#include "sim/json.h"

static cJSON *
jcheck(cJSON *item)
{
	if (item == NULL)
		fatalx(1, "cJSON: out of memory");
	return item;
}

cJSON *
jnew_obj(void)
{
	return jcheck(cJSON_CreateObject());
}

cJSON *
jnew_arr(void)
{
	return jcheck(cJSON_CreateArray());
}

void
jadd_item(cJSON *o, const char *key, cJSON *item)
{
	cJSON_bool ok;

	if (key == NULL)
		ok = cJSON_AddItemToArray(o, item);
	else
		ok = cJSON_AddItemToObject(o, key, item);
	if (!ok)
		fatalx(1, "cJSON: cannot add item");
}

void
jadd_str(cJSON *o, const char *key, const char *val)
{
	if (val != NULL)
		jadd_item(o, key, jcheck(cJSON_CreateString(val)));
}

void
jadd_int(cJSON *o, const char *key, int64_t val)
{
	jadd_item(o, key, jcheck(cJSON_CreateNumber((double)val)));
}

void
jadd_num(cJSON *o, const char *key, double val)
{
	jadd_item(o, key, jcheck(cJSON_CreateNumber(val)));
}

void
jadd_bool(cJSON *o, const char *key, bool val)
{
	jadd_item(o, key, jcheck(cJSON_CreateBool(val)));
}

void
jadd_null(cJSON *o, const char *key)
{
	jadd_item(o, key, jcheck(cJSON_CreateNull()));
}

cJSON *
jadd_obj(cJSON *o, const char *key)
{
	cJSON *c = jnew_obj();

	jadd_item(o, key, c);
	return c;
}

cJSON *
jadd_arr(cJSON *o, const char *key)
{
	cJSON *c = jnew_arr();

	jadd_item(o, key, c);
	return c;
}

cJSON *
jdup(const cJSON *item)
{
	return jcheck(cJSON_Duplicate(item, 1));
}

char *
jprint(const cJSON *item)
{
	char *s;

	if ((s = cJSON_PrintUnformatted(item)) == NULL)
		fatalx(1, "cJSON: cannot print");
	return s;
}

cJSON *
jparse(const char *buf, size_t len)
{
	const char *end = NULL;
	cJSON *root;

	root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
	if (root == NULL)
		return NULL;
	/* Only whitespace may follow the value. */
	while (end != NULL && end < buf + len && strchr(" \t\r\n", *end) &&
	    *end != '\0')
		end++;
	if (end != buf + len) {
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

size_t
jstrlen16(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = 0;

	for (; *u != '\0'; u++) {
		if ((*u & 0xc0) == 0x80)
			continue;	/* continuation byte */
		n += (*u >= 0xf0) ? 2 : 1;
	}
	return n;
}
