#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# The table of bench/run-pool.sh from its raw results, so a run can be
# summarised again later:  bench/pool-table.py OUT REPS STRICT(0|1) "PEERS" ROW...
import json, os, statistics, sys

out, reps, strict, peers, rows = (sys.argv[1], int(sys.argv[2]),
                                  sys.argv[3] == "1", sys.argv[4].split(), sys.argv[5:])

# rows measured once on dionbd alone (snap.txt), not per peer
once_rows = ("snap-create", "vol-delete")
snap_rows = [r for r in rows if r in once_rows]
rows = [r for r in rows if r not in once_rows]

# row: (what is compared, dionbd / raw target (None: none), higher is better)
targets = {
    "ow-4k-qd32": ("IOPS", 0.97, True),
    "fw-4k-qd32": ("IOPS", 0.90, True),
    "seq-1m-qd8": ("MiB/s", 0.95, True),
    "fua-4k-qd1": ("p50", 2.00, False),
    "cow-4k-qd32": ("IOPS", 0.50, True),
    "rd-d1-4k-qd32": ("IOPS", None, True),
    "rd-d8-4k-qd32": ("IOPS", None, True),
}


def cell(row, peer, rep):
    base = "%s/%s.%s.%d" % (out, row, peer, rep)
    with open(base + ".json") as f:
        j = json.load(f)
    with open(base + ".srv") as f:
        ticks, hz, t0, t1, wbytes = f.read().split()
    if "jobs" in j:
        w = j["jobs"][0]["read" if row.startswith("rd-") else "write"]
        pct = w["lat_ns"]["percentile"]
        iops, mibs = w["iops"], w["bw_bytes"] / 1048576.0
        p50, p99 = pct["50.000000"] / 1e3, pct["99.000000"] / 1e3
        client = w["io_bytes"]
        ios = w["total_ios"]
    else:  # the FUA probe
        iops, p50, p99 = j["iops"], j["p50_us"], j["p99_us"]
        mibs = iops * 4096 / 1048576.0
        ios = j["ios"]
        client = ios * 4096
    cpu = int(ticks) / float(hz) * 1e6 / ios if ios and peer != "raw" else 0.0
    dev = int(wbytes) / client if client and peer != "raw" else 0.0
    return [iops, mibs, p50, p99, cpu, dev]


# cow-4k-qd32's cells: writes and length of each (fio's write side), and
# the floor the script set (cow.txt: slots per cell, --cow-min-ios)
cow_floor = {"slots": 0, "min_ios": 50000, "min_ms": 2000}
if os.path.exists(out + "/cow.txt"):
    with open(out + "/cow.txt") as f:
        for line in f:
            k, v = line.split()
            cow_floor[k] = int(v)


def cow_cell(row, peer, rep):
    with open("%s/%s.%s.%d.json" % (out, row, peer, rep)) as f:
        w = json.load(f)["jobs"][0]["write"]
    return w["total_ios"], w["runtime"]


# a peer may have no cells in a row (raw-copy: the cow row only)
med, cells = {}, {}
for row in rows:
    for p in peers:
        if not os.path.exists("%s/%s.%s.1.json" % (out, row, p)):
            continue
        cells[row, p] = [cell(row, p, i) for i in range(1, reps + 1)]
        med[row, p] = [statistics.median(c) for c in zip(*cells[row, p])]


def pick(row, m):
    """The row's compared figure (IOPS, MiB/s or p50 latency) of a cell's list."""
    what = targets[row][0]
    return m[0] if what == "IOPS" else m[1] if what == "MiB/s" else m[2]


def figure(row, p):
    return pick(row, med[row, p])


def ratio(row, a, b):
    if (row, a) not in med or (row, b) not in med or not figure(row, b):
        return None
    return figure(row, a) / figure(row, b)


def rep_ratios(row, a, b):
    """a / b within each repetition (the two cells ran side by side)."""
    if (row, a) not in med or (row, b) not in med:
        return ""
    rs = ["%.2f" % (pick(row, x) / pick(row, y)) if pick(row, y) else "-"
          for x, y in zip(cells[row, a], cells[row, b])]
    return "  (per rep: %s)" % " ".join(rs) if len(rs) > 1 else ""


w = max(len(p) for p in peers) + 1
print("%-13s %-*s %9s %8s %8s %8s %8s %7s %7s %7s"
      % ("row", w, "peer", "IOPS", "MiB/s", "p50 us", "p99 us", "cpu/IO", "dev/cli",
         "/raw", "/qcow2"))
short = []
for row in rows:
    for p in peers:
        if (row, p) not in med:
            continue
        iops, mibs, p50, p99, cpu, dev = med[row, p]
        r1, r2 = ratio(row, p, "raw"), ratio(row, p, "qcow2")
        print("%-13s %-*s %9.0f %8.1f %8.0f %8.0f %8s %7s %7s %7s%s"
              % (row, w, p, iops, mibs, p50, p99, "%.1fus" % cpu if cpu else "-",
                 "%.3f" % dev if dev and row != "ow-4k-qd32" else "-",
                 "%.2f" % r1 if r1 is not None and p != "raw" else "",
                 "%.2f" % r2 if r2 is not None and p != "qcow2" else "",
                 " (ceiling)" if p == ("raw-pool" if (row, "raw-pool") in med else "raw")
                 else ""))
    if row.startswith("cow-"):
        for p in peers:
            if (row, p) not in med:
                continue
            cc = [cow_cell(row, p, i) for i in range(1, reps + 1)]
            ios, ms = [c[0] for c in cc], [c[1] for c in cc]
            low = [i for i, (n, t) in enumerate(cc)
                   if n < cow_floor["min_ios"] and t < cow_floor["min_ms"]]
            print("%-13s %-*s  writes/cell %s (min %d), cell %.2f s (min %.2f)%s"
                  % (row, w, p, "{:,}".format(int(statistics.median(ios))), min(ios),
                     statistics.median(ms) / 1e3, min(ms) / 1e3,
                     "  SHORT CELL (rep %s: < %d writes and < %.1f s)"
                     % (",".join(str(i + 1) for i in low), cow_floor["min_ios"],
                        cow_floor["min_ms"] / 1e3) if low else ""))
        if cow_floor["slots"]:
            print("%-13s %-*s  %s slots of %d KiB, cells end after the list or --runtime; dionbd,"
                  " qcow2*, raw-copy:\n%-13s %-*s  each slot once, each write the first into its"
                  " chunk; raw, dionbd-raw, nbd-null (nothing shared): %d passes"
                  % (row, w, "", "{:,}".format(cow_floor["slots"]), cow_floor.get("stride", 65536) // 1024,
                     "", w, "", cow_floor.get("passes", 1)))
    what, want, higher = targets[row]
    # the ceiling: raw-pool (the pool file's own blocks) when measured, else raw
    base = "raw-pool" if (row, "raw-pool") in med else "raw"
    r = ratio(row, "dionbd", base)
    if row == "rd-d8-4k-qd32" and "rd-d1-4k-qd32" in rows:
        for p in peers:
            if p in ("dionbd", "qcow2", "qcow2-xl2") and figure("rd-d1-4k-qd32", p):
                print("%-13s %-*s  depth 8 / depth 1 IOPS = %.2f"
                      % (row, w, p, figure(row, p) / figure("rd-d1-4k-qd32", p)))
    if r is not None and want is not None:
        ok = r >= want if higher else r <= want
        if not ok:
            short.append(row)
        print("%-13s %-*s  dionbd / %s %s = %.2f  target %s %.2f  %s%s"
              % (row, w, "target", base, what, r, ">=" if higher else "<=", want,
                 "ok" if ok else "SHORT", rep_ratios(row, "dionbd", base)))
        if base != "raw" and ratio(row, "dionbd", "raw") is not None:
            print("%-13s %-*s  dionbd / raw %s = %.2f, raw-pool / raw = %.2f  (the same fio on"
                  " the pool file's blocks\n%-13s %-*s  and on the raw file's: where on this"
                  " disk a file lies)%s"
                  % (row, w, "", what, ratio(row, "dionbd", "raw"), ratio(row, "raw-pool", "raw"),
                     "", w, "", rep_ratios(row, "raw-pool", "raw")))
        rd = ratio(row, "dionbd", "dionbd-raw")
        if rd is not None:
            print("%-13s %-*s  dionbd / dionbd-raw %s = %.2f  (the pool's cost alone)%s"
                  % (row, w, "", what, rd, rep_ratios(row, "dionbd", "dionbd-raw")))
        rc = ratio(row, "dionbd", "raw-copy")
        if rc is not None:
            print("%-13s %-*s  dionbd / raw-copy %s = %.2f  (raw-copy: the device moving a whole"
                  " chunk in and out per write, no server)%s"
                  % (row, w, "", what, rc, rep_ratios(row, "dionbd", "raw-copy")))
        for p, say in (("dionbd-raw", "what any server pays for NBD here"),
                       ("nbd-null", "the NBD path's ceiling here: a server doing no I/O")):
            rn = ratio(row, p, "raw")
            if rn is not None:
                print("%-13s %-*s  %s / raw %s = %.2f  (%s)" % (row, w, "", p, what, rn, say))
    print()

meta = {}
if os.path.exists(out + "/meta.txt"):
    with open(out + "/meta.txt") as f:
        for line in f:
            k, *v = line.split()
            meta.setdefault(k, []).append([float(x) for x in v])
if meta:
    one = lambda k: meta[k][0][0]
    print("metadata (the pool's durable checkpoint after a clean close, 4 KiB blocks):")
    if "empty_ckpt_blocks" in meta:
        print("  empty pool: %.0f blocks (space map and root; grows with the pool, not the mapping)"
              % one("empty_ckpt_blocks"))
    for kind, blocks, mapped, want in (
            ("sequential 1 MiB fill", "seq_ckpt_blocks", "seq_mapped", 4.0),
            ("random 4 KiB fill (each block once)", "rnd_ckpt_delta", "rnd_mapped", 512.0)):
        if blocks not in meta or not one(mapped):
            continue
        b = one(blocks) - (one("empty_ckpt_blocks") if kind.startswith("seq") else 0)
        per = b * 4096 / 1024.0 / (one(mapped) / 2 ** 30)
        ok = per <= want
        if not ok:
            short.append("meta-" + kind.split()[0])
        print("  %-36s %6.0f blocks for %.0f MiB mapped = %7.1f KiB/GiB  target <= %.0f  %s"
              % (kind, b, one(mapped) / 2 ** 20, per, want, "ok" if ok else "SHORT"))
    if "journal_blocks_clean" in meta:
        print("  journal in use after a clean close: %.0f blocks" % one("journal_blocks_clean"))
    for p in peers:
        k = p + "_meta_bytes"
        if k in meta:
            mb, data = meta[k][0]
            print("  %-36s %7.1f KiB/GiB (allocated bytes of the image less its data)"
                  % (p + ", converted from the raw file", mb / 1024.0 / (data / 2 ** 30)))
    opens = [("dionbd-pool info (open, read-only)", "open_tool"),
             ("dionbd start until nbdinfo answers", "open_dionbd")]
    opens += [("qemu-nbd %s start until nbdinfo answers" % p, p + "_open") for p in peers]
    print("open time of the clean pool (medians):")
    for label, k in opens:
        if k in meta:
            print("  %-42s %7.1f ms (%d runs)"
                  % (label, statistics.median(v[0] for v in meta[k]) * 1e3, len(meta[k])))
    print()

if snap_rows and os.path.exists(out + "/snap.txt"):
    snap = {}
    with open(out + "/snap.txt") as f:
        for line in f:
            c, k, v = line.split()
            snap.setdefault(int(c), {}).setdefault(k, []).append(float(v))
    med_of = lambda d, k: statistics.median(d[k]) if k in d else None
    fmt = lambda v, f="%.0f": f % v if v is not None else "-"
    # chunks the volume maps (pool.volume.list: bytes, 4 KiB chunks)
    mapped = lambda d: fmt(d["mapped_bytes"][0] / 4096 if "mapped_bytes" in d else None)
    print("snapshots and deletes: dionbd on a pool of 4 KiB chunks (sparse file), one volume"
          " per size, written in full")
    if "snap-create" in snap_rows:
        print("%-9s %9s | %10s %10s %10s | %10s %10s %10s | %10s %10s | %9s"
              % ("chunks", "mapped", "ctl p50us", "ctl max", "pause max", "lib p50us",
                 "lib max", "lib open", "ctl del", "lib del", "write p50"))
        for c in sorted(snap):
            d = snap[c]
            if "ctl_snap_us" not in d:
                continue
            print("%-9d %9s | %10s %10s %10s | %10s %10s %10s | %10s %10s | %9s"
                  % (c, mapped(d), fmt(med_of(d, "ctl_snap_us")),
                     fmt(max(d["ctl_snap_us"])), fmt(max(d.get("pause_us", [0]))),
                     fmt(med_of(d, "lib_snap_us")),
                     fmt(max(d["lib_snap_us"]) if "lib_snap_us" in d else None),
                     fmt(med_of(d, "lib_open_ms"), "%.0fms"),
                     fmt(med_of(d, "ctl_delsnap_us")), fmt(med_of(d, "lib_delsnap_us")),
                     fmt(med_of(d, "quiet_p50_us"))))
        big = max(snap)
        d = snap[big]
        if "ctl_snap_us" in d:
            for label, v, want in (("snapshot (control socket, p50)", med_of(d, "ctl_snap_us"), 5000),
                                   ("snapshot (library, p50)", med_of(d, "lib_snap_us"), 5000),
                                   ("origin write pause (max)", max(d.get("pause_us", [0])), 1000)):
                if v is None:
                    continue
                ok = v <= want
                if not ok:
                    short.append("snap-" + label.split()[0])
                print("  at %d chunks: %-32s %8.0f us  target <= %d us  %s"
                      % (big, label, v, want, "ok" if ok else "SHORT"))
        print("  ctl: JSON-RPC pool.volume.snapshot on dionbd's control socket, connect excluded;"
              " lib: dio_tpool_volume_snapshot\n  (pool-snap-bench, no daemon); pause: the longest"
              " 4 KiB QD1 write to the origin in flight\n  during the call; write p50: those writes"
              " away from any call; del: deleting the snapshot again")
    if "vol-delete" in snap_rows:
        print("%-9s %9s | %12s %12s" % ("chunks", "mapped", "delete ms", "reclaim"))
        for c in sorted(snap):
            d = snap[c]
            if "del_us" not in d:
                continue
            rec = " ".join("%s=%g" % (k[len("reclaim_"):], v[0])
                           for k, v in sorted(d.items()) if k.startswith("reclaim_"))
            print("%-9d %9s | %12.1f %12s" % (c, mapped(d), d["del_us"][0] / 1e3,
                                              rec or "-"))
        print("  delete: JSON-RPC pool.volume.delete of the volume (no export serving it), reply"
              " time; reclaim: what pool.info\n  reports of a background reclaim, '-' when it"
              " reports none (the delete is synchronous)")
    print()

print("medians of %d repetitions; peers alternate within each row (reverse order in even reps);"
      "\nIOPS/MiB/s/latency: the client's writes (rd rows: reads), lat = submission to completion;"
      " the client: fio, but for\nthe ow and fw rows on a server bench/nbd-load -R (run-pool.sh"
      " --client raw, the default; its line in ROW.PEER.REP.fio.log)\nand fua-4k-qd1's"
      " Python loop (call to return);"
      "\n/raw, /qcow2: the row's figure (IOPS; seq: MiB/s; fua: p50 latency, lower is better)"
      " over raw's and qcow2's;"
      "\nraw-copy (cow row): per slot a read and a write of a whole pool chunk of the raw file"
      " (io_uring, O_DIRECT), its IOPS the copies a second;"
      "\nraw-pool: raw's fio on the pool file, over the chunks volume ow maps (fw, seq: those"
      " the last fresh fw or seq volume took; targets are judged against it when measured);"
      "\ncpu/IO: the server's user + system CPU per I/O; dev/cli: bytes the server sent to"
      " the block layer\n(/proc/PID/io write_bytes, after a FLUSH) over bytes the client"
      " wrote; raw JSON in %s" % (reps, out))
sys.exit(1 if strict and short else 0)
