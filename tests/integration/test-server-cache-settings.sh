#!/usr/bin/env bash
# The block cache's writeback settings reach the cache: with
# --cache-writeback-age 100 data written without FLUSH is in the file within
# a second, with the default (2 s) it is not yet; with --cache-dirty-limit 10
# (of a 4 MiB cache) writing 1 MiB without FLUSH has started writeback (the
# default 50% starts it only past 1 MiB); the config file's keys do the same.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
nbdsh_check

f=$TMP/vol.img

# written KIB WAIT: write KIB KiB of 0x5a at 0 through the cache, no FLUSH,
# wait WAIT seconds; print how many KiB of it the file holds.
written()
{
	VOL=$f KIB=$1 WAIT=$2 nbdsh -u "$(uri_of wb)" -c '
import os, time
n = int(os.environ["KIB"]) << 10
h.pwrite(b"\x5a" * n, 0)
time.sleep(float(os.environ["WAIT"]))
fd = os.open(os.environ["VOL"], os.O_RDONLY)
data = os.pread(fd, n, 0)
os.close(fd)
print(sum(1 for i in range(0, n, 1024) if data[i:i + 1024] == b"\x5a" * 1024))
'
}

# age LABEL ARGS...: got = the KiB of 64 written in the file after 1 s with these options.
age()
{
	local label=$1
	shift
	mkvol "$f" 8M
	start_server_or_fail -v "$@" -e "wb=$f,cache=writeback"
	got=$(written 64 1) || fail "$label: the write"
	stop_server
}

age "age 100 ms" --cache-writeback-age 100
[ "$got" = 64 ] || fail "--cache-writeback-age 100: $got of 64 KiB in the file after 1 s"
age "default age"
[ "$got" = 0 ] || fail "default age (2 s): $got KiB in the file after 1 s already"
grep -q "dirty limit 50%, writeback after 2000 ms" "$SRV_LOG" ||
	fail "the log does not give the defaults: $(grep 'block cache' "$SRV_LOG")"

# The dirty limit, from the config file this time.
mkvol "$f" 8M
cat >"$TMP/c.conf" <<CONF
[server]
cache-size = 4
cache-dirty-limit = 10
CONF
start_server_or_fail -v -c "$TMP/c.conf" -e "wb=$f,cache=writeback"
got=$(written 1024 0.5) || fail "dirty limit: the write"
stop_server
grep -q "dirty limit 10%" "$SRV_LOG" || fail "cache-dirty-limit from the file not used"
[ "$got" -ge 512 ] || fail "--cache-dirty-limit 10: only $got of 1024 KiB written back"
mkvol "$f" 8M
start_server_or_fail -v --cache-size 4 -e "wb=$f,cache=writeback"
got0=$(written 1024 0.5) || fail "default dirty limit: the write"
stop_server
[ "$got0" = 0 ] || fail "default dirty limit: $got0 KiB written back already"
echo "$NAME: age 100 ms: 64 of 64 KiB; dirty limit 10%: $got of 1024 KiB written back, 50%: $got0"
