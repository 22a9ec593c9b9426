#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
#
# One JSON-RPC 2.0 call on dionbd's control socket, timed from sending the
# request to its reply (the connect not counted), for bench/run-pool.sh:
#   bench/pool_rpc.py CTL METHOD JSON-PARAMS   prints the reply time in us
# and, imported, call(). An error reply exits naming the method.
import json, socket, sys, time


def call(ctl, method, params):
    """Call method with params on the socket ctl: (t0, t1), monotonic ns."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(ctl)
    t0 = time.monotonic_ns()
    s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                           "params": params}) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            break
        buf += d
    t1 = time.monotonic_ns()
    s.close()
    r = json.loads(buf)
    if "error" in r:
        sys.exit("%s: %s" % (method, r["error"]))
    return t0, t1


if __name__ == "__main__":
    t0, t1 = call(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
    print("%.1f" % ((t1 - t0) / 1e3))
