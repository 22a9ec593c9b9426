#!/usr/bin/env bash
# Per-export allow-lists: by certificate CN, by whole DN (config file, RFC
# 2253 form; --export, /A=b/C=d form) and by PSK identity. A client sees and
# opens only its exports; another's export looks like no export at all.
# With --tls on, plaintext clients may use open exports only, and get
# ERR_TLS_REQD for the others.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires openssl nbdinfo
requires_prog tls-raw
CERTS=$TMP/certs
"$DIO_SRC/deploy/make-certs.sh" "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
BOB=bob:$(grep ^bob: "$CERTS/keys.psk" | cut -d: -f2)

for v in a b c d open; do
	mkvol "$TMP/$v.img" 8M
done
cat >"$TMP/dionbd.conf" <<EOT
[server]
tls = on
tls-creds = $CERTS/server
tls-psk-file = $CERTS/keys.psk

[export tenant-c]
path = $TMP/c.img
allow = CN=client2,O=dionbd test
allow = alice

[export open]
path = $TMP/open.img
EOT
start_server_or_fail -v -c "$TMP/dionbd.conf" \
	-e "tenant-a=$TMP/a.img,allow=client:bob" \
	-e "tenant-b=$TMP/b.img,allow=/O=dionbd test/CN=client2,description=B's disk"

# lists WHO CLIENT-ARGS... EXPECTED: the raw client's LIST is exactly EXPECTED.
lists()
{
	local who=$1 want=${*: -1} got
	shift
	set -- "${@:1:$(($# - 1))}"
	got=$(run tls-raw list "$SOCK" "$@" | sort | tr '\n' ' ') || fail "$who: LIST failed"
	[ "$got" = "$want" ] || fail "$who sees exports '$got', want '$want'"
}
lists client -c "$CERTS/client" "open tenant-a "
lists client2 -c "$CERTS/client2" "open tenant-b tenant-c "
lists bob -p "$BOB" "open tenant-a "
lists alice -p "alice:$(grep ^alice: "$CERTS/keys.psk" | cut -d: -f2)" "open tenant-c "

# go WHO EXPORT CLIENT-ARGS...: served; refused: the same with -x.
run tls-raw go "$SOCK" -c "$CERTS/client" -e tenant-a >/dev/null || fail "client: tenant-a"
run tls-raw go "$SOCK" -c "$CERTS/client" -e open >/dev/null || fail "client: open"
run tls-raw go "$SOCK" -c "$CERTS/client2" -e tenant-b >/dev/null || fail "client2: tenant-b"
run tls-raw go "$SOCK" -c "$CERTS/client2" -e tenant-c >/dev/null || fail "client2: tenant-c"
run tls-raw go "$SOCK" -p "$BOB" -e tenant-a >/dev/null || fail "bob: tenant-a"
for e in tenant-b tenant-c; do
	run tls-raw go "$SOCK" -c "$CERTS/client" -e "$e" -x 2>"$TMP/err" ||
		fail "client opened $e"
	grep -q "refused: 0x80000006" "$TMP/err" || fail "client: $e: not 'unknown': $(cat "$TMP/err")"
	run tls-raw go "$SOCK" -p "$BOB" -e "$e" -x 2>/dev/null || fail "bob opened $e"
done
run tls-raw go "$SOCK" -c "$CERTS/client2" -e tenant-a -x 2>/dev/null || fail "client2 opened tenant-a"
# An anonymous TLS client (no certificate) opens only the open export.
mkdir -p "$CERTS/anon" && cp "$CERTS/ca/ca-cert.pem" "$CERTS/anon/"
lists anonymous -c "$CERTS/anon" "open "
run tls-raw go "$SOCK" -c "$CERTS/anon" -e tenant-a -x 2>/dev/null || fail "anonymous opened tenant-a"
grep -q "not on its allow-list" "$SRV_LOG" || fail "the log does not show the refusals"

# libnbd: the right tenant reads its disk, the wrong one is told there is no such export.
U="nbds+unix:///tenant-a?socket=$SOCK"
timeout 20 nbdinfo "$U&tls-certificates=$CERTS/client" >/dev/null || fail "nbdinfo: client: tenant-a"
if timeout 20 nbdinfo "$U&tls-certificates=$CERTS/client2" >"$TMP/out" 2>&1; then
	fail "nbdinfo: client2 opened tenant-a"
fi
grep -qi "no export\|unknown\|not found\|No such" "$TMP/out" || fail "nbdinfo: $(cat "$TMP/out")"

# --tls on: plaintext clients get the open export, and ERR_TLS_REQD for the others.
timeout 20 nbdinfo "nbd+unix:///open?socket=$SOCK" >/dev/null || fail "plaintext: open export refused"
out=$(timeout 20 nbdinfo --list "nbd+unix:///?socket=$SOCK" 2>&1) || fail "plaintext LIST: $out"
grep -q tenant <<<"$out" && fail "plaintext LIST shows tenants' exports: $out"
if timeout 20 nbdinfo "nbd+unix:///tenant-a?socket=$SOCK" >"$TMP/out" 2>&1; then
	fail "plaintext client opened tenant-a"
fi
grep -qi "TLS" "$TMP/out" || fail "plaintext tenant-a: not TLS required: $(cat "$TMP/out")"

run tls-raw go "$SOCK" -c "$CERTS/client" -e open >/dev/null || fail "a good client is not served"
stop_server
