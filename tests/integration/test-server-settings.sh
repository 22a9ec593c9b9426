#!/usr/bin/env bash
# One table of settings (server/settings.c) for the config file and the
# command line: every setting takes the same values as a [server] key and
# as an option, refuses the same bad ones with a message that names it and
# what it accepts, and the command line wins over the file. Checked on real
# daemon starts, through the "setting NAME = VALUE" lines logged at -vv.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"

vol=$TMP/vol.img
mkvol "$vol" 1M
requires ss
BAD_SOCK=$TMP/bad.sock
nerr=0
nstart=0
nbad=0

# Every setting, as the table has it: checked against what the daemon logs.
ALL="unix port bind tcp readonly threads engine max-connections handshake-timeout
max-options max-inflight max-inflight-mb request-timeout stop-timeout readahead
cache-size cache-dirty-limit cache-writeback-age image-locking poll-us poll-yield poll-check submit-batch pool-discard tls tls-creds tls-verify-peer tls-psk-file metrics foreground pid-file
control verbose"
# The settings whose option alone means "on" (--readonly); they take a value as --NAME=VALUE.
FLAGS=" tcp readonly read-only tls-verify-peer foreground "
# Numbers: NAME:MIN:MAX.
NUMBERS="threads:1:1024 max-connections:1:1000000 handshake-timeout:1:3600
max-options:1:1000000 max-inflight:1:4096 max-inflight-mb:32:65536
request-timeout:0:3600 stop-timeout:1:3600 poll-us:0:100000 submit-batch:0:128 port:1:65535 verbose:0:4
cache-size:1:1048576 cache-dirty-limit:1:100 cache-writeback-age:10:3600000"

# problem MESSAGE: record a failed case and go on, so one run shows them all.
problem()
{
	echo "$NAME: FAIL: $*" >&2
	nerr=$((nerr + 1))
}

is_flag()
{
	[[ $FLAGS == *" $1 "* ]]
}

# conf LINE...: a config file with LINEs in [server] (the export is given
# on the command line).
conf()
{
	local f
	f=$(mktemp "$TMP/conf-XXXXXX.ini")
	{
		echo "[server]"
		[ $# = 0 ] || printf '%s\n' "$@"
	} >"$f"
	echo "$f"
}

# as_opts NAME=VALUE...: print the options that give these settings, one a line.
as_opts()
{
	local kv
	for kv in "$@"; do
		if is_flag "${kv%%=*}"; then
			echo "--$kv"
		else
			echo "--${kv%%=*}"
			echo "${kv#*=}"
		fi
	done
}

# start_at SOCKPATH ARGS...: "dionbd ARGS $vol" in the background, waited
# for (10 s at most) until SOCKPATH is a socket: as lib-server.sh's
# start_server, without its -f -U (the settings under test may be those).
start_at()
{
	local i sock=$1
	shift
	SRV_N=$((SRV_N + 1))
	nstart=$((nstart + 1))
	SOCK=$sock
	SRV_LOG=$TMP/server-$SRV_N.log
	URI="nbd+unix:///?socket=$SOCK"
	rm -f "$SOCK"
	"$DIONBD" "$@" "$vol" 2>"$SRV_LOG" >&2 &
	SRV_PID=$!
	for ((i = 0; i < 200; i++)); do
		[ -S "$SOCK" ] && return 0
		if ! kill -0 "$SRV_PID" 2>/dev/null; then
			wait "$SRV_PID" 2>/dev/null || true
			SRV_PID=
			problem "dionbd $*: exited at start: $(tail -n 5 "$SRV_LOG")"
			return 1
		fi
		sleep 0.05
	done
	problem "dionbd $*: no socket after 10 s"
	return 1
}

# took SETTING=SHOWN...: the running daemon's log says "setting SETTING = SHOWN"
# for each (one line per value for bind).
took()
{
	local kv
	for kv in "$@"; do
		grep -Fx "dionbd: debug: setting ${kv%%=*} = ${kv#*=}" "$SRV_LOG" >/dev/null ||
			problem "$WHAT: no 'setting ${kv%%=*} = ${kv#*=}' in the log: $(grep -F "setting ${kv%%=*} =" "$SRV_LOG")"
	done
}

# both [-n] [-t SETTING=SHOWN]... NAME=VALUE[=SHOWN]...: give these settings
# as options, then as config keys; each time the daemon must start, take each
# as SHOWN (default VALUE), serve (-n: not tried) and stop cleanly. -t: what
# to find in the log instead (an alias is logged under its setting's name).
both()
{
	local expect=() kvs=() shown=() kv c sock=$TMP/s.sock end=finish
	local -a opts
	if [ "$1" = -n ]; then
		end=stop_server
		shift
	fi
	while [ "$1" = -t ]; do
		expect+=("$2")
		shift 2
	done
	for kv in "$@"; do
		if [[ ${kv#*=} == *=* ]]; then
			kvs+=("${kv%=*}")
		else
			kvs+=("$kv")
		fi
		shown+=("${kv%%=*}=${kv##*=}")
	done
	[ ${#expect[@]} = 0 ] || shown=("${expect[@]}")
	mapfile -t opts < <(as_opts "${kvs[@]}")
	WHAT="dionbd ${opts[*]}"
	if start_at "$sock" -f -vv -U "$sock" "${opts[@]}"; then
		took "${shown[@]}"
		$end
	fi
	c=$(conf "${kvs[@]/=/ = }")
	WHAT="$c: ${kvs[*]}"
	if start_at "$sock" -f -vv -U "$sock" -c "$c"; then
		took "${shown[@]}"
		$end
	fi
}

# refused NEEDLE... -- ARGS...: "dionbd -f -U BAD_SOCK ARGS $vol" exits non-zero
# within 10 s, listening nowhere, and its stderr holds every NEEDLE.
refused()
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
	timeout --kill-after=2 10 "$DIONBD" -f -U "$BAD_SOCK" "$@" "$vol" >/dev/null 2>"$err" || rc=$?
	if [ "$rc" = 0 ] || [ "$rc" -ge 124 ]; then
		problem "dionbd $*: not refused (status $rc); stderr: $(head -c 500 "$err")"
	fi
	[ ! -e "$BAD_SOCK" ] || problem "dionbd $*: left its socket behind"
	if grep -E 'Sanitizer|runtime error:|Segmentation fault' "$err" >/dev/null; then
		problem "dionbd $*: sanitizer report or crash: $(head -c 2000 "$err")"
	fi
	for n in "${needles[@]}"; do
		grep -F -e "$n" "$err" >/dev/null ||
			problem "dionbd $*: stderr does not say \"$n\": $(head -c 500 "$err")"
	done
}

# bad_value NAME VALUE ACCEPTS: refused as an option and as a key, both
# messages naming the setting, the value and what it accepts.
bad_value()
{
	local c
	if is_flag "$1"; then
		refused "--$1: '$2' is not $3" -- "--$1=$2"
	elif [ "$1" != verbose ]; then	# -v counts: it takes no value
		refused "--$1: '$2' is not $3" -- "--$1" "$2"
	fi
	c=$(conf "$1 = $2")
	refused "$c:2: bad value '$2' for '$1' ($3)" -- -c "$c"
}


# ---- the table, as the daemon reports it ----
start_at "$TMP/s.sock" -f -vv -U "$TMP/s.sock" || fail "cannot start with defaults"
listed=$(sed -n 's/^dionbd: debug: setting \([^ ]*\) = .*/\1/p' "$SRV_LOG" | uniq | tr '\n' ' ')
finish
[ "$listed" = "$(echo $ALL) " ] ||
	problem "the daemon's settings are not those this test knows: '$listed'"
timeout 10 "$DIONBD" --help >"$TMP/help" || fail "--help: status $?"
for s in $ALL; do
	grep -E -e "--$s( |$)" "$TMP/help" >/dev/null || problem "--help does not list --$s"
done

# ---- good values: the same as options and as keys ----
p=$(free_port)
# Every bool word, any case, for the bools that can be on without more.
for w in on off yes no true false 1 0 ON Off YES No True FALSE; do
	case ${w,,} in
	on | yes | true | 1) v=on ;;
	*) v=off ;;
	esac
	# tcp after port and bind, which imply it: on is TCP on 127.0.0.1:$p, off is none
	set -- "readahead=$w=$v" "image-locking=$w=$v" "poll-yield=$w=$v" "poll-check=$w=$v" \
		"pool-discard=$w=$v" "readonly=$w=$v" "port=$p" \
		bind=127.0.0.1 "tcp=$w=$v"
	[ "$v" = on ] || set -- "$@" "tls-verify-peer=$w=off"
	both "$@"
	if [ "$v" = off ] && grep -F "port $p" "$SRV_LOG" >/dev/null; then
		problem "tcp = $w after port: still listening on port $p"
	fi
done
# Every number at both ends of its range (threads: up to 2 reactors).
min=() max=()
for n in $NUMBERS; do
	IFS=: read -r s lo hi <<<"$n"
	case $s in
	port | verbose) continue ;;
	threads) hi=2 ;;
	esac
	min+=("$s=$lo")
	max+=("$s=$hi")
done
# (a client needs more than one option: no serving with max-options = 1)
both -n "${min[@]}"
both "${max[@]}"
both "port=1" "tcp=no=off"
both "port=65535" "tcp=no=off"
# verbose: the key sets the level, each -v adds one.
WHAT="verbose = 2"
start_at "$TMP/s.sock" -f -U "$TMP/s.sock" -c "$(conf "verbose = 2")" && { took verbose=2; finish; }
WHAT="verbose = 1 and -v"
start_at "$TMP/s.sock" -f -U "$TMP/s.sock" -v -c "$(conf "verbose = 1")" && { took verbose=2; finish; }
WHAT="--verbose --verbose"
start_at "$TMP/s.sock" -f -U "$TMP/s.sock" --verbose --verbose && { took verbose=2; finish; }
# Engines (and the alias io_uring) where io_uring works.
both engine=psync
both engine=AUTO=auto
for e in $(test_engines); do
	[ "$e" = psync ] || { both engine=uring; both "engine=io_uring=uring"; }
done
# The aliases read-only and listen, the short options, flags without a value.
both -t readonly=on "read-only=yes"
both -t bind=127.0.0.1 -t bind=::1 "listen=127.0.0.1" "listen=::1" "port=$p" "tcp=off"
WHAT="-rf -t 2"
start_at "$TMP/s.sock" -vv -U "$TMP/s.sock" -rf -t 2 && { took readonly=on foreground=on threads=2; finish; }
# No -t: one reactor per CPU the daemon may run on, its affinity (taskset).
if [ "$(nproc)" -gt 1 ] && command -v taskset >/dev/null; then
	printf '#!/bin/sh\nexec taskset -c 0 "%s" "$@"\n' "$DIONBD" >"$TMP/one-cpu"
	chmod +x "$TMP/one-cpu"
	saved_dionbd=$DIONBD
	DIONBD=$TMP/one-cpu
	WHAT="taskset -c 0 dionbd"
	if start_at "$TMP/s.sock" -f -v -U "$TMP/s.sock"; then
		finish
		grep -F "with 1 reactor(s)" "$SRV_LOG" >/dev/null ||
			problem "$WHAT: not one reactor: $(grep -F "reactor(s)" "$SRV_LOG")"
	fi
	DIONBD=$saved_dionbd
	WHAT="dionbd on $(nproc) CPUs"
	if start_at "$TMP/s.sock" -f -v -U "$TMP/s.sock"; then
		finish
		grep -F "with $(nproc) reactor(s)" "$SRV_LOG" >/dev/null ||
			problem "$WHAT: $(grep -F "reactor(s)" "$SRV_LOG")"
	fi
fi
WHAT="--foreground --readonly --tcp"
start_at "$TMP/s.sock" -vv -U "$TMP/s.sock" --foreground --readonly --tcp --bind 127.0.0.1 -p "$p" &&
	{ took readonly=on tcp=on foreground=on; finish; }
# The metrics page's [ADDR:]PORT, kept as written.
p2=$(free_port)
[ "$p2" != "$p" ] || p2=$(free_port)
both "metrics=$p2"
both "metrics=127.0.0.1:$p2"
if ip -6 addr show lo 2>/dev/null | grep -q 'inet6 ::1'; then
	both "metrics=[::1]:$p2"
fi
# Strings and paths.
both "pid-file=$TMP/pid" "tls-creds=$TMP/nonexistent" "tls=off"
[ ! -e "$TMP/pid" ] || problem "the pid file was left behind"
WHAT="unix = $TMP/k.sock"
start_at "$TMP/k.sock" -f -vv -c "$(conf "unix = $TMP/k.sock")" && { took "unix=$TMP/k.sock"; finish; }
WHAT="--unix $TMP/o.sock"
start_at "$TMP/o.sock" -f -vv --unix "$TMP/o.sock" && { took "unix=$TMP/o.sock"; finish; }
WHAT="foreground = yes"
start_at "$TMP/k.sock" -vv -c "$(conf "unix = $TMP/k.sock" "foreground = yes")" &&
	{ took foreground=on; finish; }
# TLS: tls takes the bool words too.
if command -v openssl >/dev/null; then
	CERTS=$TMP/certs
	"$DIO_SRC/deploy/make-certs.sh" "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
	# (-n: a plaintext client is refused under tls = require)
	both -n -t "tls-psk-file=$CERTS/keys.psk" -t tls=require "tls-psk-file=$CERTS/keys.psk"
	both -n -t "tls-creds=$CERTS/server" -t tls=require "tls-creds=$CERTS/server"
	both tls=on "tls-psk-file=$CERTS/keys.psk"
	both -n "tls=required=require" "tls-creds=$CERTS/server" "tls-verify-peer=on"
	both "tls=yes=on" "tls-creds=$CERTS/server" "tls-verify-peer=TRUE=on"
else
	echo "$NAME: no openssl: tls = on|require not tried" >&2
fi
both tls=off
both "tls=no=off"
both "tls=0=off"

# ---- bad values: refused both ways, named, with what is accepted ----
for n in $NUMBERS; do
	IFS=: read -r s lo hi <<<"$n"
	# (' 5' is refused too, but libinih strips the blank off a value)
	for v in $((hi + 1)) x 5x -1 +5 '' 99999999999999999999999; do
		bad_value "$s" "$v" "a number in [$lo, $hi]"
	done
	[ "$lo" = 0 ] || bad_value "$s" $((lo - 1)) "a number in [$lo, $hi]"
done
for s in readahead image-locking poll-yield poll-check pool-discard readonly tcp tls-verify-peer foreground; do
	for v in maybe 2 '' onn; do
		bad_value "$s" "$v" "on or off"
	done
done
bad_value engine bogus "uring, psync or auto"
bad_value engine '' "uring, psync or auto"
bad_value tls maybe "off, on or require"
for s in unix bind pid-file tls-creds tls-psk-file; do
	bad_value "$s" '' "a non-empty string"
done
for v in x '' 0 65536 127.0.0.1 127.0.0.1: :9100 ::1:9100 '[::1]' '[]:9100' 'a b:9100'; do
	bad_value metrics "$v" "[ADDR:]PORT with PORT in [1, 65535]"
done
refused "frobnicate" -- -c "$(conf "frobnicate = 1")"
refused "frobnicate" -- --frobnicate 1
refused "readahead" -- --readahead

# ---- the command line wins over the file, for every setting ----
c=$(conf "unix = $TMP/k.sock" "port = 1" "bind = 127.0.0.2" "tcp = off" "readonly = on" \
	"threads = 1" "engine = auto" "max-connections = 11" "handshake-timeout = 12" \
	"max-options = 13" "max-inflight = 14" "max-inflight-mb = 32" "request-timeout = 16" \
	"stop-timeout = 17" "readahead = off" "image-locking = off" "poll-us = 19" "poll-yield = off" "poll-check = off" "submit-batch = 0" "pool-discard = off" \
	"tls = on" \
	"tls-psk-file = $TMP/nonexistent.psk" "metrics = 127.0.0.1:1" "foreground = off" \
	"pid-file = $TMP/k.pid" "verbose = 1")
WHAT="the command line over $c"
if start_at "$TMP/o.sock" -c "$c" --unix "$TMP/o.sock" --port "$p" --bind 127.0.0.1 \
	--tcp=on --readonly=off --threads 2 --engine psync --max-connections 21 \
	--handshake-timeout 22 --max-options 23 --max-inflight 24 --max-inflight-mb 33 \
	--request-timeout 26 --stop-timeout 27 --readahead on --image-locking on --poll-us 29 --poll-yield on \
	--poll-check on --submit-batch 5 --pool-discard on --tls off --tls-psk-file "$TMP/other.psk" --metrics "127.0.0.1:$p2" --foreground \
	--pid-file "$TMP/o.pid" -v; then
	took "unix=$TMP/o.sock" "port=$p" bind=127.0.0.2 bind=127.0.0.1 tcp=on readonly=off \
		threads=2 engine=psync max-connections=21 handshake-timeout=22 max-options=23 \
		max-inflight=24 max-inflight-mb=33 request-timeout=26 stop-timeout=27 \
		readahead=on image-locking=on poll-us=29 poll-yield=on poll-check=on submit-batch=5 pool-discard=on tls=off "tls-psk-file=$TMP/other.psk" \
		"metrics=127.0.0.1:$p2" foreground=on "pid-file=$TMP/o.pid" verbose=2
	[ ! -e "$TMP/k.sock" ] || problem "the config's unix socket was created"
	[ -e "$TMP/o.pid" ] || problem "--pid-file: no $TMP/o.pid"
	finish
fi
# foreground: the file says yes, --foreground=no wins: the command detaches.
rm -f "$TMP/s.sock"
if timeout 20 "$DIONBD" -U "$TMP/s.sock" -P "$TMP/d.pid" -c "$(conf "foreground = yes")" \
	--foreground=no "$vol" >/dev/null 2>&1; then
	pid=$(cat "$TMP/d.pid" 2>/dev/null || echo 0)
	if [ "$pid" -gt 0 ] && kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < 200; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		! kill -0 "$pid" 2>/dev/null || problem "the detached daemon $pid ignored SIGTERM"
	else
		problem "--foreground=no: no daemon behind $TMP/d.pid"
	fi
else
	problem "--foreground=no over foreground = yes: did not detach and report success"
fi

echo "$NAME: $nstart starts, $nbad refusals, $nerr problem(s)" >&2
[ "$nerr" = 0 ] || fail "$nerr problem(s) (see the FAIL lines above)"
