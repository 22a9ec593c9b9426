#!/usr/bin/env bash
# Certificate revocation (ca-crl.pem in --tls-creds, --tls-verify-peer): a CRL
# made with "openssl ca -gencrl" revokes client2. Without the CRL both
# clients are served (so it is the CRL that refuses); with it client is
# served and client2 fails the handshake, learns no export and reads no data,
# and the server goes on serving (also without --tls-verify-peer when an
# allow-list names client2). A CRL past its nextUpdate or signed by
# another CA fails closed; a ca-crl.pem that is not a CRL stops the daemon at start.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires openssl nbdinfo nbdcopy
requires_prog tls-raw
CERTS=$TMP/certs
"$DIO_SRC/deploy/make-certs.sh" "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
SECRET=tenant-secret-volume-c41d

# mkca_db DIR CACERT CAKEY: an "openssl ca" database in DIR (config DIR/ca.cnf).
mkca_db()
{
	mkdir -p "$1"
	: >"$1/index.txt"
	echo 01 >"$1/crlnumber"
	cat >"$1/ca.cnf" <<EOT
[ ca ]
default_ca = dio_ca
[ dio_ca ]
database = $1/index.txt
crlnumber = $1/crlnumber
certificate = $2
private_key = $3
default_md = sha256
default_crl_days = 30
EOT
}

# creds_with CRL: a copy of the server's credentials with CRL as ca-crl.pem
# (none if CRL is empty); prints its path.
N_CREDS=0
creds_with()
{
	local d
	N_CREDS=$((N_CREDS + 1))
	d=$TMP/server-creds-$N_CREDS
	mkdir -p "$d"
	cp "$CERTS/server/"*.pem "$d/"
	[ -z "$1" ] || cp "$1" "$d/ca-crl.pem"
	echo "$d"
}

# The CA revokes client2 (by its certificate, so by its serial).
DB=$TMP/ca-db
mkca_db "$DB" "$CERTS/ca/ca-cert.pem" "$CERTS/ca/ca-key.pem"
openssl ca -config "$DB/ca.cnf" -revoke "$CERTS/client2/client-cert.pem" \
	-crl_reason keyCompromise >"$TMP/revoke.out" 2>&1 ||
	fail "openssl ca -revoke: $(cat "$TMP/revoke.out")"
openssl ca -config "$DB/ca.cnf" -gencrl -out "$TMP/crl.pem" >"$TMP/gencrl.out" 2>&1 ||
	fail "openssl ca -gencrl: $(cat "$TMP/gencrl.out")"
serial=$(openssl x509 -in "$CERTS/client2/client-cert.pem" -noout -serial | cut -d= -f2)
openssl crl -in "$TMP/crl.pem" -noout -text | grep -i "Serial Number: $serial" >/dev/null ||
	fail "the CRL does not list client2 ($serial)"
# The same CA's CRL, but its nextUpdate long past.
openssl ca -config "$DB/ca.cnf" -gencrl -crl_lastupdate 20200101000000Z \
	-crl_nextupdate 20200201000000Z -out "$TMP/crl-old.pem" >"$TMP/gencrl.out" 2>&1 ||
	fail "openssl ca -gencrl (expired): $(cat "$TMP/gencrl.out")"
# An empty CRL from an unrelated CA (same subject name as ours, other key).
mkdir -p "$TMP/other-ca"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
	-out "$TMP/other-ca/ca-key.pem" 2>/dev/null || fail "openssl genpkey"
openssl req -new -x509 -key "$TMP/other-ca/ca-key.pem" -out "$TMP/other-ca/ca-cert.pem" \
	-days 30 -subj "/O=dionbd test/CN=dionbd test CA" \
	-addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || fail "openssl req (other CA)"
mkca_db "$TMP/other-db" "$TMP/other-ca/ca-cert.pem" "$TMP/other-ca/ca-key.pem"
openssl ca -config "$TMP/other-db/ca.cnf" -gencrl -out "$TMP/crl-other.pem" \
	>"$TMP/gencrl.out" 2>&1 || fail "openssl ca -gencrl (other CA): $(cat "$TMP/gencrl.out")"

# tls_uri WHO: the default export (the secret one's volume) of the current
# server with DIR/WHO's certificate; the refusals name no export themselves.
tls_uri()
{
	echo "nbds+unix:///?socket=$SOCK&tls-certificates=$CERTS/$1"
}

# served WHO: nbdinfo with DIR/WHO's certificate opens the secret export over TLS.
served()
{
	local out
	kill -0 "$SRV_PID" 2>/dev/null || fail "the daemon died"
	out=$(timeout 20 nbdinfo "nbds+unix:///$SECRET?socket=$SOCK&tls-certificates=$CERTS/$1" 2>&1) ||
		fail "$1 is not served: $out"
	grep -q "with TLS" <<<"$out" || fail "$1: nbdinfo did not use TLS: $out"
	grep -q "export-size: 16777216" <<<"$out" || fail "$1: wrong export: $out"
}

# refused WHAT CMD...: CMD fails and its output names no export.
refused()
{
	refused_quietly "$1" "$SECRET" "${@:2}"
}

f=$TMP/vol.img
mkvol "$f" 16M
head -c 1M /dev/urandom >"$TMP/pat"
dd if="$TMP/pat" of="$f" bs=1M seek=3 conv=notrunc status=none

# 1. No CRL: the revoked certificate is still good to the server.
live=$(creds_with "")
start_server_or_fail -v --tls require --tls-creds "$live" --tls-verify-peer \
	--control "$TMP/ctl.sock" -e "$SECRET=$f" "$f"
served client
served client2
run tls-raw go "$SOCK" -c "$CERTS/client2" -e "$SECRET" >/dev/null ||
	fail "without a CRL, client2 is not served (raw client)"
# 1b. The CRL arrives while serving: dionbdctl reload-tls makes it count.
cp "$TMP/crl.pem" "$live/ca-crl.pem"
timeout 20 "$DIO_BUILD/server/dionbdctl" -s "$TMP/ctl.sock" reload-tls >"$TMP/reload.out" 2>&1 ||
	fail "dionbdctl reload-tls: $(cat "$TMP/reload.out")"
served client
refused "nbdinfo as client2 revoked by a reloaded CRL" \
	timeout 20 nbdinfo "$(tls_uri client2)"
stop_server

# 2. With the CRL: client served, client2 refused at the handshake.
start_server_or_fail -v --tls require --tls-creds "$(creds_with "$TMP/crl.pem")" \
	--tls-verify-peer -e "$SECRET=$f" "$f"
served client
timeout 60 nbdcopy "$(tls_uri client)" "$TMP/back" ||
	fail "nbdcopy from the server as client"
cmp "$TMP/back" "$f" || fail "client read back other data"
rm -f "$TMP/back"

refused "nbdinfo as revoked client2" \
	timeout 20 nbdinfo "$(tls_uri client2)"
served client
refused "nbdinfo --list as revoked client2" \
	timeout 20 nbdinfo --list "$(tls_uri client2)"
served client
: >"$TMP/stolen"
refused "nbdcopy as revoked client2" \
	timeout 20 nbdcopy "$(tls_uri client2)" "$TMP/stolen"
[ ! -s "$TMP/stolen" ] || fail "the revoked client2 copied $(stat -c %s "$TMP/stolen") bytes"
served client
for v in 1.3 1.2; do
	refused "raw client as revoked client2 (TLS $v)" \
		run tls-raw go "$SOCK" -c "$CERTS/client2" -e "$SECRET" -v "$v"
	run tls-raw go "$SOCK" -c "$CERTS/client" -e "$SECRET" -v "$v" >/dev/null ||
		fail "client is not served over TLS $v"
done
grep -q "certificate revoked" "$SRV_LOG" ||
	fail "the log does not say the certificate was revoked"
served client
stop_server

# Without --tls-verify-peer, an allow-list makes the server ask for
# certificates: client is on the list and sees the export; client2, also on
# the list, is refused at the handshake (not let in as anonymous).
start_server_or_fail -v --tls require --tls-creds "$(creds_with "$TMP/crl.pem")" \
	-e "$SECRET=$f,allow=client:client2" "$f"
out=$(timeout 20 nbdinfo --list "$(tls_uri client)" 2>&1) || fail "allow-list: client: $out"
grep -q "$SECRET" <<<"$out" || fail "allow-list: client does not see its export: $out"
refused "allow-list: nbdinfo --list as revoked client2" \
	timeout 20 nbdinfo --list "$(tls_uri client2)"
grep -q "certificate revoked" "$SRV_LOG" ||
	fail "allow-list: the log does not say the certificate was revoked"
served client
stop_server

# 3. A CRL past its nextUpdate: OpenSSL fails closed, even for client.
start_server_or_fail -v --tls require --tls-creds "$(creds_with "$TMP/crl-old.pem")" \
	--tls-verify-peer -e "$SECRET=$f" "$f"
refused "client with an expired CRL" \
	timeout 20 nbdinfo "$(tls_uri client)"
refused "client2 with an expired CRL" \
	timeout 20 nbdinfo "$(tls_uri client2)"
grep -q "CRL has expired" "$SRV_LOG" || fail "the log does not say the CRL has expired"
kill -0 "$SRV_PID" 2>/dev/null || fail "the daemon died"
stop_server

# 4. Only a CRL from another CA (of the same name): its signature does not
# verify with our CA's key, and OpenSSL fails closed.
start_server_or_fail -v --tls require --tls-creds "$(creds_with "$TMP/crl-other.pem")" \
	--tls-verify-peer -e "$SECRET=$f" "$f"
refused "client with a CRL of another CA" \
	timeout 20 nbdinfo "$(tls_uri client)"
grep -q "CRL signature failure" "$SRV_LOG" ||
	fail "the log does not say the CRL signature fails"
kill -0 "$SRV_PID" 2>/dev/null || fail "the daemon died"
stop_server

# 5. A ca-crl.pem that is no CRL: the daemon refuses to start.
echo "not a CRL" >"$TMP/junk.pem"
if start_server -v --tls require --tls-creds "$(creds_with "$TMP/junk.pem")" \
	--tls-verify-peer "$f" 2>/dev/null; then
	fail "the daemon started with a ca-crl.pem that is not a CRL"
fi
grep -q "ca-crl.pem" "$SRV_LOG" || fail "the start failure does not name ca-crl.pem"
check_log
SRV_LOG=
