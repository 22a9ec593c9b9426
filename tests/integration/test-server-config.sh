#!/usr/bin/env bash
# The daemon's command line and config file (-c): every bad input is refused
# promptly with a non-zero status and a message naming the problem; good
# config files serve what they say; the command line wins over the file.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"

vol=$TMP/vol.img
vol2=$TMP/vol2.img
mkvol "$vol" 1M
mkvol "$vol2" 1M
mkdir -p "$TMP/adir"
BAD_SOCK=$TMP/bad.sock
nbad=0
nerr=0

# log_has TEXT: the daemon's log says TEXT within 5 s (the socket can be up
# before the startup lines are written).
log_has()
{
	local i
	for ((i = 0; i < 100; i++)); do
		grep -F "$1" "$SRV_LOG" >/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# problem MESSAGE: record a failed case and go on, so one run shows them all.
problem()
{
	echo "$NAME: FAIL: $*" >&2
	nerr=$((nerr + 1))
}

# bad NEEDLE... -- ARGS...: "dionbd -f -U BAD_SOCK ARGS" must exit non-zero
# within 10 s, without a crash, listening nowhere, and its stderr must hold
# every NEEDLE (a fixed string; "re:ERE" for a regular expression).
bad()
{
	local needles=() n rc=0 err
	while [ "$1" != -- ]; do
		needles+=("$1")
		shift
	done
	shift
	nbad=$((nbad + 1))
	err=$TMP/bad-$nbad.err
	rm -f "$BAD_SOCK"
	timeout --kill-after=2 10 "$DIONBD" -f -U "$BAD_SOCK" "$@" >/dev/null 2>"$err" || rc=$?
	if [ "$rc" = 0 ]; then
		problem "dionbd $*: accepted (exit 0); stderr: $(head -c 500 "$err")"
	elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		problem "dionbd $*: still running after 10 s (accepted the input?); stderr: $(head -c 500 "$err")"
	elif [ "$rc" -gt 128 ]; then
		problem "dionbd $*: killed by signal $((rc - 128)); stderr: $(head -c 500 "$err")"
	fi
	if grep -E 'Sanitizer|runtime error:|Segmentation fault|Assertion .* failed' "$err" >/dev/null; then
		problem "dionbd $*: sanitizer report or crash: $(head -c 2000 "$err")"
	fi
	[ ! -e "$BAD_SOCK" ] || problem "dionbd $*: left its socket behind"
	for n in "${needles[@]}"; do
		if [[ $n == re:* ]]; then
			grep -E -e "${n#re:}" "$err" >/dev/null && continue
		else
			grep -F -e "$n" "$err" >/dev/null && continue
		fi
		problem "dionbd $*: stderr does not say '$n': $(head -c 500 "$err")"
	done
}

# ini NAME: write stdin to $TMP/NAME.ini and print its path.
ini()
{
	cat > "$TMP/$1.ini"
	echo "$TMP/$1.ini"
}

# ---- bad command lines ----
bad "--poll-us" "' 5'" -- --poll-us ' 5' "$vol"
bad "--readahead" "'maybe'" -- --readahead maybe "$vol"
# Over-long lines (libinih's buffer is 200 bytes): named for their own
# line, and the lines after them still counted right.
c=$(ini longcomment <<EOF
[server]
# $(printf '%0250d' 0)
stop-timeout = x
[export]
path = $vol
EOF
)
bad "$c:2:" "longer than" -- -c "$c"
c=$(ini longspaces <<EOF
[server]
stop-timeout = 7$(printf '%400s' '')
[export]
path = $vol
EOF
)
bad "$c:2:" "longer than" -- -c "$c"
c=$(ini afterlong <<EOF
[server]
threads = 1
; $(printf '%0196d' 0)
[export]
path = $vol
readonly = maybe
EOF
)
bad "$c:6:" "readonly" -- -c "$c"
bad "--request-timeout" "'3601'" -- --request-timeout 3601 "$vol"
bad "request-timeout" "'-1'" -- -c "$(ini rtneg <<EOF
[server]
request-timeout = -1
[export]
path = $vol
EOF
)"
bad "--bogus" -- --bogus "$vol"
bad "--port" "'0'" -- --port 0 "$vol"
bad "--port" "'70000'" -- --port 70000 "$vol"
bad "--port" "'abc'" -- --port abc "$vol"
bad "--threads" "'0'" -- --threads 0 "$vol"
bad "--engine" "'bogus'" -- --engine bogus "$vol"
bad "--poll-us" "'-1'" -- --poll-us -1 "$vol"
bad "--poll-us" "'100001'" -- --poll-us 100001 "$vol"
bad "--poll-us" "'x'" -- --poll-us x "$vol"
bad "--max-connections" "'0'" -- --max-connections 0 "$vol"
bad "--handshake-timeout" "'0'" -- --handshake-timeout 0 "$vol"
bad "--tls" "'bogus'" -- --tls bogus "$vol"
bad "one FILE at most" -- "$vol" "$vol2"
bad "nothing to serve" --
bad "$TMP/nonexistent.img" "No such file" -- "$TMP/nonexistent.img"
bad "$TMP/adir" "directory" -- "$TMP/adir"
bad "--export 'noequals'" "NAME=PATH" -- -e noequals
bad "--export 'empty='" "empty path" -- -e "empty="
bad "'dup'" "defined twice" -- -e "dup=$vol" -e "dup=$vol2"
bad "--export 'x=$vol,bogus'" "'bogus'" -- -e "x=$vol,bogus"
bad "--tls require" "--tls-creds" -- --tls require "$vol"
bad "--tls-verify-peer" -- --tls-verify-peer "$vol"
bad "re:requires an argument.*'?p'?" -- -p

# ---- bad config files ----
bad "$TMP/nonexistent.ini" "No such file" -- -c "$TMP/nonexistent.ini"
c=$(ini section <<EOF
[export]
path = $vol
[bogus]
x = 1
EOF
)
bad "$c:4:" "[bogus]" -- -c "$c"
c=$(ini key <<EOF
[server]
frobnicate = 1
[export]
path = $vol
EOF
)
bad "$c:2:" "frobnicate" -- -c "$c"
c=$(ini export-key <<EOF
[export]
path = $vol
colour = blue
EOF
)
bad "$c:3:" "colour" -- -c "$c"
for kv in "port = x" "threads = 0" "poll-us = 200000" "readonly = maybe" \
	"engine = bogus" "tls = maybe" "max-inflight = 0" "verbose = 9"; do
	c=$(ini value <<EOF
[server]
$kv
[export]
path = $vol
EOF
)
	bad "$c:2:" "'${kv#* = }'" "'${kv%% = *}'" -- -c "$c"
done
c=$(ini export-ro <<EOF
[export]
path = $vol
readonly = maybe
EOF
)
bad "$c:3:" "'maybe'" -- -c "$c"
c=$(ini nopath <<EOF
[export]
path = $vol
[export nopath]
readonly = yes
EOF
)
bad "$c" "'nopath'" "no path" -- -c "$c"
c=$(ini syntax <<EOF
[server]
threads = 1
this line has no equals sign
[export]
path = $vol
EOF
)
bad "$c:3:" -- -c "$c"
# A syntax error followed by an error of another kind: the message for the
# first bad line must be about that line, not about the later one.
c=$(ini syntax2 <<EOF
[server]
this line has no equals sign
frobnicate = 1
[export]
path = $vol
EOF
)
bad "$c:2:" -- -c "$c"
if grep -F "$c:2:" "$TMP/bad-$nbad.err" | grep -F frobnicate >/dev/null; then
	problem "config: line 2 (no '=') is reported with line 3's error: $(cat "$TMP/bad-$nbad.err")"
fi
c=$(ini bracket <<EOF
[server
threads = 1
[export]
path = $vol
EOF
)
bad "$c:1:" -- -c "$c"
if grep -F "$c:1:" "$TMP/bad-$nbad.err" | grep -F "unknown section []" >/dev/null; then
	problem "config: '[server' (no ']') reported as: $(cat "$TMP/bad-$nbad.err")"
fi
c=$(ini emptypath <<EOF
[export]
path =
EOF
)
bad "re:$c:2:|empty" -- -c "$c"
c=$(ini dup <<EOF
[export]
path = $vol
EOF
)
bad "''" "defined twice" -- -c "$c" "$vol2"
c=$(ini tls <<EOF
[server]
tls = require
[export]
path = $vol
EOF
)
bad "--tls-creds" -- -c "$c"
c=$(ini badvol <<EOF
[export]
path = $TMP/nonexistent.img
EOF
)
bad "$TMP/nonexistent.img" -- -c "$c"

# Two bad lines: the message is the first line's, with its number.
c=$(ini two <<EOF
[server]
threads = 0
port = x
[export]
path = $vol
EOF
)
bad "$c:2:" -- -c "$c"
if grep -F "$c:2:" "$TMP/bad-$nbad.err" | grep -F "'port'" >/dev/null; then
	problem "config: line 2 (threads = 0) is reported with line 3's error: $(cat "$TMP/bad-$nbad.err")"
fi
echo "$NAME: $nbad bad-input cases, $nerr problem(s)" >&2

# ---- good command lines and config files ----
# nbdsh is python3-libnbd's: a python3 earlier in PATH may lack the module.
have_nbdsh=false
if command -v nbdsh >/dev/null; then
	if nbdsh -c pass >/dev/null 2>&1; then
		have_nbdsh=true
	elif PATH=/usr/bin:$PATH nbdsh -c pass >/dev/null 2>&1; then
		export PATH=/usr/bin:$PATH
		have_nbdsh=true
	fi
fi
$have_nbdsh || echo "$NAME: nbdsh does not run: reads only, no write round trip" >&2

# roundtrip: write a pattern at 64 KiB of the default export, read it back.
roundtrip()
{
	if $have_nbdsh; then
		timeout 30 nbdsh -u "$URI" -c '
buf = b"dionbd-config" * 512
h.pwrite(buf, 65536)
assert h.pread(len(buf), 65536) == buf
h.flush()
' || fail "write and read back"
	fi
	check_served
}

for v in --version --help; do
	timeout 10 "$DIONBD" $v > "$TMP/out" 2>&1 || fail "dionbd $v: status $?"
	grep -i dionbd "$TMP/out" >/dev/null || fail "dionbd $v printed: $(cat "$TMP/out")"
done
grep -F -- --poll-us "$TMP/out" >/dev/null || fail "--help does not list --poll-us"

desc="Read-only test disk, do not write"
c=$(ini good <<EOF
# a comment
; another
[server]
poll-us = 0
threads = 1
max-inflight = 8

[export]
path = $vol

[export ro]
path = $vol2
readonly = yes
description = $desc
EOF
)
start_server_or_fail -v -c "$c"
log_has "with 1 reactor(s)" || fail "threads = 1 not used"
if command -v nbdinfo >/dev/null; then
	nbdinfo --list "$URI" > "$TMP/list" || fail "nbdinfo --list"
	grep -F "$desc" "$TMP/list" >/dev/null || fail "no description in: $(cat "$TMP/list")"
	nbdinfo --json "$(uri_of ro)" | grep '"is_read_only": true' >/dev/null ||
		fail "export ro is not read-only"
	nbdinfo --json "$URI" | grep '"is_read_only": false' >/dev/null ||
		fail "the default export is read-only"
fi
roundtrip
check_served ro
finish
! $have_nbdsh || cmp -n 6656 -i 65536:0 "$vol" <(printf 'dionbd-config%.0s' {1..512}) ||
	fail "the write did not reach $vol"
[ "$(head -c 1M "$vol2" | tr -d '\0' | wc -c)" = 0 ] || fail "read-only $vol2 changed"

for p in 0 100000; do
	start_server_or_fail --poll-us "$p" "$vol"
	roundtrip
	finish
done
# The command line beats the config file's poll-us both ways.
c=$(ini poll <<EOF
[server]
poll-us = 100000
[export]
path = $vol
EOF
)
start_server_or_fail --poll-us 0 -c "$c"
roundtrip
finish

# ---- the command line wins over the config file ----
c=$(ini override <<EOF
[server]
readonly = no
threads = 1
engine = uring
unix = $TMP/from-config.sock
[export]
path = $vol
EOF
)
start_server_or_fail -vv -r -t 2 --engine psync -c "$c"
[ ! -e "$TMP/from-config.sock" ] || fail "-U did not replace the config's unix ="
log_has "with 2 reactor(s)" || fail "-t 2 did not beat threads = 1"
grep -E "reactor [0-9]+: engine psync" "$SRV_LOG" >/dev/null ||
	fail "--engine psync did not beat engine = uring"
if grep -E "reactor [0-9]+: engine (io_)?uring" "$SRV_LOG" >/dev/null; then
	fail "a reactor uses uring despite --engine psync"
fi
run server-raw readonly "$SOCK" || fail "-r did not beat readonly = no"
if command -v nbdinfo >/dev/null; then
	nbdinfo --json "$URI" | grep '"is_read_only": true' >/dev/null ||
		fail "-r: the export is not read-only"
fi
finish

# A TCP port from the config replaced by -p (127.0.0.1 only).
if command -v nbdinfo >/dev/null && command -v ss >/dev/null; then
	p1=$(free_port)
	p2=$(free_port)
	if [ "$p1" != 0 ] && [ "$p2" != 0 ] && [ "$p1" != "$p2" ]; then
		c=$(ini port <<EOF
[server]
listen = 127.0.0.1
port = $p1
[export]
path = $vol
EOF
)
		if start_server -p "$p2" -c "$c"; then
			timeout 20 nbdinfo --size "nbd://127.0.0.1:$p2/" >/dev/null ||
				fail "-p $p2: nothing served there"
			if timeout 20 nbdinfo --size "nbd://127.0.0.1:$p1/" >/dev/null 2>&1; then
				fail "the config's port $p1 is served despite -p $p2"
			fi
			finish
		elif grep -F "in use" "$SRV_LOG" >/dev/null; then
			echo "$NAME: ports $p1/$p2 taken meanwhile, TCP case not run" >&2
		else
			fail "cannot start with a config port and -p"
		fi
	fi
fi

# Comments after values (docs/dionbd.md, "Config file"): ' ;' starts one,
# as in the docs' example; '#' there is part of the value, so a number
# followed by '# ...' is a bad value, named as such.
c=$(ini inline <<EOF
[server]
threads = 1               ; reactor threads
poll-us = 500             ; adaptive polling cap in microseconds; 0 = off
[export]                  ; the default export ""
path = $vol
description = disk #1
EOF
)
if start_server -c "$c"; then
	if command -v nbdinfo >/dev/null; then
		nbdinfo --list "$URI" 2>/dev/null | grep -F 'disk #1' >/dev/null ||
			problem "a '#' inside a config value did not reach the description"
	fi
	finish
else
	problem "a config with ' ;' comments after values, as in docs/dionbd.md, is refused"
fi
bad "hashcomment.ini:2:" "bad value '1   # x'" "threads" -- -c "$(ini hashcomment <<EOF
[server]
threads = 1   # x
[export]
path = $vol
EOF
)"
# One export, two paths: refused, not the last one silently kept.
bad "twopaths.ini:4:" "second path" -- -c "$(ini twopaths <<EOF
[export]
path = $vol
[export]
path = $vol
EOF
)"

[ "$nerr" = 0 ] || fail "$nerr problem(s) (see the FAIL lines above)"
