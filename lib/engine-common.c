/* SPDX-License-Identifier: MIT */
/*
 * What every engine shares (engine-priv.h): the eventfd kick, delivering a
 * list of completions, and running one io with plain system calls (the
 * psync engine's workers and the ring's helper thread).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine-priv.h"

void
dio_eventfd_kick(int efd)
{
	uint64_t one = 1;
	ssize_t n;

	/* Fails only with EAGAIN when the counter is full: readable anyway. */
	n = write(efd, &one, sizeof(one));
	(void)n;
}

int
dio_io_list_complete(struct dio_engine *e, struct dio_io *io)
{
	int n = 0;

	while (io) {
		struct dio_io *next = io->next;

		io->next = NULL;
		e->inflight--;
		io->end_io(io, io->res);
		io = next;
		n++;
	}
	return n;
}

int64_t
dio_io_exec_sync(const struct dio_io *io)
{
	struct iovec iov = { .iov_base = io->buf, .iov_len = io->len };
	uint64_t range[2] = { io->offset, io->len };
	ssize_t n;
	int ret;

	switch (io->op) {
	case DIO_IO_READ:
		if (io->len > DIO_IO_MAX_LEN)
			return -EINVAL;
		do
			n = preadv2(io->fd, &iov, 1, (off_t)io->offset, io->rw_flags);
		while (n < 0 && errno == EINTR);
		return n < 0 ? -errno : n;
	case DIO_IO_WRITE:
		if (io->len > DIO_IO_MAX_LEN)
			return -EINVAL;
		do
			n = pwritev2(io->fd, &iov, 1, (off_t)io->offset, io->rw_flags);
		while (n < 0 && errno == EINTR);
		return n < 0 ? -errno : n;
	case DIO_IO_FSYNC:
		ret = io->mode ? fsync(io->fd) : fdatasync(io->fd);
		break;
	case DIO_IO_FALLOCATE:
		ret = fallocate(io->fd, io->mode, (off_t)io->offset, (off_t)io->len);
		break;
	case DIO_IO_DISCARD:
		ret = ioctl(io->fd, BLKDISCARD, range);
		break;
	case DIO_IO_ZEROOUT:
		ret = ioctl(io->fd, BLKZEROOUT, range);
		break;
	case DIO_IO_FADVISE:
		/* posix_fadvise returns the error instead of setting errno */
		return -posix_fadvise(io->fd, (off_t)io->offset, (off_t)io->len, io->mode);
	default:
		return -EINVAL;
	}
	return ret < 0 ? -errno : 0;
}
