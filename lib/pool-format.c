/* SPDX-License-Identifier: MIT */
/*
 * The pool's on-disk format (pool.h): crc32c, the header every metadata
 * block carries (R6), geometry, superblock slots, metadata I/O through
 * the syscalls, and writing a new pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "dio/dio.h"
#include "pool.h"

#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif

/* ---- crc32c: table-driven, written here (no library dependency) ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t
tp_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- records and blocks ---- */

size_t
tp_rec_size(unsigned int t)
{
	switch (t) {
	case TP_R_MAP:
	case TP_R_UNMAP:
	case TP_R_COW:
	case TP_R_LREF:
	case TP_R_REF:
		return 32;
	case TP_R_VOL:
	case TP_R_SNAP:
		return sizeof(struct tp_rec);
	case TP_R_VOLDEL:
	case TP_R_RESIZE:
	case TP_R_COMMIT:
	case TP_R_LEAF:
	case TP_R_RUN:
		return 16;
	}
	return 0;
}

void
tp_seal(void *b, const uint8_t *uuid, unsigned int type, uint32_t owner, uint64_t gen,
	uint64_t blocknr, uint64_t aux, uint32_t count, uint32_t used)
{
	struct tp_hdr *h = b;

	h->magic = TP_MAGIC;
	h->crc = 0;
	memcpy(h->uuid, uuid, 16);
	h->type = (uint16_t)type;
	h->version = TP_VERSION;
	h->owner = owner;
	h->gen = gen;
	h->blocknr = blocknr;
	h->aux = aux;
	h->count = count;
	h->used = used;
	h->crc = tp_crc32c(0, b, TP_BLOCK);
}

bool
tp_verify(const void *b, const uint8_t *uuid, unsigned int type, uint64_t blocknr)
{
	const struct tp_hdr *h = b;
	uint8_t tmp[TP_BLOCK];
	uint32_t crc;

	if (h->magic != TP_MAGIC || h->type != type || h->blocknr != blocknr ||
	    h->version != TP_VERSION || h->used > TP_PAYLOAD)
		return false;
	if (uuid && memcmp(h->uuid, uuid, 16) != 0)
		return false;
	memcpy(tmp, b, TP_BLOCK);
	((struct tp_hdr *)tmp)->crc = 0;
	crc = tp_crc32c(0, tmp, TP_BLOCK);
	return crc == h->crc;
}

/* ---- metadata I/O through the syscalls ---- */

static int
sys_pread(void *priv, int fd, void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset(buf, 0, len);	/* past the end of a file reads as zeros */
			return 0;
		}
		buf = (uint8_t *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int
sys_pwrite(void *priv, int fd, const void *buf, size_t len, uint64_t off, bool fua)
{
	while (len) {
		struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
		/* RWF_DSYNC: the kernel sends FUA (or write + flush) */
		ssize_t n = pwritev2(fd, &iov, 1, (off_t)off, fua ? RWF_DSYNC : 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		buf = (const uint8_t *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int
sys_flush(void *priv, int fd)
{
	return fdatasync(fd) < 0 ? -errno : 0;
}

/*
 * Give a range back: a hole in a file; on a block device the same call
 * is a zero-out that unmaps (no fallback to writing zeros), and where the
 * device cannot, BLKDISCARD.
 */
static int
sys_discard(void *priv, int fd, uint64_t off, uint64_t len)
{
	uint64_t range[2] = { off, len };
	struct stat st;

	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP || fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode))
		return -errno;
	return ioctl(fd, BLKDISCARD, range) < 0 ? -errno : 0;
}

const struct dio_tpool_io tp_sys_io = {
	.pread = sys_pread,
	.pwrite = sys_pwrite,
	.flush = sys_flush,
	.discard = sys_discard,
};

int
tp_buf_reserve(struct dio_tpool *p, size_t len)
{
	void *b;

	if (len <= p->buflen)
		return 0;
	if (posix_memalign(&b, TP_BLOCK, len))
		return -ENOMEM;
	free(p->buf);
	p->buf = b;
	p->buflen = len;
	return 0;
}

/* ---- geometry and superblocks ---- */

static uint64_t
div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

/* Worst-case blocks of one checkpoint: every chunk mapped, every volume. */
static uint64_t
ckpt_blocks_max(uint64_t nr_chunks, uint32_t max_volumes)
{
	uint64_t recs = div_up(max_volumes, TP_PAYLOAD / tp_rec_size(TP_R_VOL)) +
			div_up(nr_chunks, TP_PAYLOAD / tp_rec_size(TP_R_MAP));
	uint64_t space = div_up(nr_chunks, TP_PAYLOAD * 4);
	uint64_t roots = div_up(recs + space + 1, TP_PAYLOAD / 8);

	return recs + space + roots;
}

int
tp_geometry(struct tp_super *sb, uint64_t dev_size, uint32_t chunk_size,
	    uint32_t journal_blocks, uint32_t max_volumes, uint32_t lbs)
{
	uint64_t nr, meta_end;

	if (!chunk_size)
		chunk_size = 64 * 1024;
	if (!max_volumes)
		max_volumes = 256;
	if (chunk_size < 4096 || chunk_size > (1u << 20) || (chunk_size & (chunk_size - 1)))
		return -EINVAL;
	if (lbs < 512 || (lbs & (lbs - 1)) || lbs > chunk_size)
		return -EINVAL;
	memset(sb, 0, sizeof(*sb));
	if (!journal_blocks) {
		uint64_t jb = dev_size >> 20;	/* a block per MiB of pool */

		journal_blocks = (uint32_t)(jb < 16 ? 16 : jb > 4096 ? 4096 : jb);
	}
	sb->block_size = TP_BLOCK;
	sb->chunk_size = chunk_size;
	sb->sub_size = chunk_size / 32 > lbs ? chunk_size / 32 : lbs;
	sb->lbs = lbs;
	sb->journal_start = 2;
	sb->journal_blocks = journal_blocks;
	sb->meta_start = sb->journal_start + journal_blocks;
	sb->max_volumes = max_volumes;
	/* Metadata reserve (R5): two worst-case checkpoints and a few spare. */
	nr = dev_size / chunk_size;
	sb->meta_blocks = 2 * ckpt_blocks_max(nr, max_volumes) + 4;
	meta_end = (sb->meta_start + sb->meta_blocks) * TP_BLOCK;
	sb->data_start = div_up(meta_end, chunk_size) * chunk_size;
	if (sb->data_start >= dev_size)
		return -ENOSPC;
	sb->nr_chunks = (dev_size - sb->data_start) / chunk_size;
	if (sb->nr_chunks == 0 || sb->nr_chunks >= UINT32_MAX)
		return sb->nr_chunks ? -EFBIG : -ENOSPC;
	sb->dev_size = dev_size;
	sb->next_vol_id = 1;
	return 0;
}

static bool
pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/*
 * Whether sb's geometry is one tp_geometry could have made, on a device
 * as large as p's: every region in order and inside the device, with no
 * sum or product that wraps. The sizes are trusted from here on.
 */
static bool
tp_super_sane(struct dio_tpool *p, const struct tp_super *sb)
{
	uint64_t dev = UINT64_MAX, data_blocks = sb->data_start / TP_BLOCK;
	struct stat st;

	if (fstat(p->fd, &st) == 0 && S_ISREG(st.st_mode))
		dev = (uint64_t)st.st_size;
	else if (fstat(p->fd, &st) == 0 && S_ISBLK(st.st_mode) &&
		 ioctl(p->fd, BLKGETSIZE64, &dev) < 0)
		dev = UINT64_MAX;	/* unknown: the other checks still hold */
	if (sb->block_size != TP_BLOCK || sb->dev_size > dev)
		return false;
	if (!pow2(sb->chunk_size) || sb->chunk_size < 4096 || sb->chunk_size > (1u << 20) ||
	    !pow2(sb->lbs) || sb->lbs < 512 || !pow2(sb->sub_size) || sb->sub_size < sb->lbs ||
	    sb->sub_size > sb->chunk_size || sb->chunk_size / sb->sub_size > 32)
		return false;
	if (sb->journal_start < 2 || sb->journal_blocks == 0 || sb->meta_start < sb->journal_start ||
	    sb->journal_blocks > sb->meta_start - sb->journal_start)
		return false;
	if (sb->meta_start > data_blocks || sb->meta_blocks > data_blocks - sb->meta_start ||
	    sb->ckpt_root < sb->meta_start || sb->ckpt_root - sb->meta_start >= sb->meta_blocks)
		return false;
	if (sb->data_start % sb->chunk_size || sb->data_start > sb->dev_size ||
	    sb->nr_chunks == 0 || sb->nr_chunks >= UINT32_MAX ||
	    sb->nr_chunks > (sb->dev_size - sb->data_start) / sb->chunk_size)
		return false;
	return true;
}

int
tp_super_read(struct dio_tpool *p, int slot, struct tp_super *sb)
{
	int ret = tp_buf_reserve(p, TP_BLOCK);

	if (ret < 0)
		return ret;
	ret = p->io->pread(p->io->priv, p->fd, p->buf, TP_BLOCK, (uint64_t)slot * TP_BLOCK);
	if (ret < 0)
		return ret;
	if (!tp_verify(p->buf, NULL, TP_BT_SUPER, (uint64_t)slot))
		return -EUCLEAN;
	memcpy(sb, p->buf, sizeof(*sb));
	return tp_super_sane(p, sb) ? 0 : -EUCLEAN;
}

int
tp_super_write(struct dio_tpool *p, const struct tp_super *sb)
{
	uint64_t slot = sb->h.gen & 1;
	int ret = tp_buf_reserve(p, TP_BLOCK);

	if (ret < 0)
		return ret;
	memset(p->buf, 0, TP_BLOCK);
	memcpy(p->buf, sb, sizeof(*sb));
	tp_seal(p->buf, sb->h.uuid, TP_BT_SUPER, 0, sb->h.gen, slot, 0, 0, sizeof(*sb));
	return p->io->pwrite(p->io->priv, p->fd, p->buf, TP_BLOCK, slot * TP_BLOCK, true);
}

/* ---- a new pool ---- */

static int
create_error(const struct dio_tpool_opts *opts, int err, const char *what, const char *path)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%s: %s%s", path, what, strerror(err));
	if (opts && opts->errbuf && opts->errlen)
		snprintf(opts->errbuf, opts->errlen, "%s", msg);
	dio_log(DIO_LOG_ERR, "%s", msg);
	return -err;
}

void
tp_state_free(struct dio_tpool *p)
{
	free(p->cstate);
	free(p->space);
	free(p->inflight);
	free(p->unsharing);
	free(p->punshare);
	free(p->meta_used);
	free(p->buf);
	free(p->pend);
	free(p->pfree);
	free(p->dq);
	if (p->fd >= 0)
		close(p->fd);
}

int
tp_create_layout(const char *path, const struct dio_tpool_create_opts *copts,
		 const struct dio_tpool_opts *opts, struct dio_tpool *pp)
{
	struct dio_tpool_create_opts co = copts ? *copts : (struct dio_tpool_create_opts){ 0 };
	struct dio_tpool p = { .io = opts && opts->io ? opts->io : &tp_sys_io };
	bool direct = !(opts && opts->no_direct);
	struct stat st;
	uint64_t size;
	int lbs = 512, ret;

	p.fd = open(path, O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (p.fd < 0 && errno == EINVAL && direct)
		p.fd = open(path, O_RDWR | O_CLOEXEC);	/* no O_DIRECT here (tmpfs) */
	if (p.fd < 0)
		return create_error(opts, errno, "", path);
	/*
	 * The lock dio_tpool_open takes, before anything is written: creating
	 * over a pool that a daemon serves would wipe its journal under it.
	 */
	if (fcntl(p.fd, F_OFD_SETLK, &(struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET }) <
	    0) {
		ret = errno == EACCES || errno == EAGAIN
			      ? create_error(opts, EAGAIN, "the pool is open in another process: ",
					     path)
			      : create_error(opts, errno, "locking it: ", path);
		goto out;
	}
	if (fstat(p.fd, &st) < 0) {
		ret = create_error(opts, errno, "", path);
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(p.fd, BLKGETSIZE64, &size) < 0 || ioctl(p.fd, BLKSSZGET, &lbs) < 0) {
			ret = create_error(opts, errno, "", path);
			goto out;
		}
		if (co.size && co.size < size)
			size = co.size;
	} else {
		size = co.size ? co.size : (uint64_t)st.st_size;
		if ((uint64_t)st.st_size < size && ftruncate(p.fd, (off_t)size) < 0) {
			ret = create_error(opts, errno, "growing it: ", path);
			goto out;
		}
		if (direct && lbs < 4096)
			lbs = 4096;	/* O_DIRECT on a file: the safe alignment */
	}
	ret = tp_geometry(&p.sb, size, co.chunk_size, co.journal_blocks, co.max_volumes,
			  (uint32_t)lbs);
	if (ret < 0) {
		ret = create_error(opts, -ret, "cannot lay out a pool there: ", path);
		goto out;
	}
	if (getrandom(p.sb.h.uuid, 16, 0) != 16) {
		ret = create_error(opts, EIO, "no random uuid: ", path);
		goto out;
	}
	p.sb.created = (uint64_t)time(NULL);
	p.sb.feat_incompat = TP_FEAT_INCOMPAT_SHARE;	/* snapshots O(1) from the first */
	p.sb.h.gen = 0;
	p.sb.journal_tail = 1;
	p.chunk_size = p.sb.chunk_size;
	p.sub_size = p.sb.sub_size;
	p.nsub = (uint32_t)(p.chunk_size / p.sub_size);
	p.full_bits = p.nsub == 32 ? UINT32_MAX : (1u << p.nsub) - 1;
	p.cstate = calloc(p.sb.nr_chunks, 1);
	p.space = calloc(p.sb.nr_chunks, sizeof(*p.space));
	p.inflight = calloc(p.sb.nr_chunks, sizeof(*p.inflight));
	p.unsharing = calloc(p.sb.nr_chunks / 8 + 1, 1);
	p.meta_used = calloc(p.sb.meta_blocks, 1);
	p.head = 1;
	if (!p.cstate || !p.space || !p.inflight || !p.unsharing || !p.meta_used) {
		ret = -ENOMEM;
		goto out_free;
	}
	/* Wipe both slots, then the first checkpoint goes to slot gen 1 & 1. */
	ret = tp_buf_reserve(&p, 2 * TP_BLOCK);
	if (ret == 0) {
		memset(p.buf, 0, 2 * TP_BLOCK);
		ret = p.io->pwrite(p.io->priv, p.fd, p.buf, 2 * TP_BLOCK, 0, false);
	}
	if (ret == 0) {
		/* Journal blocks of another pool must never replay here: zero them. */
		ret = tp_buf_reserve(&p, p.sb.journal_blocks * TP_BLOCK);
		if (ret == 0) {
			memset(p.buf, 0, p.sb.journal_blocks * TP_BLOCK);
			ret = p.io->pwrite(p.io->priv, p.fd, p.buf, p.sb.journal_blocks * TP_BLOCK,
					   p.sb.journal_start * TP_BLOCK, false);
		}
	}
	if (ret < 0) {
		create_error(opts, -ret, "writing the pool: ", path);
		goto out_free;
	}
	*pp = p;	/* the first checkpoint (tp_checkpoint) makes it a pool */
	return 0;
out_free:
	tp_state_free(&p);
	return ret;
out:
	close(p.fd);
	return ret;
}
