#!/usr/bin/env bash
# STARTTLS with X.509 credentials (--tls require): libnbd (nbdinfo, nbdcopy),
# qemu-img and qemu-io with tls-creds-x509, and a raw client pinning the
# protocol version: TLS 1.0 and 1.1 refused, 1.2 and 1.3 served. A
# plaintext client is not served.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires openssl nbdinfo nbdcopy
requires_prog tls-raw
CERTS=$TMP/certs
"$DIO_SRC/deploy/make-certs.sh" "$CERTS" >/dev/null || fail "deploy/make-certs.sh"

# tls_served: the daemon is alive and serves a good TLS client.
tls_served()
{
	kill -0 "$SRV_PID" 2>/dev/null || fail "the daemon died"
	run tls-raw go "$SOCK" -c "$CERTS/client" >/dev/null || fail "a good TLS client is not served"
}

f=$TMP/vol.img
mkvol "$f" 64M
start_server_or_fail -v --tls require --tls-creds "$CERTS/server" "$f"
U="nbds+unix:///?socket=$SOCK&tls-certificates=$CERTS/client"

out=$(timeout 20 nbdinfo "$U") || fail "nbdinfo over TLS: $out"
grep -q "with TLS" <<<"$out" || fail "nbdinfo did not use TLS: $out"
grep -q "export-size: 67108864" <<<"$out" || fail "nbdinfo: wrong size: $out"

# Data through TLS both ways, with records of every size (small and 32 MiB requests).
head -c 24M /dev/urandom >"$TMP/src"
timeout 120 nbdcopy --request-size=$((4 << 20)) "$TMP/src" "$U" || fail "nbdcopy to the server"
timeout 120 nbdcopy --request-size=$((32 << 20)) "$U" "$TMP/back" || fail "nbdcopy from the server"
cmp -n $((24 << 20)) "$TMP/src" "$TMP/back" || fail "data read back over TLS differs"
cmp -n $((24 << 20)) "$TMP/src" "$f" || fail "data on the volume differs"

# A plaintext client gets nothing.
if timeout 20 nbdinfo "nbd+unix:///?socket=$SOCK" >"$TMP/plain.out" 2>&1; then
	fail "a plaintext client was served"
fi
grep -q "TLS\|not supported\|refused" "$TMP/plain.out" ||
	fail "unexpected plaintext failure: $(cat "$TMP/plain.out")"

# Protocol versions.
for v in 1.0 1.1; do
	run tls-raw go "$SOCK" -c "$CERTS/client" -v "$v" -x 2>"$TMP/v.err" ||
		fail "TLS $v was accepted"
done
for v in 1.2 1.3; do
	out=$(run tls-raw go "$SOCK" -c "$CERTS/client" -v "$v") || fail "TLS $v refused"
	grep -q "^TLSv$v " <<<"$out" || fail "TLS $v: negotiated $out"
done

if command -v qemu-img >/dev/null && command -v qemu-io >/dev/null; then
	obj="tls-creds-x509,id=tls0,endpoint=client,dir=$CERTS/client"
	img="driver=nbd,server.type=unix,server.path=$SOCK,tls-creds=tls0,tls-hostname=localhost"
	timeout 30 qemu-img info --object "$obj" --image-opts "$img" >"$TMP/qi.out" 2>&1 ||
		fail "qemu-img info over TLS: $(cat "$TMP/qi.out")"
	grep -q "64 MiB" "$TMP/qi.out" || fail "qemu-img info: $(cat "$TMP/qi.out")"
	timeout 30 qemu-io --object "$obj" --image-opts "$img" \
		-c 'write -P 0x5a 1M 192k' -c 'read -P 0x5a 1M 192k' -c 'read -P 0 40M 64k' \
		>"$TMP/qio.out" 2>&1 || fail "qemu-io over TLS: $(cat "$TMP/qio.out")"
	grep -q "Pattern verification failed" "$TMP/qio.out" &&
		fail "qemu-io: $(cat "$TMP/qio.out")"
else
	echo "$NAME: qemu-img/qemu-io not installed: qemu part skipped" >&2
fi

grep -q "TLS TLSv1.3" "$SRV_LOG" || fail "the log shows no TLS 1.3 session"
tls_served
stop_server
