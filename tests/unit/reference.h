/*
 * reference.h: read a file of the shared reference examples
 * ($PAYHOOK_REF/webhook-examples, set by tests/CMakeLists.txt) in a
 * criterion test; the test fails when it cannot. Included by one test file
 * each.
 */
#ifndef PAYHOOK_TEST_REFERENCE_H
#define PAYHOOK_TEST_REFERENCE_H

#include <stdlib.h>

#include "common/util.h"
#include "common/xmalloc.h"

/* webhook-examples/name, NUL-terminated, its length in *len (may be
 * NULL); the caller frees it. */
static inline char *
ref_example(const char *name, size_t *len)
{
	const char *ref = getenv("PAYHOOK_REF");
	char *path, *buf = NULL, *cause = NULL;
	size_t n;

	cr_assert_not_null(ref, "PAYHOOK_REF must point at shared/reference");
	path = xasprintf("%s/webhook-examples/%s", ref, name);
	cr_assert_eq(util_read_file(path, 1 << 20, &buf, &n, &cause), 0,
	    "%s: %s", path, cause ? cause : "");
	free(path);
	if (len != NULL)
		*len = n;
	return buf;
}

#endif
