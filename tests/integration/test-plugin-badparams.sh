#!/usr/bin/env bash
# nbdkit dio: bad parameters stop nbdkit at startup with a clear message.
source "${DIO_SRC:-$(dirname "$0")/../..}/plugins/dio/test-functions.sh"

mkfile "$TMP/disk" 1M
# A short bound under the ASan preload for the refusals below, as
# nbdkit_refuses sets for itself (test-functions.sh says why).
[ "${#NBDKIT_ENV[@]}" -eq 0 ] || DIO_NBDKIT_TIMEOUT=10
mkdir "$TMP/dir"

bad() { nbdkit_refuses "$@"; }

bad 'must supply the file=' readonly=true
bad 'No such file or directory' file="$TMP/missing"
bad 'is a directory' file="$TMP/dir"
bad 'engine=bogus: unknown engine' file="$TMP/disk" engine=bogus
bad 'unknown parameter .colour.' file="$TMP/disk" colour=blue
bad 'readonly' file="$TMP/disk" readonly=perhaps
bad 'queue-depth' file="$TMP/disk" queue-depth=0
bad 'queue-depth' file="$TMP/disk" queue-depth=lots
bad 'pool-size' file="$TMP/disk" pool-size=1
bad 'neither a regular file nor a block device' file=/dev/null

# tmpfs refused O_DIRECT before Linux 6.6: then a clear message at startup;
# on a newer kernel the plugin serves the file like any other.
shm=
for d in /dev/shm /run /tmp; do
	if [ -d "$d" ] && [ -w "$d" ] && [ "$(stat -f -c %T "$d")" = tmpfs ]; then
		shm=$d
		break
	fi
done
if [ -z "$shm" ]; then
	echo "$NAME: no writable tmpfs here: tmpfs case not tested"
	exit 0
fi
t=$(mktemp "$shm/dio-plugin-test.XXXXXX")
trap 'rm -rf "$TMP" "$t"' EXIT
truncate -s 1M "$t"
if python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT))' "$t" \
	2>/dev/null; then
	dio_nbdkit "$PLUGIN" file="$t" --run 'nbdinfo --size "$uri"' > "$TMP/size" ||
		fail "tmpfs with O_DIRECT (Linux >= 6.6): not served"
	[ "$(cat "$TMP/size")" = 1048576 ] || fail "tmpfs: size $(cat "$TMP/size")"
	echo "$NAME: $shm is tmpfs with O_DIRECT support (Linux $(uname -r)): served"
else
	bad 'O_DIRECT' file="$t"
fi
