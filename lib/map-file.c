/* SPDX-License-Identifier: MIT */
/*
 * The file volume's map: a regular file or block device maps to itself
 * (addr == pos). What lies under each byte is read once at open
 * (SEEK_DATA/SEEK_HOLE for holes, FIEMAP for unwritten extents) into an
 * extmap, which the volume's own writes, trims and zeroes keep true, so
 * that map_begin never makes a system call.
 */
#include <errno.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "file.h"

/* Map [pos, pos+len) from the in-memory map: no system call. */
static int
file_map_begin(struct dio_volume *vol, uint64_t pos, uint64_t len, unsigned int flags,
	       struct dio_extent *ext)
{
	struct file_vol *fv = to_fv(vol);
	/* The last partial block is mapped whole: O_DIRECT works in blocks. */
	uint64_t limit = (vol->size + vol->lbs - 1) / vol->lbs * vol->lbs;
	unsigned int type;

	if (len == 0 || pos >= limit)
		return -EINVAL;
	if (len > limit - pos)
		len = limit - pos;
	memset(ext, 0, sizeof(*ext));
	ext->pos = pos;
	ext->addr = pos;
	ext->length = extmap_lookup(&fv->map, pos, len, &type);
	if ((flags & DIO_MAP_WRITE) && !(flags & DIO_MAP_REPORT) && type == DIO_EXT_HOLE) {
		/* The filesystem allocates as the write lands. */
		type = DIO_EXT_MAPPED;
		ext->flags |= DIO_EXT_NEW;
	}
	/* UNWRITTEN stays so: the write goes into it and the fs converts it. */
	ext->type = type;
	return 0;
}

/* After a write: what was written is data now. */
static int
file_map_end(struct dio_volume *vol, const struct dio_extent *ext, uint64_t done,
	     unsigned int flags)
{
	struct file_vol *fv = to_fv(vol);

	if (!(flags & DIO_MAP_WRITE) || (flags & DIO_MAP_REPORT) || done == 0)
		return 0;
	if (ext->type == DIO_EXT_MAPPED && !(ext->flags & DIO_EXT_NEW))
		return 0;
	if (done > ext->length)
		done = ext->length;
	/* Cannot fail for MAPPED (extmap.h): the written data is never lost. */
	return extmap_set(&fv->map, ext->pos, done, DIO_EXT_MAPPED);
}

const struct dio_map_ops file_map_ops = {
	.map_begin = file_map_begin,
	.map_end = file_map_end,
};

/* A growable array of ranges, for building the map. */
struct ranges {
	struct extmap_run *r;
	size_t nr, cap;
};

static int
ranges_add(struct ranges *rs, uint64_t start, uint64_t end, unsigned int type)
{
	if (start >= end)
		return 0;
	if (rs->nr == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 64;
		struct extmap_run *r = realloc(rs->r, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		rs->r = r;
		rs->cap = cap;
	}
	rs->r[rs->nr++] = (struct extmap_run){ start, end, type };
	return 0;
}

/*
 * Unwritten extents of [0, size) in ascending order, from FIEMAP. The first
 * call flushes dirty pages (FIEMAP_FLAG_SYNC) so that what SEEK_DATA and
 * FIEMAP say afterwards agree. 0, or -errno when FIEMAP fails for another
 * reason than not being supported.
 */
static int
collect_unwritten(struct file_vol *fv, uint64_t size, struct ranges *uw)
{
	enum { BATCH = 256 };
	struct fiemap *fm;
	uint64_t pos = 0;
	uint32_t sync = FIEMAP_FLAG_SYNC;
	int ret = 0;

	fm = calloc(1, sizeof(*fm) + BATCH * sizeof(struct fiemap_extent));
	if (!fm)
		return -ENOMEM;
	while (pos < size) {
		struct fiemap_extent *last;

		memset(fm, 0, sizeof(*fm));
		fm->fm_start = pos;
		fm->fm_length = size - pos;
		fm->fm_flags = sync;
		fm->fm_extent_count = BATCH;
		if (ioctl(fv->vol.fd, FS_IOC_FIEMAP, fm) < 0) {
			ret = -errno;
			if (ret == -EOPNOTSUPP || ret == -ENOTTY || ret == -EBADR)
				ret = 0;	/* no unwritten extents known */
			break;
		}
		sync = 0;
		if (fm->fm_mapped_extents == 0)
			break;
		for (uint32_t i = 0; i < fm->fm_mapped_extents && !ret; i++) {
			struct fiemap_extent *fe = &fm->fm_extents[i];
			uint64_t s = fe->fe_logical, e = fe->fe_logical + fe->fe_length;

			if (!(fe->fe_flags & FIEMAP_EXTENT_UNWRITTEN))
				continue;
			ret = ranges_add(uw, s < pos ? pos : s, e > size ? size : e,
					 DIO_EXT_UNWRITTEN);
		}
		last = &fm->fm_extents[fm->fm_mapped_extents - 1];
		if (ret || (last->fe_flags & FIEMAP_EXTENT_LAST) ||
		    last->fe_logical + last->fe_length <= pos)
			break;
		pos = last->fe_logical + last->fe_length;
	}
	free(fm);
	return ret;
}

/*
 * Holes of [0, size) in ascending order, from SEEK_DATA/SEEK_HOLE; the hole
 * that reaches EOF is extended to 'limit'. 0 or -errno.
 */
static int
collect_holes(struct file_vol *fv, uint64_t size, uint64_t limit, struct ranges *holes)
{
	int fd = fv->vol.fd;
	uint64_t pos = 0;
	off_t d, h;

	while (pos < size) {
		d = lseek(fd, (off_t)pos, SEEK_DATA);
		if (d < 0 && errno == ENXIO)	/* no data past pos */
			return ranges_add(holes, pos, limit, DIO_EXT_HOLE);
		if (d < 0) {
			/* EINVAL: no SEEK_DATA here; all data is the safe answer. */
			dio_log(DIO_LOG_INFO, "%s: SEEK_DATA: %s, treating the file as all data",
				fv->path, strerror(errno));
			holes->nr = 0;
			return 0;
		}
		if (ranges_add(holes, pos, (uint64_t)d, DIO_EXT_HOLE))
			return -ENOMEM;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0 || (uint64_t)h <= (uint64_t)d)
			return 0;	/* the rest is data */
		pos = (uint64_t)h;
	}
	return 0;
}

/*
 * Fill the map of a regular file: holes from SEEK_DATA/SEEK_HOLE, then
 * unwritten extents from FIEMAP over them. ext4 and xfs report unwritten
 * extents as holes to SEEK_HOLE (unless the page cache holds their pages),
 * so FIEMAP wins wherever it says unwritten: both read as zeros, and only
 * UNWRITTEN tells a writer that the space is already allocated.
 * 0 or -errno.
 */
int
file_fill_map(struct file_vol *fv)
{
	struct dio_volume *vol = &fv->vol;
	uint64_t limit = (vol->size + vol->lbs - 1) / vol->lbs * vol->lbs;
	struct ranges uw = { 0 }, holes = { 0 };
	size_t j = 0;
	int ret;

	ret = collect_unwritten(fv, vol->size, &uw);
	if (ret) {
		dio_log(DIO_LOG_WARN, "%s: FIEMAP: %s, unwritten extents read as holes or data",
			fv->path, strerror(-ret));
		uw.nr = 0;
		if (ret == -ENOMEM)
			goto out_free;
	}
	ret = collect_holes(fv, vol->size, limit, &holes);
	if (ret)
		goto out_free;

	/* Merge two sorted lists; extmap_append keeps what came first. */
	for (size_t i = 0; i < holes.nr && !ret; i++) {
		uint64_t cur = holes.r[i].start, end = holes.r[i].end;

		for (; j < uw.nr && uw.r[j].start < end && !ret; j++) {
			if (uw.r[j].start > cur)
				ret = extmap_append(&fv->map, cur, uw.r[j].start, DIO_EXT_HOLE);
			if (!ret)
				ret = extmap_append(&fv->map, uw.r[j].start, uw.r[j].end,
						    DIO_EXT_UNWRITTEN);
			if (uw.r[j].end > cur)
				cur = uw.r[j].end;
		}
		if (!ret && cur < end)
			ret = extmap_append(&fv->map, cur, end, DIO_EXT_HOLE);
	}
	for (; j < uw.nr && !ret; j++)
		ret = extmap_append(&fv->map, uw.r[j].start, uw.r[j].end, DIO_EXT_UNWRITTEN);
out_free:
	free(uw.r);
	free(holes.r);
	if (ret)
		return ret;
	return extmap_validate(&fv->map);
}

