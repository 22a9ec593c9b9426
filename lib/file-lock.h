/* SPDX-License-Identifier: MIT */
/*
 * Image locking as QEMU's file driver (block/file-posix.c) does it, so that
 * qemu-img, qemu-io, qemu-nbd and running VMs refuse a file we serve for
 * writing, and we refuse one they hold for writing. Internal to libdio.
 *
 * QEMU encodes its block-layer permissions (BLK_PERM_*, bit i) as shared
 * OFD read locks on single bytes: byte 100 + i while it holds permission i,
 * byte 200 + i while it does not let others have permission i. A newcomer
 * locks its own bytes, then tests with F_OFD_GETLK that nobody holds the
 * 200 + i of a permission it wants, nor the 100 + i of one it will not share.
 *
 * Every function is for one open file description: locks taken through an
 * fd belong to its description and conflict with those of every other one,
 * in this process too. Close every fd of it (and its dups) to drop them.
 */
#ifndef DIO_FILE_LOCK_H
#define DIO_FILE_LOCK_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Lock fd as a reader (write false) or a reader and writer (write true)
 * that lets others read but neither write nor resize. Conflicts are checked
 * after our bytes are taken, so two racing openers cannot both succeed.
 * 0; -EAGAIN when another holder conflicts, -errno when locking itself
 * failed; on error nothing stays locked and err says why.
 */
int file_lock_apply(int fd, bool write, char *err, size_t errlen);

/* Drop every lock file_lock_apply took through fd. */
void file_lock_release(int fd);

/*
 * Open path again (O_RDONLY, no O_DIRECT) just to hold the locks, check it
 * is the same file as data_fd, and file_lock_apply it. The new fd, or
 * -errno with err set as for file_lock_apply.
 */
int file_lock_open(const char *path, int data_fd, bool write, char *err, size_t errlen);

/* Close a fd from file_lock_open, which drops its locks once no fork holds it; -1 is ignored. */
void file_lock_close(int lock_fd);

#endif /* DIO_FILE_LOCK_H */
