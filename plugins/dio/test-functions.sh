# Sourced by tests/integration/test-plugin-*.sh: nbdkit dio in captive mode.
# Env (set by ctest, defaulted for a run by hand): DIO_SRC, DIO_BUILD, DIO_TEST_DIR,
# DIO_TEST_ENGINE (uring|psync: test that one; unset: both).
source "$(dirname "${BASH_SOURCE[0]}")/../../tests/integration/lib-common.sh"

PLUGIN=$DIO_BUILD/plugins/dio/nbdkit-dio-plugin.so

requires nbdkit timeout
[ -f "$PLUGIN" ] || skip "$PLUGIN is not built (needs nbdkit-plugin-dev)"
mkdir -p "$DIO_TEST_DIR"
TMP=$(mktemp -d "$DIO_TEST_DIR/$NAME.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# An ASan build of the plugin runs inside an uninstrumented nbdkit: preload
# the runtime into nbdkit only, not into the clients --run starts.
# libstdc++ (librados') goes with it: ASan finds the C++ functions it
# intercepts (__cxa_throw) only in what is loaded when it starts.
NBDKIT_ENV=()
if ldd "$PLUGIN" 2>/dev/null | grep libasan >/dev/null; then
	preload=$(${CC:-cc} -print-file-name=libasan.so)
	if ldd "$PLUGIN" 2>/dev/null | grep 'libstdc++' >/dev/null; then
		preload+=" $(${CC:-cc} -print-file-name=libstdc++.so.6)"
	fi
	NBDKIT_ENV=(LD_PRELOAD="$preload" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
fi

# dio_nbdkit ARGS...: nbdkit -U SOCKET ARGS, bounded in time; a --run command
# runs without the ASan preload. The socket is in a directory of our own:
# with -U -, nbdkit 1.32 leaves its /tmp/nbdkitXXXXXX behind whenever it
# refuses to start (a bad parameter), which the refusal tests do on purpose.
#
# Under the preload, Debian 12's nbdkit sometimes never returns from exit()
# once its --run command has ended (seen with the rbd plugin, whose librados
# threads are still there). In captive mode the first nbdkit runs the
# command and waits for the serving one, its child: it is the serving one
# that hangs, so there the command's status also goes to a file, the
# serving nbdkit writes its PID (-P), and 30 s after the command ended
# both are killed by PID, saying so, and the command's status is the result.
dio_nbdkit()
{
	local args=() prev= st= pf= a pid rc n=0 sd
	sd=$(mktemp -d /tmp/dio-nbdkit.XXXXXX)
	if [ "${#NBDKIT_ENV[@]}" -gt 0 ]; then
		for a in "$@"; do
			[ "$a" != --run ] || st=$TMP/run-status.$BASHPID.$RANDOM
		done
	fi
	for a in "$@"; do
		if [ "$prev" = --run ]; then
			a="unset LD_PRELOAD ASAN_OPTIONS; $a"
			[ -z "$st" ] || a="(
$a
); rc=\$?; echo \$rc > '$st'; exit \$rc"
		fi
		args+=("$a")
		prev=$a
	done
	if [ -z "$st" ]; then
		rc=0
		env "${NBDKIT_ENV[@]}" timeout --kill-after=10 "${DIO_NBDKIT_TIMEOUT:-300}" \
			nbdkit -U "$sd/sock" "${args[@]}" || rc=$?
		rm -rf "$sd"
		return "$rc"
	fi
	pf=$st.pid
	env "${NBDKIT_ENV[@]}" timeout --kill-after=10 "${DIO_NBDKIT_TIMEOUT:-300}" \
		nbdkit -U "$sd/sock" -P "$pf" "${args[@]}" <&0 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		if [ -s "$st" ] && [ $((n += 1)) -gt 300 ]; then
			echo "$NAME: nbdkit did not exit 30 s after its --run command ended" \
			     "(status $(cat "$st")); killed by PID, under the ASan preload" >&2
			dio_nbdkit_kill "$pf"
			pkill -KILL -P "$pid" -x nbdkit 2>/dev/null
			break
		fi
		sleep 0.1
	done
	rc=0
	wait "$pid" || rc=$?
	# The serving nbdkit outlives a first one killed by timeout: not ctest's pipe.
	dio_nbdkit_kill "$pf"
	if [ -s "$st" ] && [ "$rc" -ge 124 ]; then
		rc=$(cat "$st")
	fi
	rm -f "$st" "$pf"
	rm -rf "$sd"
	return "$rc"
}

# dio_nbdkit_kill PIDFILE: SIGKILL the nbdkit whose PID it holds, if still there.
dio_nbdkit_kill()
{
	local spid i
	spid=$(cat "$1" 2>/dev/null) || return 0
	[ -n "$spid" ] && [ "$(cat /proc/"$spid"/comm 2>/dev/null)" = nbdkit ] || return 0
	kill -KILL "$spid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		[ -e /proc/"$spid" ] && [ "$(cut -d' ' -f3 /proc/"$spid"/stat 2>/dev/null)" != Z ] || break
		sleep 0.1
	done
}

# The engines to test: $DIO_TEST_ENGINE, or uring (when it works here) and psync.
test_engines()
{
	if [ -n "${DIO_TEST_ENGINE:-}" ]; then
		echo "$DIO_TEST_ENGINE"
		return
	fi
	if env "${NBDKIT_ENV[@]}" nbdkit "$PLUGIN" --dump-plugin | grep -x dio_uring=yes >/dev/null; then
		echo uring psync
	else
		echo "$NAME: io_uring unavailable here, testing psync only" >&2
		echo psync
	fi
}

# requires_nbdsh: skip unless nbdsh runs (Debian's is python3-libnbd, and
# a python3 earlier in PATH than /usr/bin may lack the nbd module).
requires_nbdsh()
{
	nbdsh_check
	# Helpers for the scripts the tests run in nbdsh and python3.
	cat > "$TMP/prelude.py" <<'PY'
import array, errno, os, struct, sys
try:
    import nbd
except ImportError:
    nbd = None

def pattern(off, n, seed=1):
    """n bytes of 8-byte words that encode (seed, offset): misplaced bytes show."""
    start = off & ~7
    base = (seed << 48) | start
    words = array.array("Q", range(base, base + off + n - start + 8, 8))
    if sys.byteorder != "little":
        words.byteswap()
    return words.tobytes()[off - start:off - start + n]

def expect(cond, what):
    if not cond:
        print("FAIL:", what, file=sys.stderr)
        sys.exit(1)

def unaligned_ok(h):
    """Let libnbd send requests below the advertised minimum block size."""
    h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)

def expect_error(fn, name, what):
    """fn() must fail with errno name (e.g. "EIO")."""
    try:
        fn()
    except nbd.Error as e:
        expect(e.errno == name, "%s: got %s (%s), want %s" % (what, e.errno, e.string, name))
        return
    expect(False, "%s: succeeded, want %s" % (what, name))

FIEMAP_EXTENT_UNWRITTEN = 0x800

def fiemap(path):
    """The file's extents from FIEMAP (after a sync): [(pos, len, unwritten)]."""
    import fcntl
    out, start = [], 0
    with open(path, "rb") as f:
        while True:
            n = 256
            req = bytearray(struct.pack("=QQIIII", start, (1 << 64) - 1, 1, 0, n, 0) + bytes(56 * n))
            fcntl.ioctl(f.fileno(), 0xC020660B, req)      # FS_IOC_FIEMAP, FIEMAP_FLAG_SYNC
            mapped = struct.unpack_from("=I", req, 20)[0]
            last = False
            for i in range(mapped):
                lo, ph, ln, _, _, fl = struct.unpack_from("=QQQQQI", req, 32 + 56 * i)
                out.append((lo, ln, bool(fl & FIEMAP_EXTENT_UNWRITTEN)))
                start = lo + ln
                last = bool(fl & 1)
            if mapped == 0 or last:
                return out

def file_map(path):
    """[(pos, len, kind)] covering the file, kind "data", "zero" (unwritten) or "hole",
    adjacent ranges of one kind merged."""
    size = os.path.getsize(path)
    runs, pos = [], 0
    for lo, ln, unwritten in fiemap(path):
        lo, hi = max(lo, 0), min(lo + ln, size)
        if lo >= hi:
            continue
        if lo > pos:
            runs.append((pos, lo - pos, "hole"))
        runs.append((lo, hi - lo, "zero" if unwritten else "data"))
        pos = hi
    if pos < size:
        runs.append((pos, size - pos, "hole"))
    return merge(runs)

def merge(runs):
    out = []
    for pos, ln, kind in runs:
        if out and out[-1][2] == kind and out[-1][0] + out[-1][1] == pos:
            out[-1] = (out[-1][0], out[-1][1] + ln, kind)
        else:
            out.append((pos, ln, kind))
    return out

def kind_at(runs, pos):
    for lo, ln, kind in runs:
        if lo <= pos < lo + ln:
            return kind
    return None

def allocation_handle(h):
    """A second connection to h's server that negotiated base:allocation."""
    h2 = nbd.NBD()
    h2.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h2.connect_uri(h.get_uri())
    return h2

def file_read(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)
PY
}

# nbdsh_run SCRIPT: the --run command executing SCRIPT (after prelude.py) in nbdsh.
nbdsh_run()
{
	echo "nbdsh -u \"\$uri\" -c \"exec(open('$TMP/prelude.py').read()); exec(open('$1').read())\""
}

# nbdkit_refuses EXPECTED-REGEX PARAMS...: nbdkit dio must fail at startup,
# before running the client, and say EXPECTED-REGEX on stderr. Under the
# ASan preload, Debian 12's nbdkit hangs in exit() when startup fails after
# config (p11-kit's destructor waits on the locale lock); it has printed its
# error by then, so a short bound keeps the check about the message.
nbdkit_refuses()
{
	local want=$1 DIO_NBDKIT_TIMEOUT=${DIO_NBDKIT_TIMEOUT:-300}
	shift
	[ "${#NBDKIT_ENV[@]}" -eq 0 ] || DIO_NBDKIT_TIMEOUT=10
	rm -f "$TMP/ran"
	if dio_nbdkit "$PLUGIN" "$@" --run 'touch "'"$TMP"'/ran"' 2> "$TMP/err"; then
		fail "nbdkit started with: $*"
	fi
	[ ! -e "$TMP/ran" ] || fail "the client ran with: $*"
	grep -Eq "$want" "$TMP/err" || {
		cat "$TMP/err" >&2
		fail "no message matching '$want' for: $*"
	}
	echo "$NAME: $* -> $(grep -E "$want" "$TMP/err" | head -1)"
}
