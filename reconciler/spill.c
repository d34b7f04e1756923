/*
 * spill: see spill.h. A record: its length, the batch's sequence number,
 * then each vector as a count and its elements, rows as a presence byte,
 * the id and each field's length and bytes.
 */
#include "reconciler/spill.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/strbuf.h"
#include "common/util.h"

void
spill_init(struct spill *s)
{
	s->fd = -1;
	s->write_off = s->read_off = 0;
}

int
spill_tmpfile(const char *what, char *err, size_t errlen)
{
	const char *dir = getenv("TMPDIR");
	char *path = xasprintf("%s/%s-XXXXXX", dir && *dir ? dir : "/tmp",
	    what);
	int fd = mkstemp(path);

	if (fd == -1)
		snprintf(err, errlen, "temporary file %s: %s", path,
		    strerror(errno));
	else
		unlink(path);
	free(path);
	return fd;
}

int
spill_pwrite(int fd, const void *p, size_t len, off_t at, char *err,
    size_t errlen)
{
	size_t done = 0;
	ssize_t w;

	while (done < len) {
		w = pwrite(fd, (const char *)p + done, len - done,
		    at + (off_t)done);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(err, errlen, "temporary file: %s",
			    w == -1 ? strerror(errno) : "short write");
			return -1;
		}
		done += (size_t)w;
	}
	return 0;
}

int
spill_pread(int fd, void *p, size_t len, off_t at, char *err, size_t errlen)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, (char *)p + done, len - done, at + (off_t)done);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "temporary file: %s",
			    n == -1 ? strerror(errno) : "short read");
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

static void
put(struct strbuf *sb, const void *p, size_t n)
{
	if (n > 0)	/* an empty vector's pointer may be NULL */
		strbuf_add(sb, p, n);
}

static void
put_size(struct strbuf *sb, size_t n)
{
	put(sb, &n, sizeof(n));
}

static void
put_owned(struct strbuf *sb, const struct owned *o)
{
	int f;

	put(sb, (const char *)(o->v[0] != NULL ? "\1" : "\0"), 1);
	if (o->v[0] == NULL)
		return;
	put(sb, o->cid, 16);
	for (f = 0; f < FIELD_COUNT; f++) {
		put_size(sb, o->len[f]);
		put(sb, o->v[f], o->len[f]);
	}
}

static void
put_owned_vec(struct strbuf *sb, const struct owned *v, size_t n)
{
	size_t i;

	put_size(sb, n);
	for (i = 0; i < n; i++)
		put_owned(sb, &v[i]);
}

static void
serialize(const struct batch *b, struct strbuf *sb)
{
	size_t i;

	put_size(sb, 0);	/* the record's length, set below */
	put(sb, &b->seq, sizeof(b->seq));
	put_size(sb, b->both.n);
	put(sb, b->both.v, b->both.n * 16);
	put_size(sb, b->resolve.n);
	put(sb, b->resolve.v, b->resolve.n * sizeof(*b->resolve.v));
	put_size(sb, b->mms.n);
	for (i = 0; i < b->mms.n; i++) {
		const struct pend *p = &b->mms.v[i];
		put(sb, p->cid, 16);
		put(sb, &p->kind, sizeof(p->kind));
		put(sb, &p->fields, sizeof(p->fields));
		put_owned(sb, &p->mono);
		put_owned(sb, &p->micro);
	}
	put_owned_vec(sb, b->cand_mono.v, b->cand_mono.n);
	put_owned_vec(sb, b->cand_micro.v, b->cand_micro.n);
	put_size(sb, b->heal_mono.n);
	put(sb, b->heal_mono.v, b->heal_mono.n * 16);
	put_size(sb, b->heal_micro.n);
	put(sb, b->heal_micro.v, b->heal_micro.n * 16);
	put(sb, &b->bytes, sizeof(b->bytes));
	memcpy(sb->p, &sb->len, sizeof(sb->len));
}

struct reader {
	const char *p, *end;
};

static void
get(struct reader *r, void *dst, size_t n)
{
	if ((size_t)(r->end - r->p) < n)
		fatalx("spill file record truncated");
	if (n > 0)
		memcpy(dst, r->p, n);
	r->p += n;
}

static size_t
get_size(struct reader *r)
{
	size_t n;

	get(r, &n, sizeof(n));
	return n;
}

static void
get_owned(struct reader *r, struct owned *o)
{
	struct merge_row row;
	char present;
	int f;

	memset(o, 0, sizeof(*o));
	get(r, &present, 1);
	if (!present)
		return;
	get(r, row.cid, 16);
	for (f = 0; f < FIELD_COUNT; f++) {
		row.mail.len[f] = get_size(r);
		if ((size_t)(r->end - r->p) < row.mail.len[f])
			fatalx("spill file record truncated");
		row.mail.v[f] = r->p;
		r->p += row.mail.len[f];
	}
	batch_own(o, &row);
}

#define GET_VEC(r, vec, nbytes_each) do { \
	size_t n_ = get_size(r); \
	if ((vec).cap < n_) { \
		while ((vec).cap < n_) \
			(vec).cap = (vec).cap ? (vec).cap * 2 : 256; \
		(vec).v = xrealloc((vec).v, (vec).cap * sizeof(*(vec).v)); \
	} \
	get(r, (vec).v, n_ * (nbytes_each)); \
	(vec).n = n_; \
} while (0)

static void
deserialize(struct batch *b, const char *p, size_t len)
{
	struct reader r = { p, p + len };
	size_t i, n;

	r.p += sizeof(size_t);
	get(&r, &b->seq, sizeof(b->seq));
	GET_VEC(&r, b->both, 16);
	GET_VEC(&r, b->resolve, sizeof(*b->resolve.v));
	n = get_size(&r);
	for (i = 0; i < n; i++) {
		struct pend *pd = BATCH_PUSH(b->mms);
		get(&r, pd->cid, 16);
		get(&r, &pd->kind, sizeof(pd->kind));
		get(&r, &pd->fields, sizeof(pd->fields));
		get_owned(&r, &pd->mono);
		get_owned(&r, &pd->micro);
	}
	n = get_size(&r);
	for (i = 0; i < n; i++)
		get_owned(&r, BATCH_PUSH(b->cand_mono));
	n = get_size(&r);
	for (i = 0; i < n; i++)
		get_owned(&r, BATCH_PUSH(b->cand_micro));
	GET_VEC(&r, b->heal_mono, 16);
	GET_VEC(&r, b->heal_micro, 16);
	get(&r, &b->bytes, sizeof(b->bytes));
}

int
spill_append(struct spill *s, const struct batch *b, char *err, size_t errlen)
{
	struct strbuf sb = STRBUF_INIT;
	int rc;

	if (s->fd == -1 &&
	    (s->fd = spill_tmpfile("reconciler-spill", err, errlen)) == -1)
		return -1;
	serialize(b, &sb);
	rc = spill_pwrite(s->fd, sb.p, sb.len, s->write_off, err, errlen);
	if (rc == 0)
		s->write_off += (off_t)sb.len;
	strbuf_free(&sb);
	return rc;
}

void
spill_read(struct spill *s, struct batch *b)
{
	size_t len;
	char *buf, err[256];

	if (spill_pread(s->fd, &len, sizeof(len), s->read_off, err,
	    sizeof(err)) == -1)
		fatal("reading the spill file: %s", err);
	buf = xmalloc(len);
	if (spill_pread(s->fd, buf, len, s->read_off, err, sizeof(err)) == -1)
		fatal("reading the spill file: %s", err);
	s->read_off += (off_t)len;
	deserialize(b, buf, len);
	free(buf);
}

void
spill_skip(struct spill *s)
{
	s->read_off = s->write_off;
}

void
spill_close(struct spill *s)
{
	if (s->fd != -1)
		close(s->fd);
	s->fd = -1;
}
