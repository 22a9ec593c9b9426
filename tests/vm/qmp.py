#!/usr/bin/env python3
# qmp.py SOCKET COMMAND-JSON...: run QMP commands on a QEMU's monitor socket,
# in order; exit 1 with QEMU's error at the first that fails.
import json
import socket
import sys


def main():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sys.argv[1])
    f = s.makefile("rw")

    def reply():
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                return msg

    json.loads(f.readline())  # the greeting
    for cmd in [{"execute": "qmp_capabilities"}] + [json.loads(a) for a in sys.argv[2:]]:
        f.write(json.dumps(cmd) + "\n")
        f.flush()
        msg = reply()
        if "error" in msg:
            print("qmp: %s: %s" % (cmd["execute"], msg["error"]["desc"]), file=sys.stderr)
            sys.exit(1)


main()
