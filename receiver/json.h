/*
 * json.h: strict RFC 8259 JSON tokenizer (jsmn-like). One pass over the
 * bytes fills a flat token array owned by the caller; nothing is allocated.
 * Any thread; a token array belongs to whoever passed it in.
 */
#ifndef PAYHOOK_JSON_H
#define PAYHOOK_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JSON_DEPTH_MAX	32	/* nested objects/arrays; 33 is rejected */

enum json_type {
	JSON_OBJECT = 1,
	JSON_ARRAY,
	JSON_STRING,
	JSON_NUMBER,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL,
};

/* Token flags. */
#define JSON_F_ESCAPED	0x01	/* string holds at least one backslash escape */
#define JSON_F_FRAC	0x02	/* number has a fraction or an exponent */
#define JSON_F_KEY	0x04	/* string is an object member name */

/*
 * One value (or member name). Objects are followed by their members as
 * key, value, key, value...; arrays by their elements. "next" is the index
 * just past this token's subtree, so next sibling = toks[i].next.
 */
struct json_tok {
	uint32_t	start;	/* first byte; strings: after the opening quote */
	uint32_t	end;	/* one past the last; strings: the closing quote */
	uint32_t	size;	/* object: members; array: elements; else 0 */
	uint32_t	next;	/* index of the token after this subtree */
	uint8_t		type;	/* enum json_type */
	uint8_t		flags;	/* JSON_F_* */
};

enum json_error {
	JSON_OK = 0,
	JSON_ERR_EMPTY,		/* no value at all */
	JSON_ERR_SYNTAX,	/* unexpected byte */
	JSON_ERR_TRUNCATED,	/* input ends inside a value */
	JSON_ERR_TRAILING,	/* bytes after the top-level value */
	JSON_ERR_BOM,		/* leading byte order mark */
	JSON_ERR_UTF8,		/* invalid UTF-8 in a string */
	JSON_ERR_CONTROL,	/* raw control character in a string */
	JSON_ERR_ESCAPE,	/* bad backslash escape */
	JSON_ERR_SURROGATE,	/* unpaired \u surrogate */
	JSON_ERR_NUMBER,	/* malformed number (leading zero, "-", "1.") */
	JSON_ERR_DEPTH,		/* nesting deeper than JSON_DEPTH_MAX */
	JSON_ERR_TOKENS,	/* more tokens than the buffer holds */
	JSON_ERR_DUPKEY,	/* same member name twice in one object */
	JSON_ERR_TOOBIG,	/* input longer than the 32-bit offsets allow */
};

/*
 * Tokenize js[0..len) (need not be NUL-terminated) into toks[0..cap).
 * JSON_OK and *ntoks set, or an error with *err_off = the byte offset where
 * it was found. Never writes past toks[cap - 1].
 */
enum json_error json_tokenize(const char *js, size_t len, struct json_tok *toks,
	    size_t cap, size_t *ntoks, size_t *err_off);
/* Short fixed description of an error ("duplicate object key"). */
const char *json_error_str(enum json_error);

/* 1 when string token t, unescaped, equals s[0..slen); else 0. */
int	json_str_eq(const char *js, const struct json_tok *t, const char *s,
	    size_t slen);
/*
 * Unescape string token t into buf (NUL-terminated). 0 and *outlen (may be
 * NULL); -1 when it does not fit in size bytes or holds U+0000.
 */
int	json_str_copy(const char *js, const struct json_tok *t, char *buf,
	    size_t size, size_t *outlen);
/* Integer token (no fraction/exponent) into *out; -1 if not or overflow. */
int	json_int64(const char *js, const struct json_tok *t, int64_t *out);
/* Index of member key's value in object toks[obj], or 0 when absent. */
size_t	json_obj_get(const char *js, const struct json_tok *toks, size_t obj,
	    const char *key);

#endif
