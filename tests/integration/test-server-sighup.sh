#!/usr/bin/env bash
# SIGHUP re-reads the config file: exports added, removed, changed in place
# (a client of a changed export keeps working); a bad file is refused whole
# with its line and reason logged, and the running set stays.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io nbdinfo
CTL=$DIO_BUILD/server/dionbdctl
[ -x "$CTL" ] || skip "dionbdctl is not built"

for v in a b c; do mkvol "$TMP/$v.img" 16M; done
conf=$TMP/dionbd.conf
C=$TMP/control.sock
write_conf()
{
	printf '[server]\ncontrol = %s\n' "$C" > "$conf"
	cat >> "$conf"
}
write_conf <<EOF2
[export a]
path = $TMP/a.img
description = first
[export b]
path = $TMP/b.img
EOF2
start_server_or_fail -v -c "$conf" -e cli="$TMP/c.img",readonly
for ((i = 0; i < 100; i++)); do [ -S "$C" ] && break; sleep 0.1; done
exports() { timeout 30 "$CTL" -s "$C" --json exports | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    print(e["name"], e.get("description") or "-", "ro" if e["readonly"] else "rw")' | sort; }
[ "$(exports | tr '\n' ' ')" = "a first rw b - rw cli - ro " ] || fail "at start: $(exports)"

# hup_and_wait PATTERN: SIGHUP, then wait for PATTERN in the log (10 s).
hup_and_wait()
{
	local n
	n=$(grep -c "SIGHUP" "$SRV_LOG" || true)
	kill -HUP "$SRV_PID"
	for ((i = 0; i < 100; i++)); do
		grep -q -- "$1" <(tail -n +"$((n + 1))" "$SRV_LOG") && return 0
		sleep 0.1
	done
	fail "no '$1' in the log after SIGHUP"
}

timeout 60 qemu-io -f raw -c "write -P 0x11 0 64k" "$(uri_of a)" >/dev/null || fail "write a"
# b goes, c.img comes as 'new', a's description changes: cli stays (command line).
write_conf <<EOF2
[export a]
path = $TMP/a.img
description = second
[export new]
path = $TMP/c.img
readonly = yes
EOF2
hup_and_wait "applied: 1 export(s) added, 1 removed, 1 changed"
[ "$(exports | tr '\n' ' ')" = "a second rw cli - ro new - ro " ] || fail "after SIGHUP: $(exports)"
timeout 60 qemu-io -f raw -c "read -P 0x11 0 64k" "$(uri_of a)" > "$TMP/qio.out" 2>&1
grep -q 'read 65536' "$TMP/qio.out" || fail "a changed export lost its data: $(cat "$TMP/qio.out")"
nbdinfo "$(uri_of b)" >/dev/null 2>&1 && fail "the removed export is still served"
nbdinfo "$(uri_of new)" >/dev/null || fail "the added export is not served"

# A syntax error: refused whole, line named, nothing changes.
write_conf <<EOF2
[export a]
path = $TMP/a.img
this is not a key value line
[export other]
path = $TMP/b.img
EOF2
hup_and_wait "refused; nothing was changed"
grep -q "dionbd.conf:5: syntax error" "$SRV_LOG" || fail "the bad line is not named: $(tail -3 "$SRV_LOG")"
[ "$(exports | tr '\n' ' ')" = "a second rw cli - ro new - ro " ] || fail "a bad file changed the set: $(exports)"

# A volume that cannot be opened: refused whole as well.
write_conf <<EOF2
[export a]
path = $TMP/a.img
[export missing]
path = $TMP/does-not-exist.img
EOF2
hup_and_wait "nothing was changed"
grep -q "does-not-exist.img" "$SRV_LOG" || fail "the missing file is not named"
[ "$(exports | tr '\n' ' ')" = "a second rw cli - ro new - ro " ] || fail "a bad volume changed the set: $(exports)"
finish a
