#!/usr/bin/env bash
# STARTTLS by the NBD spec: nothing negotiated before it survives it
# (structured replies, meta contexts); plaintext pipelined behind it is never
# taken for TLS (STARTTLS + GO or + ClientHello in one write: dropped);
# --tls require answers ERR_TLS_REQD and drops a plaintext EXPORT_NAME;
# --tls off refuses STARTTLS with ERR_POLICY; --tls on serves both kinds.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires openssl nbdinfo
requires_prog tls-raw
CERTS=$TMP/certs
"$DIO_SRC/deploy/make-certs.sh" "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
f=$TMP/vol.img
mkvol "$f" 8M

start_server_or_fail -v --tls on --tls-creds "$CERTS/server" "$f"
run tls-raw reset "$SOCK" -c "$CERTS/client" || fail "state reset"
run tls-raw inject "$SOCK" || fail "STARTTLS injection"
grep -q "pipelined behind STARTTLS" "$SRV_LOG" || fail "the log does not show the injection"
timeout 20 nbdinfo "nbd+unix:///?socket=$SOCK" | grep -q "without TLS" ||
	fail "--tls on: a plaintext client is not served"
timeout 20 nbdinfo "nbds+unix:///?socket=$SOCK&tls-certificates=$CERTS/client" |
	grep -q "with TLS" || fail "--tls on: a TLS client is not served"
check_served
stop_server

start_server_or_fail -v --tls require --tls-creds "$CERTS/server" "$f"
run tls-raw require "$SOCK" || fail "--tls require"
run tls-raw go "$SOCK" -c "$CERTS/client" >/dev/null || fail "--tls require: TLS client"
stop_server

start_server_or_fail "$f"
if timeout 20 nbdinfo "nbds+unix:///?socket=$SOCK&tls-certificates=$CERTS/client" \
	>"$TMP/out" 2>&1; then
	fail "--tls off: a TLS client was served"
fi
run tls-raw go "$SOCK" -c "$CERTS/client" -x 2>"$TMP/out" && fail "--tls off: STARTTLS acknowledged"
grep -q "0x80000002" "$TMP/out" || fail "--tls off: STARTTLS not ERR_POLICY: $(cat "$TMP/out")"
finish
