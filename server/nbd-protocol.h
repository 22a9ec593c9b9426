/* SPDX-License-Identifier: MIT */
/*
 * The NBD wire format, written from doc/proto.md of the NBD project.
 * Every multi-byte field on the wire is big-endian. The structs are packed
 * images of the wire; fill them with htobe*() and read them with be*toh().
 * Names are NBDP_* and wire_* so they never clash with libnbd's nbd_*.
 */
#ifndef DIONBD_NBD_PROTOCOL_H
#define DIONBD_NBD_PROTOCOL_H

#include <stdint.h>

#define NBDP_DEFAULT_PORT	"10809"

/* Handshake magics. */
#define NBDP_MAGIC		UINT64_C(0x4e42444d41474943)	/* "NBDMAGIC" */
#define NBDP_IHAVEOPT		UINT64_C(0x49484156454f5054)	/* "IHAVEOPT" */
#define NBDP_REP_MAGIC		UINT64_C(0x0003e889045565a9)	/* option replies */

/* Handshake flags (server, 16 bits) and client flags (32 bits). */
#define NBDP_FLAG_FIXED_NEWSTYLE	(1u << 0)
#define NBDP_FLAG_NO_ZEROES		(1u << 1)
#define NBDP_FLAG_C_FIXED_NEWSTYLE	(1u << 0)
#define NBDP_FLAG_C_NO_ZEROES		(1u << 1)

/* Options. */
#define NBDP_OPT_EXPORT_NAME		1
#define NBDP_OPT_ABORT			2
#define NBDP_OPT_LIST			3
#define NBDP_OPT_STARTTLS		5
#define NBDP_OPT_INFO			6
#define NBDP_OPT_GO			7
#define NBDP_OPT_STRUCTURED_REPLY	8
#define NBDP_OPT_LIST_META_CONTEXT	9
#define NBDP_OPT_SET_META_CONTEXT	10

/* Option replies. */
#define NBDP_REP_ACK			1
#define NBDP_REP_SERVER			2
#define NBDP_REP_INFO			3
#define NBDP_REP_META_CONTEXT		4
#define NBDP_REP_ERR(n)			((1u << 31) | (n))
#define NBDP_REP_ERR_UNSUP		NBDP_REP_ERR(1)
#define NBDP_REP_ERR_POLICY		NBDP_REP_ERR(2)
#define NBDP_REP_ERR_INVALID		NBDP_REP_ERR(3)
#define NBDP_REP_ERR_PLATFORM		NBDP_REP_ERR(4)
#define NBDP_REP_ERR_TLS_REQD		NBDP_REP_ERR(5)
#define NBDP_REP_ERR_UNKNOWN		NBDP_REP_ERR(6)
#define NBDP_REP_ERR_SHUTDOWN		NBDP_REP_ERR(7)
#define NBDP_REP_ERR_BLOCK_SIZE_REQD	NBDP_REP_ERR(8)
#define NBDP_REP_ERR_TOO_BIG		NBDP_REP_ERR(9)

/* NBD_REP_INFO types. */
#define NBDP_INFO_EXPORT		0
#define NBDP_INFO_NAME			1
#define NBDP_INFO_DESCRIPTION		2
#define NBDP_INFO_BLOCK_SIZE		3

/* Transmission flags (16 bits). */
#define NBDP_FLAG_HAS_FLAGS		(1u << 0)
#define NBDP_FLAG_READ_ONLY		(1u << 1)
#define NBDP_FLAG_SEND_FLUSH		(1u << 2)
#define NBDP_FLAG_SEND_FUA		(1u << 3)
#define NBDP_FLAG_ROTATIONAL		(1u << 4)
#define NBDP_FLAG_SEND_TRIM		(1u << 5)
#define NBDP_FLAG_SEND_WRITE_ZEROES	(1u << 6)
#define NBDP_FLAG_SEND_DF		(1u << 7)
#define NBDP_FLAG_CAN_MULTI_CONN	(1u << 8)
#define NBDP_FLAG_SEND_CACHE		(1u << 10)
#define NBDP_FLAG_SEND_FAST_ZERO	(1u << 11)

/* Transmission magics. */
#define NBDP_REQUEST_MAGIC		UINT32_C(0x25609513)
#define NBDP_SIMPLE_REPLY_MAGIC		UINT32_C(0x67446698)
#define NBDP_STRUCTURED_REPLY_MAGIC	UINT32_C(0x668e33ef)

/* Commands. */
#define NBDP_CMD_READ			0
#define NBDP_CMD_WRITE			1
#define NBDP_CMD_DISC			2
#define NBDP_CMD_FLUSH			3
#define NBDP_CMD_TRIM			4
#define NBDP_CMD_CACHE			5
#define NBDP_CMD_WRITE_ZEROES		6
#define NBDP_CMD_BLOCK_STATUS		7

/* Command flags. */
#define NBDP_CMD_FLAG_FUA		(1u << 0)
#define NBDP_CMD_FLAG_NO_HOLE		(1u << 1)
#define NBDP_CMD_FLAG_DF		(1u << 2)
#define NBDP_CMD_FLAG_REQ_ONE		(1u << 3)
#define NBDP_CMD_FLAG_FAST_ZERO		(1u << 4)

/* Structured reply chunk flags and types. */
#define NBDP_REPLY_FLAG_DONE		(1u << 0)
#define NBDP_REPLY_TYPE_NONE		0
#define NBDP_REPLY_TYPE_OFFSET_DATA	1
#define NBDP_REPLY_TYPE_OFFSET_HOLE	2
#define NBDP_REPLY_TYPE_BLOCK_STATUS	5
#define NBDP_REPLY_TYPE_ERROR		((1u << 15) | 1)
#define NBDP_REPLY_TYPE_ERROR_OFFSET	((1u << 15) | 2)

/* base:allocation states. */
#define NBDP_STATE_HOLE			(1u << 0)
#define NBDP_STATE_ZERO			(1u << 1)

/* Errors on the wire (Linux values, whatever the host uses). */
#define NBDP_EPERM			1
#define NBDP_EIO			5
#define NBDP_ENOMEM			12
#define NBDP_EINVAL			22
#define NBDP_ENOSPC			28
#define NBDP_EOVERFLOW			75
#define NBDP_ENOTSUP			95
#define NBDP_ESHUTDOWN			108

#define NBDP_META_BASE_ALLOCATION	"base:allocation"
/* QEMU's: qemu:dirty-bitmap:NAME, state bit 0 = changed since the bitmap began */
#define NBDP_META_DIRTY_BITMAP		"qemu:dirty-bitmap:"
#define NBDP_STATE_DIRTY		(1u << 0)

/* Strings (names, descriptions, queries) are at most this long. */
#define NBDP_MAX_STRING			4096

/* S: first message of the newstyle handshake. */
struct wire_new_handshake {
	uint64_t nbdmagic;
	uint64_t version;	/* NBDP_IHAVEOPT */
	uint16_t gflags;
} __attribute__((packed));

/* C: option header; 'len' bytes of data follow. */
struct wire_option {
	uint64_t version;	/* NBDP_IHAVEOPT */
	uint32_t option;
	uint32_t len;
} __attribute__((packed));

/* S: option reply header; 'len' bytes of data follow. */
struct wire_fixed_new_option_reply {
	uint64_t magic;		/* NBDP_REP_MAGIC */
	uint32_t option;
	uint32_t reply;
	uint32_t len;
} __attribute__((packed));

/* S: end of NBD_OPT_EXPORT_NAME; 124 zero bytes follow unless NO_ZEROES. */
struct wire_export_name_reply {
	uint64_t exportsize;
	uint16_t eflags;
} __attribute__((packed));

struct wire_info_export {
	uint16_t info;		/* NBDP_INFO_EXPORT */
	uint64_t exportsize;
	uint16_t eflags;
} __attribute__((packed));

struct wire_info_block_size {
	uint16_t info;		/* NBDP_INFO_BLOCK_SIZE */
	uint32_t minimum;
	uint32_t preferred;
	uint32_t maximum;
} __attribute__((packed));

/* C: transmission request; WRITE data follows. */
struct wire_request {
	uint32_t magic;		/* NBDP_REQUEST_MAGIC */
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t count;
} __attribute__((packed));

/* S: simple reply; READ data follows on success. */
struct wire_simple_reply {
	uint32_t magic;		/* NBDP_SIMPLE_REPLY_MAGIC */
	uint32_t error;
	uint64_t cookie;
} __attribute__((packed));

/* S: structured reply chunk header; 'length' bytes of payload follow. */
struct wire_structured_reply {
	uint32_t magic;		/* NBDP_STRUCTURED_REPLY_MAGIC */
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint32_t length;
} __attribute__((packed));

struct wire_offset_data {
	uint64_t offset;	/* the data follows */
} __attribute__((packed));

struct wire_offset_hole {
	uint64_t offset;
	uint32_t length;
} __attribute__((packed));

struct wire_error {
	uint32_t error;
	uint16_t len;		/* message bytes that follow */
} __attribute__((packed));

struct wire_block_descriptor {
	uint32_t length;
	uint32_t status_flags;
} __attribute__((packed));

_Static_assert(sizeof(struct wire_new_handshake) == 18, "wire layout");
_Static_assert(sizeof(struct wire_option) == 16, "wire layout");
_Static_assert(sizeof(struct wire_fixed_new_option_reply) == 20, "wire layout");
_Static_assert(sizeof(struct wire_request) == 28, "wire layout");
_Static_assert(sizeof(struct wire_simple_reply) == 16, "wire layout");
_Static_assert(sizeof(struct wire_structured_reply) == 20, "wire layout");
_Static_assert(sizeof(struct wire_info_block_size) == 14, "wire layout");

#endif /* DIONBD_NBD_PROTOCOL_H */
