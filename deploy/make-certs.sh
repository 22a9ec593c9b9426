#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# make-certs.sh [-n HOSTNAME] [-d DAYS] [--test-extras] DIR
#
# Make the keys of a test deployment of dionbd in DIR (EC P-256 keys, fast):
#
#   DIR/ca/       ca-cert.pem ca-key.pem             the test CA (keep ca-key.pem safe)
#   DIR/server/   ca-cert.pem server-cert.pem server-key.pem
#                                                    for: dionbd --tls-creds DIR/server
#   DIR/client/   ca-cert.pem client-cert.pem client-key.pem   CN=client
#   DIR/client2/  the same for a second tenant, CN=client2
#                 (libnbd: tls-certificates=DIR/client;
#                  qemu: --object tls-creds-x509,id=tls0,endpoint=client,dir=DIR/client)
#   DIR/keys.psk  psktool format "identity:hexkey": identities alice and bob
#                 (dionbd --tls-psk-file; libnbd tls-psk-file= with tls-username=;
#                  qemu: tls-creds-psk,dir=D with D/keys.psk, username=alice)
#
# The server certificate names HOSTNAME (default: localhost) and 127.0.0.1
# and ::1, so nbds://HOSTNAME works with hostname checking.
#
# --test-extras adds what a test of the failure cases needs:
#   DIR/rogue/    a client certificate (CN=client) from another CA
#   DIR/expired/  a client certificate (CN=client) from the CA, expired
#   DIR/wrong.psk alice with a different key
#   DIR/rogue-ca/ ca-cert.pem of the other CA (a client that trusts the wrong CA)
set -euo pipefail

usage()
{
	sed -n '3,28p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

host=localhost
days=365
extras=false
while [ $# -gt 0 ]; do
	case $1 in
	-n) host=$2; shift 2 ;;
	-d) days=$2; shift 2 ;;
	--test-extras) extras=true; shift ;;
	-h|--help) usage 0 ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || usage
dir=$1
command -v openssl >/dev/null || { echo "make-certs.sh: openssl is not installed" >&2; exit 1; }

umask 077
mkdir -p "$dir"/{ca,server,client,client2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# newkey FILE: an EC P-256 private key.
newkey()
{
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# mkca DIR CN: a self-signed CA in DIR.
mkca()
{
	newkey "$1/ca-key.pem"
	openssl req -new -x509 -key "$1/ca-key.pem" -out "$1/ca-cert.pem" -days "$days" \
		-subj "/O=dionbd test/CN=$2" \
		-addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}

# sign CADIR KEY CERT SUBJECT EXTFILE [DAYS]: a certificate for KEY signed by the CA.
sign()
{
	openssl req -new -key "$2" -subj "$4" -out "$tmp/req.csr" 2>/dev/null
	openssl x509 -req -in "$tmp/req.csr" -CA "$1/ca-cert.pem" -CAkey "$1/ca-key.pem" \
		-set_serial "0x$(openssl rand -hex 8)" -days "${6:-$days}" -extfile "$5" \
		-out "$3" 2>/dev/null
}

cat >"$tmp/server.ext" <<EOT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$host,IP:127.0.0.1,IP:::1
EOT
cat >"$tmp/client.ext" <<EOT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOT

mkca "$dir/ca" "dionbd test CA"
newkey "$dir/server/server-key.pem"
sign "$dir/ca" "$dir/server/server-key.pem" "$dir/server/server-cert.pem" \
	"/O=dionbd test/CN=$host" "$tmp/server.ext"
cp "$dir/ca/ca-cert.pem" "$dir/server/"

# client DIR CN [CADIR]: a client credentials directory.
client()
{
	mkdir -p "$1"
	newkey "$1/client-key.pem"
	sign "${3:-$dir/ca}" "$1/client-key.pem" "$1/client-cert.pem" "/O=dionbd test/CN=$2" \
		"$tmp/client.ext"
	cp "$dir/ca/ca-cert.pem" "$1/"
}
client "$dir/client" client
client "$dir/client2" client2

printf 'alice:%s\nbob:%s\n' "$(openssl rand -hex 32)" "$(openssl rand -hex 32)" \
	>"$dir/keys.psk"

if $extras; then
	mkdir -p "$dir/rogue-ca"
	mkca "$dir/rogue-ca" "rogue CA"
	client "$dir/rogue" client "$dir/rogue-ca"
	rm -f "$dir/rogue-ca/ca-key.pem"
	# openssl x509 cannot back-date; certtool can.
	mkdir -p "$dir/expired"
	newkey "$dir/expired/client-key.pem"
	cat >"$tmp/expired.tmpl" <<EOT
cn = client
organization = dionbd test
tls_www_client
signing_key
encryption_key
activation_date = "2020-01-01 00:00:00 UTC"
expiration_date = "2020-02-01 00:00:00 UTC"
EOT
	if command -v certtool >/dev/null; then
		certtool --generate-certificate --load-privkey "$dir/expired/client-key.pem" \
			--load-ca-certificate "$dir/ca/ca-cert.pem" \
			--load-ca-privkey "$dir/ca/ca-key.pem" --template "$tmp/expired.tmpl" \
			--outfile "$dir/expired/client-cert.pem" >/dev/null 2>&1
	else
		# Without certtool: one valid for a day only a second ago is not possible;
		# leave the directory without a certificate so a test can tell.
		rm -f "$dir/expired/client-key.pem"
	fi
	[ -f "$dir/expired/client-cert.pem" ] && cp "$dir/ca/ca-cert.pem" "$dir/expired/"
	printf 'alice:%s\n' "$(openssl rand -hex 32)" >"$dir/wrong.psk"
fi
# Readable by the user who made them only (umask 077); the certificates may be public.
chmod 644 "$dir"/*/*-cert.pem
echo "make-certs.sh: credentials in $dir (server: --tls-creds $dir/server)"
