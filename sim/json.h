/*
 * json.h: cJSON builders that abort on allocation failure (the xmalloc
 * policy), so representation code stays linear. Any thread; no state.
 */
#ifndef PAYHOOK_SIM_JSON_H
#define PAYHOOK_SIM_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

cJSON	*jnew_obj(void);
cJSON	*jnew_arr(void);
/* Add to an object; a NULL string value adds nothing. */
void	 jadd_str(cJSON *, const char *key, const char *val);
void	 jadd_int(cJSON *, const char *key, int64_t val);
void	 jadd_num(cJSON *, const char *key, double val);
void	 jadd_bool(cJSON *, const char *key, bool val);
void	 jadd_null(cJSON *, const char *key);
cJSON	*jadd_obj(cJSON *, const char *key);
cJSON	*jadd_arr(cJSON *, const char *key);
/* Add item (taking ownership) to an object or, with key NULL, an array. */
void	 jadd_item(cJSON *, const char *key, cJSON *item);
/* A deep copy; aborts on failure. */
cJSON	*jdup(const cJSON *);
/* Compact text; the caller frees with cJSON_free. */
char	*jprint(const cJSON *);
/* Parse exactly len bytes; NULL if not valid JSON. Caller cJSON_Delete. */
cJSON	*jparse(const char *buf, size_t len);
/* Java String.length(): UTF-16 code units of a UTF-8 string. */
size_t	 jstrlen16(const char *);

#endif
