#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# The table of bench/run-nbd.sh from its raw results, so a run can be
# summarised again later:  bench/nbd-table.py OUT REPS STRICT(0|1) "SERVERS" ROW...
import json, statistics, sys

out, reps, strict, servers, rows = (sys.argv[1], int(sys.argv[2]),
                                    sys.argv[3] == "1", sys.argv[4].split(), sys.argv[5:])
peers = [s for s in ("nbdkit-file", "nbdkit-dio", "qemu-nbd") if s in servers]

def cell(row, srv, rep):
    base = "%s/%s.%s.%d" % (out, row, srv, rep)
    with open(base + ".json") as f:
        job = json.load(f)["jobs"][0]
    side = job["write"] if job["write"]["total_ios"] > job["read"]["total_ios"] else job["read"]
    with open(base + ".cpu") as f:
        ticks, hz, t0, t1 = f.read().split()
    ios = side["iops"] * (float(t1) - float(t0))
    cpu = int(ticks) / float(hz) * 1e6 / ios if ios and srv != "fio-uring" else 0.0
    return (side["iops"], side["bw_bytes"] / 1048576.0,
            side["lat_ns"]["percentile"]["99.000000"] / 1e3, cpu)

med = {}
for row in rows:
    for srv in servers:
        res = [cell(row, srv, i) for i in range(1, reps + 1)]
        med[row, srv] = [statistics.median(c) for c in zip(*res)]

target = {"qd32-randread": 1.3}
w = max(len(s) for s in servers) + 1
print("%-19s %-*s %10s %9s %9s %10s" % ("row", w, "server", "IOPS", "MiB/s", "p99 us", "srv cpu/IO"))
short = []
for row in rows:
    for srv in servers:
        iops, mibs, p99, cpu = med[row, srv]
        note = " (ceiling)" if srv == "fio-uring" else ""
        print("%-19s %-*s %10.0f %9.1f %9.0f %10s%s"
              % (row, w, srv, iops, mibs, p99, "%.1fus" % cpu if cpu else "-", note))
    if "dionbd" in servers and peers:
        best = max(peers, key=lambda p: med[row, p][0])
        ratio = med[row, "dionbd"][0] / med[row, best][0] if med[row, best][0] else 0.0
        want = target.get(row, 1.0)
        ok = ratio >= want
        if not ok:
            short.append(row)
        print("%-19s %-*s %10s  dionbd / best peer (%s) = %.2f  target >= %.2f  %s"
              % (row, w, "ratio", "", best, ratio, want, "ok" if ok else "SHORT"))
    print()

if all(s in servers for s in ("nbdkit-dio", "nbdkit-file")) and "qd32-randread" in rows:
    a, b = med["qd32-randread", "nbdkit-dio"][0], med["qd32-randread", "nbdkit-file"][0]
    ratio = a / b if b else 0.0
    print("nbdkit dio vs nbdkit file, qd32-randread (same nbdkit -t):")
    print("  nbdkit-dio %.0f IOPS, nbdkit-file %.0f IOPS, ratio %.2f  target >= 1.50  %s\n"
          % (a, b, ratio, "ok" if ratio >= 1.5 else "SHORT"))
    if ratio < 1.5:
        short.append("nbdkit-dio")

print("medians of %d repetitions; IOPS ratio (1 MiB rows: the same as MiB/s);"
      " p99 = fio's lat (submit to completion);\nsrv cpu/IO = the server process's"
      " user + system CPU (all threads) over the cell, ramp included, per I/O;"
      "\nraw JSON in %s" % (reps, out))
sys.exit(1 if strict and short else 0)
