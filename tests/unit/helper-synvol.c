/* SPDX-License-Identifier: MIT */
/* The synthetic volume of helper.h: a hand-written extent map over a file. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helper.h"

static struct synvol *
syn_of(struct dio_volume *vol)
{
	return vol->priv;
}

static int
syn_map_begin(struct dio_volume *vol, uint64_t pos, uint64_t len, unsigned int flags,
	      struct dio_extent *ext)
{
	struct synvol *s = syn_of(vol);
	int ret = -EIO;

	pthread_mutex_lock(&s->lock);
	s->begins++;
	if (s->fail_begin_nth && s->begins == s->fail_begin_nth) {
		ret = -s->fail_errno;
		goto out;
	}
	for (unsigned int i = 0; i < s->n; i++) {
		struct syn_ext *e = &s->ext[i];

		if (pos >= e->pos && pos < e->pos + e->len) {
			ext->pos = pos;
			ext->length = e->pos + e->len - pos;
			if (ext->length > len)
				ext->length = len;
			ext->addr = e->addr + (pos - e->pos);
			ext->type = e->type;
			ext->flags = e->flags;
			/* a write allocates a hole in place, as a filesystem would */
			if ((flags & DIO_MAP_WRITE) && e->type == DIO_EXT_HOLE) {
				ext->type = DIO_EXT_MAPPED;
				ext->flags |= DIO_EXT_NEW;
			}
			ret = 0;
			break;
		}
	}
out:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static int
syn_map_end(struct dio_volume *vol, const struct dio_extent *ext, uint64_t done,
	    unsigned int flags)
{
	struct synvol *s = syn_of(vol);

	pthread_mutex_lock(&s->lock);
	if (s->ends < SYN_MAX_LOG)
		s->log[s->ends] = (struct syn_end){ .pos = ext->pos, .len = ext->length,
						    .done = done, .flags = flags,
						    .type = ext->type };
	s->ends++;
	if (s->convert_on_end && (flags & DIO_MAP_WRITE) && done) {
		for (unsigned int i = 0; i < s->n; i++) {
			struct syn_ext *e = &s->ext[i];

			/* tests convert whole extents only */
			if (ext->pos >= e->pos && ext->pos < e->pos + e->len) {
				e->type = DIO_EXT_MAPPED;
				e->flags = 0;
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int
syn_prep_meta(struct dio_volume *vol, enum dio_meta_op op, unsigned int flags, uint64_t pos,
	      uint64_t len, struct dio_io *io)
{
	struct synvol *s = syn_of(vol);

	__atomic_fetch_add(&s->metas[op], 1, __ATOMIC_RELAXED);
	io->fd = vol->fd;
	io->offset = pos;
	io->len = len;
	switch (op) {
	case DIO_META_FLUSH:
		io->op = DIO_IO_FSYNC;
		return 0;
	case DIO_META_TRIM:
		io->op = DIO_IO_FALLOCATE;
		io->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		return 0;
	case DIO_META_ZERO:
		if (!s->zero_ok)
			return -EOPNOTSUPP;
		io->op = DIO_IO_FALLOCATE;
		io->mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
		return 0;
	case DIO_META_CACHE:
		return -EOPNOTSUPP;
	}
	return -EINVAL;
}

static const struct dio_map_ops syn_map_ops = {
	.map_begin = syn_map_begin,
	.map_end = syn_map_end,
};

static const struct dio_vol_ops syn_vol_ops = {
	.prep_meta = syn_prep_meta,
};

struct synvol *
synvol_create(uint64_t size, uint32_t lbs, uint32_t blksize)
{
	struct synvol *s = calloc(1, sizeof(*s));

	cr_assert(s);
	s->path = test_file_create(size + blksize);
	s->vol.fd = open(s->path, O_RDWR | O_DIRECT);
	cr_assert(s->vol.fd >= 0, "open %s O_DIRECT: %s", s->path, strerror(errno));
	s->vol.map_ops = &syn_map_ops;
	s->vol.vol_ops = &syn_vol_ops;
	s->vol.size = size;
	s->vol.lbs = lbs;
	s->vol.pbs = lbs;
	s->vol.blksize = blksize;
	s->vol.wcache = true;
	s->vol.can_trim = true;
	s->vol.priv = s;
	pthread_mutex_init(&s->lock, NULL);
	cr_assert_eq(dio_volume_init(&s->vol), 0);
	s->n = 1;
	s->ext[0] = (struct syn_ext){ .pos = 0, .len = size, .addr = 0, .type = DIO_EXT_MAPPED };
	return s;
}

void
synvol_destroy(struct synvol *s)
{
	dio_volume_fini(&s->vol);
	close(s->vol.fd);
	unlink(s->path);
	free(s->path);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void
synvol_set(struct synvol *s, const struct syn_ext *ext, unsigned int n)
{
	cr_assert(n <= SYN_MAX_EXT);
	memcpy(s->ext, ext, n * sizeof(*ext));
	s->n = n;
}

void
synvol_pwrite(struct synvol *s, const void *buf, size_t len, uint64_t addr)
{
	int fd = open(s->path, O_WRONLY);

	cr_assert(fd >= 0);
	cr_assert_eq(pwrite(fd, buf, len, (off_t)addr), (ssize_t)len);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
}

void
synvol_pread(struct synvol *s, void *buf, size_t len, uint64_t addr)
{
	int fd = open(s->path, O_RDONLY);

	cr_assert(fd >= 0);
	/* the page cache may be stale next to O_DIRECT writes: drop it */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	cr_assert_eq(pread(fd, buf, len, (off_t)addr), (ssize_t)len);
	close(fd);
}
