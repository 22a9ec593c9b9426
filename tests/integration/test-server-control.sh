#!/usr/bin/env bash
# The control socket and dionbdctl: list, add, remove (with a live client on
# the export), set read-only, resize, log level; errors named and the right
# exit status; only the daemon's uid (or root) may use the socket.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io nbdinfo python3 timeout
CTL=$DIO_BUILD/server/dionbdctl
[ -x "$CTL" ] || skip "dionbdctl is not built"
# Debian's python3, where python3-libnbd is (a python3 earlier on PATH may not have it)
PY=/usr/bin/python3
"$PY" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed for $PY"

mkvol "$TMP/a.img" 64M
mkvol "$TMP/b.img" 32M
C=$TMP/control.sock
start_server_or_fail -v --control "$C" -e a="$TMP/a.img"
wait_ctl

[ "$(stat -c %a "$C")" = 600 ] || fail "the control socket is mode $(stat -c %a "$C"), not 600"
expect_ctl 0 'version +0\.' info
expect_ctl 0 '^a +.*a\.img +67108864 +no +0' exports
ctl --json exports | python3 -c 'import json,sys; e=json.load(sys.stdin); assert e[0]["name"]=="a" and e[0]["size"]==67108864, e'

# Add an export and use it.
expect_ctl 0 '^b +.*b\.img +33554432' add-export b "$TMP/b.img" --description "added live"
timeout 60 qemu-io -f raw -c "write -P 0x5a 1M 64k" "$(uri_of b)" >/dev/null || fail "write to the added export"
timeout 60 qemu-io -f raw -c "read -P 0x5a 1M 64k" "$(uri_of b)" > "$TMP/qio.out" 2>&1
grep -q 'read 65536' "$TMP/qio.out" || fail "read back from the added export: $(cat "$TMP/qio.out")"
ctl --json exports | python3 -c '
import json, sys
b = [e for e in json.load(sys.stdin) if e["name"] == "b"][0]["counters"]
assert b["writes"] >= 1 and b["bytes_written"] >= 65536 and b["reads"] >= 1, b
assert b["bytes_read"] >= 65536 and b["errors"] == 0, b' || fail "the counters of b did not move"
expect_ctl 0 'NAME +PATH +SIZE +RO +CONNS +READS +WRITES' exports
nbdinfo --list "$URI" > "$TMP/list.out" 2>&1 || fail "nbdinfo --list: $(cat "$TMP/list.out")"
grep -q "added live" "$TMP/list.out" || fail "LIST does not show the added export: $(cat "$TMP/list.out")"

# Errors: named, exit 1, the daemon still serving.
expect_ctl 1 'exists already' add-export b "$TMP/b.img"
expect_ctl 1 "no export 'nope'" remove-export nope
mkdir "$TMP/dir"
expect_ctl 1 'dir.*directory' add-export d "$TMP/dir"
expect_ctl 2 'unknown command' frobnicate
expect_ctl 2 'not a size' resize a 12Q
expect_ctl 1 'not err, warn' log-level loud
# (the third: an escape of bytes that are not UTF-8, which the parser's
# message quotes; fuzz-control found that it got no reply at all)
printf '{"jsonrpc":"2.0","method":"export.list","id":7,"params":{"bogus":1}}\n{oops\n{"i\\\331\277#\336\202\n' |
	python3 -c '
import socket, sys, json
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read())
s.settimeout(10)
f = s.makefile()
a, b, c = json.loads(f.readline()), json.loads(f.readline()), json.loads(f.readline())
assert a["error"]["code"] == -32602 and "bogus" in a["error"]["message"] and a["id"] == 7, a
assert b["error"]["code"] == -32700 and b["id"] is None, b
assert c["error"]["code"] == -32700 and c["id"] is None, c' "$C" || fail "JSON-RPC errors"

# A client stays connected to b while b is removed: its next request gets
# ESHUTDOWN, it is closed within the timeout, and b is gone for new clients.
"$PY" - "$(uri_of b)" "$TMP/client.out" <<'PY' &
import nbd, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
out = open(sys.argv[2], "w")
print("connected", file=out, flush=True)
for _ in range(100):
    if open(sys.argv[2]).read().count("go"):
        break
    time.sleep(0.1)
try:
    h.pread(4096, 0)
    print("read ok", file=out, flush=True)
except nbd.Error as e:
    print("error", e.errnum, e.string, file=out, flush=True)
time.sleep(6)    # stays connected: the deadline must close it
PY
client=$!
for ((i = 0; i < 100; i++)); do grep -q connected "$TMP/client.out" 2>/dev/null && break; sleep 0.1; done
expect_ctl 0 'unix#[0-9]+ +- +b +' connections
expect_ctl 0 'connections +1' remove-export b --timeout 2
echo go >> "$TMP/client.out"
for ((i = 0; i < 50; i++)); do grep -q error "$TMP/client.out" && break; sleep 0.1; done
grep -q "error.*$(python3 -c 'import errno; print(errno.ESHUTDOWN)')" "$TMP/client.out" ||
	fail "the client of a removed export did not get ESHUTDOWN: $(cat "$TMP/client.out")"
sleep 3	# past the 2 s deadline, the client still holding on
ctl connections > "$TMP/conns.out"
grep -q ' b ' "$TMP/conns.out" && fail "the removed export's client is still connected after the deadline"
grep -q "deadline passed" "$SRV_LOG" || fail "closing at the deadline is not logged"
wait "$client" || true
nbdinfo "$(uri_of b)" >/dev/null 2>&1 && fail "the removed export is still served"
expect_ctl 0 '^a ' exports
grep -q "export 'b' removed" "$SRV_LOG" || fail "the removal is not logged"

# Read-only and resize.
expect_ctl 0 '^a .* yes ' set-readonly a on
timeout 60 qemu-io -f raw -c "write 0 4k" "$(uri_of a)" >/dev/null 2>&1 &&
	fail "a write succeeded on an export set read-only"
expect_ctl 0 '^a .* no ' set-readonly a off
expect_ctl 0 '^a .*134217728' resize a 128M
[ "$(nbdinfo --size "$(uri_of a)")" = 134217728 ] || fail "nbdinfo does not see the new size"
[ "$(stat -c %s "$TMP/a.img")" = 134217728 ] || fail "the file was not resized"
timeout 60 qemu-io -f raw -c "read -P 0 100M 1M" "$(uri_of a)" > "$TMP/qio.out" 2>&1
grep -q 'read 1048576' "$TMP/qio.out" || fail "the grown part does not read as zeros: $(cat "$TMP/qio.out")"
expect_ctl 0 'log_level +debug' log-level debug

# Another uid is refused even if the socket's mode would let it in.
if id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
	chmod 666 "$C"
	chmod 755 "$TMP"
	if timeout 10 setpriv --reuid=nobody --regid=nogroup --clear-groups "$CTL" -s "$C" info \
		> "$TMP/nobody.out" 2>&1; then
		fail "a peer of another uid was served: $(cat "$TMP/nobody.out")"
	fi
	grep -q "refused a peer" "$SRV_LOG" || fail "the refused peer is not logged"
	chmod 600 "$C"
fi
finish a
[ ! -e "$C" ] || fail "the control socket was left behind"
