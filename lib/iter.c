/* SPDX-License-Identifier: MIT */
/*
 * dio_iter: walk a byte range extent by extent, as fs/iomap/iter.c's
 * iomap_iter does. Each call finishes the previous step (map_end with what
 * the body processed, advance) and maps the next one.
 */
#include <errno.h>
#include <string.h>

#include "dio/volume.h"

void
dio_iter_init(struct dio_iter *it, uint64_t pos, uint64_t len, unsigned int flags)
{
	memset(it, 0, sizeof(*it));
	it->pos = pos;
	it->len = len;
	it->flags = flags;
}

/* Close the previous step: map_end, then advance by what was processed. */
static int
dio_iter_finish_step(struct dio_iter *it, struct dio_volume *vol)
{
	int64_t processed = it->status;
	uint64_t done = processed > 0 ? (uint64_t)processed : 0;
	int ret = 0;

	it->have_ext = false;
	if (done > it->ext.length)
		return -EIO;	/* the body claims more than it was given: a bug */
	if (!it->defer_end && vol->map_ops->map_end)
		ret = vol->map_ops->map_end(vol, &it->ext, done, it->flags);
	if (processed < 0)
		return (int)processed;
	if (ret < 0)
		return ret;
	it->pos += done;
	it->len -= done;
	/* No progress ends the walk, as iomap_iter does for processed == 0. */
	if (done == 0)
		return 0;
	return 1;
}

int
dio_iter(struct dio_iter *it, struct dio_volume *vol)
{
	int ret;

	if (it->have_ext) {
		ret = dio_iter_finish_step(it, vol);
		if (ret <= 0)
			return ret;
	}
	if (it->len == 0)
		return 0;

	it->status = 0;
	memset(&it->ext, 0, sizeof(it->ext));
	ret = vol->map_ops->map_begin(vol, it->pos, it->len, it->flags, &it->ext);
	if (ret < 0)
		return ret;
	if (it->ext.length == 0 || it->ext.pos != it->pos || it->ext.type > DIO_EXT_UNWRITTEN) {
		/* A backend that breaks the contract must not send us spinning;
		 * its map_begin succeeded, so it still gets its map_end. */
		if (vol->map_ops->map_end)
			vol->map_ops->map_end(vol, &it->ext, 0, it->flags);
		return -EIO;
	}
	if (it->ext.length > it->len)
		it->ext.length = it->len;
	it->have_ext = true;
	return 1;
}
