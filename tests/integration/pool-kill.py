#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The client side of test-server-pool-kill.sh (libnbd's python module).

    pool-kill.py write STATE SECONDS URI...
        Two connections per URI write self-describing sectors, FUA writes,
        TRIMs, WRITE_ZEROES and FLUSHes into [BASE, BASE + SPAN) of each
        export until the daemon dies (or SECONDS pass), then add to STATE
        every version each sector may hold after the crash. Half the
        writes are of whole 4 KiB blocks, half of any sectors (the pool
        zero-pads partial sub-blocks); TRIM and WRITE_ZEROES are of whole
        blocks (a partial one may leave the old bytes).
    pool-kill.py verify STATE FIO_URI FIO_OFFSET FIO_LENGTH URI...
        fio-region (below) of FIO_URI, then: every sector of the URIs'
        ranges holds a version the crash allowed: the newest durable one
        (FUA, or replied before a FLUSH that was replied) or a later one,
        never bytes of another sector, export or round; a sector never
        written reads zeros. What it read becomes the next round's
        durable baseline.
    pool-kill.py fio-region URI OFFSET LENGTH
        Each 4 KiB block of a region fio wrote with --verify=crc32c --bs=4k
        (durability unknown) is zeros or a fio block of that very offset:
        its header's magic, type, length and offset, and on a sample of
        blocks the data's crc32c.

Exit status 0 good, 1 a violation (printed), 2 usage.
"""
import json
import os
import random
import struct
import sys
import threading
import time
import zlib

import nbd

SECTOR = 512
BLOCK = 4096
BASE = 40 << 20			# the region this script owns on each export
SPAN = 4 << 20
GROUP = 64 << 10		# a pool chunk
MAGIC = b"DIOKILL1"
ZERO_SECTOR = bytes(SECTOR)


def sector(export, off, seq):
    """The 512 bytes version seq writes at byte offset off of export."""
    head = MAGIC + struct.pack("<IQQ", export, off, seq)
    fill = struct.pack("<Q", (seq * 0x9E3779B97F4A7C15 + off) & (2**64 - 1)) * 60
    body = head + fill[:SECTOR - 4 - len(head)]
    return body + struct.pack("<I", zlib.crc32(body))


def parse(data):
    """(export, off, seq) of a sector of ours, or None."""
    if data[:8] != MAGIC or struct.unpack_from("<I", data, SECTOR - 4)[0] != \
            zlib.crc32(data[:SECTOR - 4]):
        return None
    return struct.unpack_from("<IQQ", data, 8)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"next_seq": 1, "baseline": {}, "allowed": {}}


def save(path, st):
    with open(path + ".new", "w") as f:
        json.dump(st, f)
    os.replace(path + ".new", path)


class Writer:
    """Model of what a crash may leave: per sector, the versions issued in
    order (seq, and whether it is zeros), and the newest durable one."""

    def __init__(self, st, nexports):
        self.lock = threading.Lock()
        self.seq = st["next_seq"]
        self.versions = {}	# (export, sector) -> [(seq, zero)]
        self.durable = {}	# (export, sector) -> seq of the newest durable version
        self.acked = set()	# (export, sector, seq) replied, not yet durable
        self.nexports = nexports

    def issue(self, e, secs, zero):
        with self.lock:
            seq = self.seq
            self.seq += 1
            for b in secs:
                self.versions.setdefault((e, b), []).append((seq, zero))
            return seq

    def replied(self, e, secs, seq, fua):
        with self.lock:
            for b in secs:
                if fua:
                    self.make_durable(e, b, seq)
                else:
                    self.acked.add((e, b, seq))

    def make_durable(self, e, b, seq):
        if self.durable.get((e, b), 0) < seq:
            self.durable[(e, b)] = seq

    def run(self, h, e, owner, deadline):
        rnd = random.Random(os.getpid() * 31 + e * 7 + owner)
        ngroups = SPAN // GROUP
        while time.monotonic() < deadline:
            op = rnd.random()
            if op < 0.15:
                with self.lock:
                    snap = list(self.acked)
                h.flush()
                with self.lock:
                    for (ee, b, seq) in snap:
                        self.make_durable(ee, b, seq)
                        self.acked.discard((ee, b, seq))
                continue
            # This connection owns the 64 KiB groups g with g % 2 == owner:
            # one request at a time per sector, so its versions are ordered.
            g = rnd.randrange(owner, ngroups, 2)
            spg, spb = GROUP // SECTOR, BLOCK // SECTOR
            zero = op >= 0.8
            if zero or rnd.random() < 0.5:
                n = rnd.choice((1, 1, 2, 3, 4, 16)) * spb
                first = g * spg + rnd.randrange(0, (spg - n) // spb + 1) * spb
            else:
                n = rnd.choice((1, 2, 3, 5, 8, 13, 40))
                first = g * spg + rnd.randrange(0, spg - n + 1)
            secs = range(first, first + n)	# sectors
            off, length = BASE + first * SECTOR, n * SECTOR
            fua = rnd.random() < 0.25
            flags = nbd.CMD_FLAG_FUA if fua else 0
            seq = self.issue(e, secs, zero)
            if not zero:
                h.pwrite(b"".join(sector(e, off + s * SECTOR, seq)
                                  for s in range(length // SECTOR)), off, flags)
            elif op < 0.9:
                h.trim(length, off, flags)
            else:
                h.zero(length, off, flags)
            self.replied(e, secs, seq, fua)


def cmd_write(path, seconds, uris):
    st = load(path)
    w = Writer(st, len(uris))
    deadline = time.monotonic() + seconds
    threads = []

    def conn(e, owner):
        try:
            h = nbd.NBD()
            h.connect_uri(uris[e])
            w.run(h, e, owner, deadline)
            h.shutdown()
        except nbd.Error:
            pass	# the daemon was killed: what was replied is recorded
    for e in range(len(uris)):
        for owner in (0, 1):
            t = threading.Thread(target=conn, args=(e, owner))
            t.start()
            threads.append(t)
    for t in threads:
        t.join()
    # allowed["e:sector"] = [durable floor seq or None, [(seq, zero) from it on]]
    for (e, b), vers in w.versions.items():
        key = "%d:%d" % (e, b)
        floor = w.durable.get((e, b))
        later = [v for v in vers if floor is None or v[0] >= floor]
        prev = st["allowed"].get(key)
        if floor is None and prev:
            later = prev[1] + later	# nothing durable yet: earlier rounds' stay possible
            floor = prev[0]
        st["allowed"][key] = [floor, later]
    st["next_seq"] = w.seq
    save(path, st)


def cmd_verify(path, uris):
    st = load(path)
    bad = []
    newbase = {}
    for e, uri in enumerate(uris):
        h = nbd.NBD()
        h.connect_uri(uri)
        data = b"".join(h.pread(1 << 20, BASE + o) for o in range(0, SPAN, 1 << 20))
        h.shutdown()
        for s in range(SPAN // SECTOR):
            key = "%d:%d" % (e, s)
            off = BASE + s * SECTOR
            sec = data[s * SECTOR:(s + 1) * SECTOR]
            entry = st["allowed"].get(key)
            base = st["baseline"].get(key, 0)
            if entry is None:
                ok = {base}
            else:
                floor, later = entry
                ok = set(0 if z else q for q, z in later)
                if floor is None:
                    ok.add(base)
            if sec == ZERO_SECTOR:
                got = 0
            else:
                p = parse(sec)
                if p is None or p[0] != e or p[1] != off:
                    bad.append("export %d offset %d: bytes that were never written there: %s"
                               % (e, off, "not ours" if p is None else
                                  "export %d offset %d seq %d" % p))
                    continue
                got = p[2]
            if got not in ok:
                bad.append("export %d offset %d: version %d, the crash allows only %s"
                           % (e, off, got, sorted(ok)))
            if got:
                newbase[key] = got
    st["baseline"] = newbase
    st["allowed"] = {}
    save(path, st)
    for m in bad[:20]:
        print(m)
    if bad:
        print("%d sectors wrong" % len(bad))
    return not bad


# fio's crc32c (Castagnoli, reflected, no final inversion) of the data.
CRC_TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    CRC_TABLE.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for x in data:
        c = CRC_TABLE[(c ^ x) & 0xFF] ^ (c >> 8)
    return c


def cmd_fio_region(uri, offset, length):
    # struct verify_header: magic u16, verify_type u16 (5: crc32c), len u32,
    # rand_seed u64, offset u64, time_sec u32, time_nsec u32, thread u16,
    # numberio u16, crc32 u32 (of the header: not checked, fio's own crc32c
    # of 36 bytes is not the textbook one); the data's crc32c; the data.
    h = nbd.NBD()
    h.connect_uri(uri)
    data = b"".join(h.pread(min(1 << 20, length - o), offset + o)
                    for o in range(0, length, 1 << 20))
    h.shutdown()
    bad, written = [], []
    for b in range(length // BLOCK):
        blk = data[b * BLOCK:(b + 1) * BLOCK]
        off = offset + b * BLOCK
        if blk == bytes(BLOCK):
            continue
        magic, vtype, ln, _, hoff = struct.unpack_from("<HHIQQ", blk, 0)
        if magic != 0xACCA or vtype != 5 or ln != BLOCK or hoff != off:
            bad.append("offset %d: neither zeros nor fio's block for it (magic %#x, offset %d)"
                       % (off, magic, hoff))
            continue
        written.append(b)
    for b in random.sample(written, min(16, len(written))):
        blk = data[b * BLOCK:(b + 1) * BLOCK]
        if crc32c(blk[44:]) != struct.unpack_from("<I", blk, 40)[0]:
            bad.append("offset %d: fio's header, other data" % (offset + b * BLOCK))
    for m in bad[:20]:
        print(m)
    if bad:
        print("%d blocks wrong of %d written" % (len(bad), len(written)))
    return not bad


def main():
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "write":
        cmd_write(a[1], float(a[2]), a[3:])
    elif len(a) >= 6 and a[0] == "verify":
        ok = cmd_fio_region(a[2], int(a[3]), int(a[4]))
        if not cmd_verify(a[1], a[5:]) or not ok:
            sys.exit(1)
    elif len(a) == 4 and a[0] == "fio-region":
        if not cmd_fio_region(a[1], int(a[2]), int(a[3])):
            sys.exit(1)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
