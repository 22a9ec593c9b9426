#!/usr/bin/env bash
# bench/nbd-load against the real daemon, through libnbd and raw (-R):
# one pass (-p) writes every 4 KiB block of a volume once, and every block
# then holds one of the client's slot patterns, whole (the data went where
# the request said, the requests framed right); a pass of reads, with FUA
# writes and FLUSHes mixed in, ends with no error; so does a -R read run
# against another server (nbdkit memory); and 1 MiB writes through -R,
# more than the socket takes at once, land whole.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
LOAD=$DIO_BUILD/bench/nbd-load
[ -x "$LOAD" ] || skip "$LOAD is not built (libnbd-dev missing at build time?)"
requires nbdcopy python3

mkvol "$TMP/a" 4M
mkvol "$TMP/b" 4M
mkvol "$TMP/c" 64M
start_server_or_fail -e a="$TMP/a" -e b="$TMP/b" -e c="$TMP/c"

# check_pass MODE EXPORT BYTES: every 4 KiB block of EXPORT (BYTES long)
# holds one of the (at most 16) slots' patterns, whole.
check_pass()
{
	nbdcopy "$(uri_of "$2")" "$TMP/copy-$1" || fail "$1: nbdcopy"
	python3 - "$TMP/copy-$1" "$3" <<'PY' || fail "$1: the volume does not hold what the pass wrote"
import sys
d = open(sys.argv[1], "rb").read()
pats = {0x5a ^ k for k in range(16)}  # the slots of -q 16 at most
bad = [i for i in range(0, len(d), 4096) if len(set(d[i:i + 4096])) != 1 or d[i] not in pats]
if len(d) != int(sys.argv[2]) or bad:
    sys.exit("%d bytes, %d blocks not one slot's pattern (first at %s)" % (len(d), len(bad), bad[:1]))
PY
}

for mode in libnbd raw; do
	v=a flag=()
	[ "$mode" = raw ] && v=b flag=(-R)
	out=$("$LOAD" "${flag[@]}" -p -w 100 -q 8 -t 60 "$(uri_of $v)") ||
		fail "$mode: the write pass failed: $out"
	grep -q " errors=0" <<<"$out" || fail "$mode: write pass: $out"
	# one pass of a 4 MiB export: 1024 requests (run-pool.sh counts by ios=)
	grep -q " ios=1024 secs=" <<<"$out" || fail "$mode: write pass, not 1024 ios: $out"
	check_pass "$mode" "$v" $((4 << 20))
	out=$("$LOAD" "${flag[@]}" -p -w 0 -q 8 -t 60 "$(uri_of $v)") || fail "$mode: the read pass failed: $out"
	grep -q " errors=0" <<<"$out" || fail "$mode: read pass: $out"
	out=$("$LOAD" "${flag[@]}" -c 2 -T 1 -w 50 -f -F 16 -q 4 -t 0.5 "$(uri_of $v)") ||
		fail "$mode: mixed FUA and FLUSH failed: $out"
	grep -Eq " flushes=[1-9][0-9]* errors=0" <<<"$out" || fail "$mode: mixed: $out"
	echo "$NAME: $mode: $out"
done
# 1 MiB writes, 16 in flight: more than the socket takes at once, so -R
# sends part of a batch and queues the next requests behind the rest.
out=$("$LOAD" -R -p -b 1048576 -w 100 -q 16 -t 60 "$(uri_of c)") || fail "raw, 1 MiB: $out"
grep -q " errors=0" <<<"$out" || fail "raw, 1 MiB: $out"
check_pass raw-1m c $((64 << 20))
finish a

if command -v nbdkit >/dev/null; then
	out=$(timeout 60 nbdkit -U "$TMP/k.sock" memory 1M \
		--run "'$LOAD' -R -w 0 -q 4 -t 0.3 \"\$uri\"" 2>&1) || fail "-R against nbdkit memory: $out"
	grep -q " errors=0" <<<"$out" || fail "-R against nbdkit memory: $out"
	echo "$NAME: nbdkit memory, raw: $out"
fi
