/* SPDX-License-Identifier: MIT */
/*
 * What the engines (engine-uring.c, engine-psync.c, engine-fault.c) share:
 * FIFO lists of dio_io (here), and from engine-common.c waking the poller
 * of an eventfd, running one io with plain system calls, and delivering a
 * list of completions. Private to libdio; the engine contract itself is in
 * include/dio/engine.h.
 */
#ifndef DIO_ENGINE_PRIV_H
#define DIO_ENGINE_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "dio/engine.h"

/* A FIFO of dio_io chained through io->next; {NULL, NULL} is empty. */
struct dio_io_list {
	struct dio_io *head, *tail;
};

/* Append io. */
static inline void
dio_io_list_add(struct dio_io_list *l, struct dio_io *io)
{
	io->next = NULL;
	if (l->tail)
		l->tail->next = io;
	else
		l->head = io;
	l->tail = io;
}

/* Move everything on src to the end of dst; src is left empty. */
static inline void
dio_io_list_splice(struct dio_io_list *dst, struct dio_io_list *src)
{
	if (!src->head)
		return;
	if (dst->tail)
		dst->tail->next = src->head;
	else
		dst->head = src->head;
	dst->tail = src->tail;
	src->head = src->tail = NULL;
}

/* Detach the whole list and return its first io (NULL when empty). */
static inline struct dio_io *
dio_io_list_take(struct dio_io_list *l)
{
	struct dio_io *io = l->head;

	l->head = l->tail = NULL;
	return io;
}

/* Remove and return the first io, or NULL. */
static inline struct dio_io *
dio_io_list_pop(struct dio_io_list *l)
{
	struct dio_io *io = l->head;

	if (io) {
		l->head = io->next;
		if (!l->head)
			l->tail = NULL;
		io->next = NULL;
	}
	return io;
}

/* Make efd readable for whoever polls it; a full counter already is. */
void dio_eventfd_kick(int efd);

/* Run io with plain system calls on this thread: bytes, 0, or -errno. */
int64_t dio_io_exec_sync(const struct dio_io *io);

/*
 * Run end_io(io, io->res) for the detached list starting at io, in order,
 * taking each off e->inflight first. Returns how many ran. end_io may
 * queue new I/O: it goes to the engine's queue, not to this list.
 */
int dio_io_list_complete(struct dio_engine *e, struct dio_io *io);

#endif /* DIO_ENGINE_PRIV_H */
