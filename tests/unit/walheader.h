/*
 * walheader.h: for the journal tests. The checkpoint sequence in the
 * header of <dir>/journal.db-wal (bytes 12..15, big-endian): SQLite bumps
 * it each time the WAL starts over.
 */
#ifndef PAYHOOK_TEST_WALHEADER_H
#define PAYHOOK_TEST_WALHEADER_H

#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>

static uint32_t
wal_header_seq(const char *dir)
{
	unsigned char h[16];
	char path[256];
	FILE *f;

	snprintf(path, sizeof path, "%s/journal.db-wal", dir);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "open %s", path);
	cr_assert_eq(fread(h, 1, sizeof h, f), sizeof h);
	fclose(f);
	return (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 |
	    (uint32_t)h[14] << 8 | h[15];
}

#endif
