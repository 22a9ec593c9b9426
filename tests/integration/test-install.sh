#!/usr/bin/env bash
# Installing: `cmake --install` into a scratch root puts every file where
# Debian expects it, the installed daemon runs and serves, the installed
# example config is one dionbd accepts, and systemd-analyze verify passes
# on the installed units (run against the installed binary and pages).
# Then `cpack -G DEB` builds a .deb with the same files, the Depends a fresh
# Debian 12 needs, its maintainer scripts and conffile; the daemon unpacked
# from it (dpkg-deb -x, never installed on this machine) runs.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires cmake

root=$TMP/root
DESTDIR=$root cmake --install "$DIO_BUILD" --prefix /usr >"$TMP/install.log" 2>&1 ||
	fail "cmake --install: $(tail -5 "$TMP/install.log")"

# The files, by the layout of a Debian package.
expect=(
	usr/sbin/dionbd
	etc/dionbd/dionbd.conf
	lib/systemd/system/dionbd.service
	lib/systemd/system/dionbd.socket
	usr/share/man/man8/dionbd.8
	usr/share/man/man5/dionbd.conf.5
	usr/share/man/man8/dionbdctl.8
)
[ -x "$DIO_BUILD/server/dionbdctl" ] && expect+=(usr/sbin/dionbdctl)
plugindir=
if [ -f "$DIO_BUILD/plugins/dio/nbdkit-dio-plugin.so" ]; then
	plugindir=$(pkg-config --variable=plugindir nbdkit)
	expect+=("${plugindir#/}/nbdkit-dio-plugin.so")
fi
[ -f "$DIO_BUILD/plugins/dio/nbdkit-dio-plugin.1" ] &&
	expect+=(usr/share/man/man1/nbdkit-dio-plugin.1)
for f in "${expect[@]}"; do
	[ -f "$root/$f" ] || fail "cmake --install did not install /$f"
done
[ -x "$root/usr/sbin/dionbd" ] || fail "/usr/sbin/dionbd is not executable"

# The installed daemon: its version, and a scratch file served and read.
DIONBD=$root/usr/sbin/dionbd
want="dionbd $(sed -n 's/^project(dionbd VERSION \([0-9.]*\).*/\1/p' "$DIO_SRC/CMakeLists.txt")"
got=$("$DIONBD" --version) || fail "the installed dionbd --version failed"
[ "$got" = "$want" ] || fail "installed dionbd --version: '$got', want '$want'"

# The installed example config, its paths moved into the scratch directory
# (and its TCP port to a free one): dionbd accepts it and serves its export.
conf=$TMP/dionbd.conf
port=$(free_port)
sed -e "s|/var/lib/dionbd/|$TMP/|g" -e "s|/run/dionbd/|$TMP/|g" \
	-e "s|^port = 10809|port = $port|" "$root/etc/dionbd/dionbd.conf" >"$conf"
grep -q "^path = $TMP/example.img" "$conf" || fail "the example config has no example export"
mkvol "$TMP/example.img" 64M
start_server_or_fail -c "$conf"
check_served example
stop_server

# systemd-analyze verify on the installed units, run against the installed
# binary (ExecStart moved into the scratch root) and man pages (MANPATH).
if command -v systemd-analyze >/dev/null; then
	mkdir -p "$TMP/units"
	for u in dionbd.service dionbd.socket; do
		sed "s|/usr/sbin/dionbd|$root/usr/sbin/dionbd|" "$root/lib/systemd/system/$u" \
			>"$TMP/units/$u"
	done
	MANPATH=$root/usr/share/man systemd-analyze verify \
		"$TMP/units/dionbd.service" "$TMP/units/dionbd.socket" >"$TMP/verify.log" 2>&1 ||
		fail "systemd-analyze verify: $(cat "$TMP/verify.log")"
else
	echo "$NAME: systemd-analyze is not installed: units not verified" >&2
fi

# The .deb, built into the scratch directory.
command -v cpack >/dev/null && command -v dpkg-deb >/dev/null ||
	skip "no cpack or dpkg-deb: the .deb is not checked (the install is)"
[ -f "$DIO_BUILD/CPackConfig.cmake" ] || fail "no CPackConfig.cmake in $DIO_BUILD"
(cd "$TMP" && timeout 300 cpack -G DEB --config "$DIO_BUILD/CPackConfig.cmake" \
	-B "$TMP/pkg") >"$TMP/cpack.log" 2>&1 || fail "cpack -G DEB: $(tail -5 "$TMP/cpack.log")"
deb=$(ls "$TMP"/pkg/dionbd_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "cpack made no dionbd_*.deb: $(tail -5 "$TMP/cpack.log")"

dpkg-deb -I "$deb" >"$TMP/info" || fail "dpkg-deb -I $deb"
depends=$(sed -n 's/^ Depends: //p' "$TMP/info")
[ -n "$depends" ] || fail "the .deb has no Depends: $(cat "$TMP/info")"
for d in libc6 liburing2 libevent-core libssl3 libinih1 libsystemd0 adduser nbdkit; do
	case ", $depends" in
	*", $d"*) ;;
	*) fail "the .deb's Depends lacks $d: $depends" ;;
	esac
done
for f in postinst prerm postrm conffiles; do
	grep -q "^ .* $f " "$TMP/info" || fail "the .deb has no $f: $(cat "$TMP/info")"
done
dpkg-deb -e "$deb" "$TMP/control" || fail "dpkg-deb -e"
for f in postinst prerm postrm; do
	sh -n "$TMP/control/$f" || fail "the .deb's $f is not valid sh"
done
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./||' >"$TMP/contents"
for f in "${expect[@]}"; do
	# dionbdctl: only if it was built when cpack ran, as for the install above
	grep -q -x -F "$f" "$TMP/contents" || fail "the .deb lacks /$f"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$TMP/conffiles"
grep -q -x /etc/dionbd/dionbd.conf "$TMP/conffiles" ||
	fail "/etc/dionbd/dionbd.conf is not a conffile: $(cat "$TMP/conffiles")"

# The daemon as the package has it (stripped), unpacked, not installed.
dpkg-deb -x "$deb" "$TMP/x" || fail "dpkg-deb -x"
DIONBD=$TMP/x/usr/sbin/dionbd
got=$("$DIONBD" --version) || fail "the packaged dionbd does not run"
[ "$got" = "$want" ] || fail "packaged dionbd --version: '$got', want '$want'"
start_server_or_fail -r "$TMP/example.img"
finish
echo "$NAME: ok ($(basename "$deb"), $(stat -c %s "$deb") bytes; Depends: $depends)"
