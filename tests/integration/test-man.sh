#!/usr/bin/env bash
# The man pages: dionbd(8), dionbd.conf(5), dionbdctl(8) and dionbd-pool(8)
# (mdoc sources in man/) are clean under mandoc -Tlint, every level down to
# style, and under groff -ww; nbdkit-dio-plugin(1), which pod2man generates,
# has no warning. dionbd(8) documents every option of dionbd --help,
# dionbd.conf(5) every [server] key (the same names), and dionbd-pool(8)
# every command of its usage text.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-common.sh"
requires mandoc

man=$DIO_SRC/man
pages=("$man/dionbd.8" "$man/dionbd.conf.5" "$man/dionbdctl.8" "$man/dionbd-pool.8")
bad=0

# lint PAGE MANDOC-ARGS...: mandoc's messages on PAGE, less the references
# to pages this machine lacks (nbdinfo(1) without libnbd-bin, say).
lint()
{
	local page=$1
	shift
	mandoc -Tlint "$@" "$page" 2>/dev/null | grep -v 'referenced manual not found' || true
}

for p in "${pages[@]}"; do
	[ -f "$p" ] || { echo "$NAME: missing $p" >&2; bad=1; continue; }
	out=$(lint "$p")
	if command -v groff >/dev/null; then
		out+=$(groff -ww -z -mdoc "$p" 2>&1)
	fi
	if [ -n "$out" ]; then
		echo "$NAME: $(basename "$p"):" >&2
		echo "$out" >&2
		bad=1
	fi
done

plugin=$DIO_BUILD/plugins/dio/nbdkit-dio-plugin.1
if [ -f "$plugin" ]; then
	# pod2man's output is generated: its long input lines are mandoc STYLE
	# messages, not faults of the page.
	out=$(lint "$plugin" -W warning)
	if command -v groff >/dev/null; then
		out+=$(groff -ww -z -man "$plugin" 2>&1)
	fi
	if [ -n "$out" ]; then
		echo "$NAME: nbdkit-dio-plugin.1:" >&2
		echo "$out" >&2
		bad=1
	fi
else
	echo "$NAME: $plugin not built (no nbdkit-plugin-dev or pod2man): not checked" >&2
fi
[ "$bad" = 0 ] || fail "man pages with lint messages (above)"

# Every command of dionbd-pool's usage text in dionbd-pool(8), as Cm name
# (volume's: Cm volume name).
pooltool=$DIO_BUILD/tools/dionbd-pool
if [ -x "$pooltool" ]; then
	cmds=$({ "$pooltool" 2>&1 || true; } | sed -n 's/^.*dionbd-pool \(volume [a-z]*\|[a-z]*\).*/\1/p')
	[ -n "$cmds" ] || fail "no commands in dionbd-pool's usage"
	while read -r cmd; do
		grep -q -F -e "Cm $cmd" "$man/dionbd-pool.8" ||
			fail "dionbd-pool(8) does not document $cmd"
	done <<< "$cmds"
fi

# Every long option of --help in dionbd(8), as mdoc writes it (Fl \-name);
# every setting (the options from --unix to --verbose) a key in dionbd.conf(5).
dionbd=$DIO_BUILD/server/dionbd
[ -x "$dionbd" ] || skip "the daemon is not built ($dionbd)"
opts=$("$dionbd" --help | grep -o -e '--[a-z][a-z0-9-]*' | sort -u)
[ -n "$opts" ] || fail "no options in dionbd --help"
for o in $opts; do
	name=${o#--}
	grep -q -F -e "Fl \\-${name//-/\\-}" "$man/dionbd.8" ||
		fail "dionbd(8) does not document $o"
	case $name in
	export | config | version | help) continue ;;
	esac
	grep -q -F -e "Cm $name" "$man/dionbd.conf.5" ||
		fail "dionbd.conf(5) does not document the key $name"
done
echo "$NAME: ok ($(echo "$opts" | wc -l) options checked)"
