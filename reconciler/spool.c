/*
 * spool: see spool.h. Records are length-prefixed strings (-1: NULL) in a
 * fixed order; the file only lives for one process, so no versioning.
 */
#include "reconciler/spool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct spool_ctx {
	FILE *fp;
	struct mismatch m;
};

static int
put_str(FILE *fp, const char *s)
{
	int32_t len = s ? (int32_t)strlen(s) : -1;

	if (fwrite(&len, sizeof(len), 1, fp) != 1)
		return -1;
	if (len > 0 && fwrite(s, (size_t)len, 1, fp) != 1)
		return -1;
	return 0;
}

static int
get_str(FILE *fp, char **out)
{
	int32_t len;

	*out = NULL;
	if (fread(&len, sizeof(len), 1, fp) != 1)
		return -1;
	if (len < 0)
		return 0;
	*out = xmalloc((size_t)len + 1);
	if (len > 0 && fread(*out, (size_t)len, 1, fp) != 1)
		return -1;
	(*out)[len] = '\0';
	return 0;
}

int
spool_write(FILE *fp, const struct mismatch *m)
{
	int f;

	if (put_str(fp, m->cid) || put_str(fp, m->kind) ||
	    put_str(fp, m->fields) || put_str(fp, m->found_at))
		return -1;
	for (f = 0; f < 3; f++)
		if (put_str(fp, m->mono[f]) || put_str(fp, m->micro[f]))
			return -1;
	return 0;
}

static int
spool_next(void *ctx, struct mismatch *out)
{
	struct spool_ctx *c = ctx;
	struct mismatch *m = &c->m;
	int f, ch;

	mismatch_clear(m);
	if ((ch = fgetc(c->fp)) == EOF)
		return ferror(c->fp) ? -1 : 0;
	ungetc(ch, c->fp);
	if (get_str(c->fp, &m->cid) || get_str(c->fp, &m->kind) ||
	    get_str(c->fp, &m->fields) || get_str(c->fp, &m->found_at))
		return -1;
	for (f = 0; f < 3; f++)
		if (get_str(c->fp, &m->mono[f]) || get_str(c->fp, &m->micro[f]))
			return -1;
	*out = *m;
	return 1;
}

void
spool_iter_init(struct mismatch_iter *it, FILE *fp)
{
	struct spool_ctx *c = xcalloc(1, sizeof(*c));

	rewind(fp);
	c->fp = fp;
	it->next = spool_next;
	it->ctx = c;
}

void
spool_iter_free(struct mismatch_iter *it)
{
	struct spool_ctx *c = it->ctx;

	if (c == NULL)
		return;
	mismatch_clear(&c->m);
	free(c);
	it->ctx = NULL;
}
