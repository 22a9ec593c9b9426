#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Write seed inputs for the fuzz targets: well-formed conversations that
reach deep states at once (every option, every command and flag, WRITE
payloads, a sequential READ stream for readahead), which libFuzzer then
mutates. Generated rather than stored, so the repository holds no blobs.

    fuzz/seeds.py DIR      writes DIR/fuzz-handshake/, DIR/fuzz-transmission/,
                           DIR/fuzz-tls/, DIR/fuzz-control/, DIR/fuzz-pool/
                           (existing files are kept)

The input formats are the targets' own (see their head comments):
fuzz-handshake takes the client's bytes after the greeting; fuzz-transmission
a variant byte (the handshake the harness does) then transmission bytes;
fuzz-tls a record-size byte then the plaintext inside TLS after STARTTLS;
fuzz-pool patches over its pristine pool's metadata blocks (block 0 and 1
the superblock slots, 2-9 the journal ring, 10 on the checkpoints).
The fuzz volume is 1 MiB.
"""
import json
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQUEST_MAGIC = 0x25609513
C_FIXED, C_NO_ZEROES = 1, 2
OPT = dict(EXPORT_NAME=1, ABORT=2, LIST=3, STARTTLS=5, INFO=6, GO=7,
           STRUCTURED_REPLY=8, LIST_META_CONTEXT=9, SET_META_CONTEXT=10)
INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3
CMD = dict(READ=0, WRITE=1, DISC=2, FLUSH=3, TRIM=4, CACHE=5, WRITE_ZEROES=6,
           BLOCK_STATUS=7)
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 0x10
MiB = 1 << 20


def opt(code, body=b""):
    return struct.pack(">QII", IHAVEOPT, code, len(body)) + body


def name_info(name, *infos):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos)) + \
        b"".join(struct.pack(">H", i) for i in infos)


def meta(name, *queries):
    n = name.encode()
    body = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        body += struct.pack(">I", len(q)) + q.encode()
    return body


def req(cmd, off=0, count=0, flags=0, cookie=1, payload=None):
    b = struct.pack(">IHHQQI", REQUEST_MAGIC, flags, CMD[cmd], cookie, off, count)
    if cmd == "WRITE":
        b += payload if payload is not None else bytes((cookie + i) & 0xFF
                                                       for i in range(count))
    return b


FLAGS = struct.pack(">I", C_FIXED | C_NO_ZEROES)
GO_SR = (opt(OPT["STRUCTURED_REPLY"]) +
         opt(OPT["SET_META_CONTEXT"], meta("", "base:allocation")) +
         opt(OPT["GO"], name_info("", INFO_BLOCK_SIZE)))

HANDSHAKES = {
    "list-info-go": FLAGS + opt(OPT["LIST"]) +
    opt(OPT["INFO"], name_info("", INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE)) +
    opt(OPT["GO"], name_info("")),
    "sr-meta-go": FLAGS + opt(OPT["LIST_META_CONTEXT"], meta("", "base:")) + GO_SR,
    "export-name": struct.pack(">I", C_FIXED) + opt(OPT["EXPORT_NAME"], b""),
    "newstyle-ro": struct.pack(">I", 0) + opt(OPT["EXPORT_NAME"], b"ro"),
    "abort": FLAGS + opt(OPT["INFO"], name_info("ro")) + opt(OPT["ABORT"]),
    "unknown-and-bad": FLAGS + opt(99, b"x" * 8) + opt(OPT["GO"], name_info("nosuch")) +
    opt(OPT["INFO"], b"\0\0\0\x10ro") + opt(OPT["GO"], name_info("")),
    "starttls": FLAGS + opt(OPT["STARTTLS"]) + opt(OPT["GO"], name_info("")),
    "go-then-io": FLAGS + GO_SR + req("READ", 0, 4096) + req("DISC"),
}

# Transmission conversations (after the harness's handshake).
SEQ = b"".join(req("READ", i * 65536, 65536, cookie=10 + i) for i in range(8))
TRANSMISSIONS = {
    "read-write": req("WRITE", 8192, 4096, cookie=1) + req("READ", 0, 16384, cookie=2) +
    req("READ", 4096, 4096, DF, cookie=3) + req("DISC"),
    "every-command": req("WRITE", 0, 512, FUA, 1) + req("FLUSH", cookie=2) +
    req("TRIM", 65536, 65536, cookie=3) + req("WRITE_ZEROES", 131072, 8192, NO_HOLE, 4) +
    req("WRITE_ZEROES", 196608, 4096, FAST_ZERO, 5) + req("CACHE", 0, MiB, cookie=6) +
    req("BLOCK_STATUS", 0, MiB, cookie=7) + req("BLOCK_STATUS", 0, MiB, REQ_ONE, 8) +
    req("DISC"),
    "readahead-stream": SEQ + req("WRITE", 5 * 65536, 4096, cookie=30) +
    b"".join(req("READ", (8 + i) * 65536, 65536, cookie=40 + i) for i in range(6)),
    "errors": req("READ", MiB, 4096, cookie=1) + req("WRITE", MiB - 512, 4096, cookie=2) +
    req("READ", 1, 4096, cookie=3) + req("READ", 0, 0, cookie=4) + req("TRIM", 0, 4096, 0x80, 5) +
    struct.pack(">IHHQQI", REQUEST_MAGIC, 0, 42, 6, 0, 0) + req("READ", 0, 4096, cookie=7),
    "unaligned-write": req("WRITE", 100, 1000, cookie=1) + req("READ", 0, 4096, cookie=2),
}

VARIANTS = (0, 1, 3, 7, 11, 15)   # see fuzz-transmission.c's handshake()


# One JSON-RPC request per input (fuzz-control): every method, good and bad params.
CONTROL = {
    "info": {"method": "server.info"},
    "list": {"method": "export.list"},
    "conns": {"method": "connection.list"},
    "add": {"method": "export.add", "params": {"name": "x", "path": "/dev/null",
                                               "readonly": True, "allow": ["a"]}},
    "remove": {"method": "export.remove", "params": {"name": "vol", "timeout": 0}},
    "ro": {"method": "export.set_readonly", "params": {"name": "vol", "readonly": False}},
    "resize": {"method": "export.resize", "params": {"name": "vol", "size": 4096}},
    "level": {"method": "log.set_level", "params": {"level": "err"}},
    "tls": {"method": "tls.reload"},
}


def write(path, data):
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)


def patch(block, off, data, keep_crc=False, xor=False):
    """One fuzz-pool patch (up to 64 bytes)."""
    return struct.pack("<BHB", block, off, (len(data) - 1) | (keep_crc << 6) |
                       (xor << 7)) + data


# tp_hdr: magic 0, crc 4, uuid 8, type 24, version 26, owner 28, gen 32,
# blocknr 40, aux 48, count 56, used 60; payload (records) from 64.
POOL = {
    "pristine": b"",
    "slot-a-torn": patch(0, 100, b"\xff", keep_crc=True),
    "slot-b-torn": patch(1, 100, b"\xff", keep_crc=True),
    "slot-a-newer": patch(0, 32, struct.pack("<Q", 99)),
    "features": patch(1, 64, struct.pack("<QQQ", 0, 1, 0)),
    "geometry": patch(1, 96, struct.pack("<IIII", 4096, 16384, 1024, 512)),
    "journal-tail": patch(1, 168, struct.pack("<Q", 1)),
    "next-vol-id": patch(1, 176, struct.pack("<Q", 1)),
}
for j in range(2, 10):
    POOL["journal-%d-count" % j] = patch(j, 56, struct.pack("<I", 1))
    POOL["journal-%d-rec" % j] = patch(j, 64, bytes([1, 4]), xor=True)
    POOL["journal-%d-torn" % j] = patch(j, 200, b"\x55", keep_crc=True)
for m in range(10, 24):
    POOL["meta-%d-aux" % m] = patch(m, 48, struct.pack("<Q", 1 << 40))
    POOL["meta-%d-rec" % m] = patch(m, 64 + 8, struct.pack("<Q", 1 << 62))
    POOL["meta-%d-name" % m] = patch(m, 64 + 48, b"x" * 56)
    # after the four VOLs (104 bytes each): MAPs and RUNs (count at +2,
    # first lchunk at +8, first pchunk at +12)
    POOL["meta-%d-run-count" % m] = patch(m, 64 + 416 + 2, struct.pack("<H", 0xffff))
    POOL["meta-%d-run-pchunk" % m] = patch(m, 64 + 416 + 12, struct.pack("<I", 0xfffffff0))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    top = sys.argv[1]
    for t in ("fuzz-handshake", "fuzz-transmission", "fuzz-tls", "fuzz-control",
              "fuzz-pool"):
        os.makedirs(os.path.join(top, t), exist_ok=True)
    for name, call in CONTROL.items():
        call = dict(call, jsonrpc="2.0", id=1)
        write(os.path.join(top, "fuzz-control", "seed-" + name), json.dumps(call).encode())
    # Found by fuzz-control: a parser error that quotes bytes not UTF-8 got no reply.
    write(os.path.join(top, "fuzz-control", "seed-bad-utf8-escape"), b'{"i\\\xd9\xbf#\xde\x82')
    for name, data in HANDSHAKES.items():
        write(os.path.join(top, "fuzz-handshake", "seed-" + name), data)
    for name, data in TRANSMISSIONS.items():
        for v in VARIANTS:
            write(os.path.join(top, "fuzz-transmission", "seed-%s-%d" % (name, v)),
                  bytes([v]) + data)
    # Inside TLS the handshake goes on with options, then transmission.
    for rec in (0, 3, 255):
        write(os.path.join(top, "fuzz-tls", "seed-go-io-%d" % rec),
              bytes([rec]) + GO_SR + TRANSMISSIONS["read-write"])
        write(os.path.join(top, "fuzz-tls", "seed-list-info-%d" % rec),
              bytes([rec]) + opt(OPT["LIST"]) + opt(OPT["INFO"], name_info("")) +
              opt(OPT["STARTTLS"]) + opt(OPT["GO"], name_info("ro")) + req("DISC"))

    for name, data in POOL.items():
        write(os.path.join(top, "fuzz-pool", "seed-" + name), data)


if __name__ == "__main__":
    main()
