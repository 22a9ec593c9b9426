#!/usr/bin/env bash
# The Prometheus page (--metrics): a real parser (python3-prometheus-client)
# takes it with no traffic and under load, and its counters move by what
# real clients did: qemu-io's reads and writes, nbdinfo's BLOCK_STATUS,
# errors on a read-only export, clients refused by the connection cap,
# dropped at the handshake deadline or for a protocol error, and TLS
# handshakes that fail.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"
requires qemu-io nbdinfo nbdsh nbdcopy curl
# nbdsh runs "python3": the system one has libnbd's bindings.
if ! nbdsh -c pass >/dev/null 2>&1; then
	export PATH=/usr/bin:$PATH
	nbdsh -c pass >/dev/null 2>&1 || skip "nbdsh does not run (python3-libnbd)"
fi

# The parser is Debian's python3 package: the first python3 that has it.
PY=
for p in python3 /usr/bin/python3; do
	if command -v "$p" >/dev/null && "$p" -c 'import prometheus_client.parser' 2>/dev/null; then
		PY=$p
		break
	fi
done
[ -n "$PY" ] || skip "no python3 with prometheus_client (python3-prometheus-client)"

# The checks, in Python: "check.py URL PHASE [ARGS]" parses the page and
# exits 1 with the reasons when a check of PHASE fails.
cat >"$TMP/check.py" <<'PY'
import os, sys, time, urllib.request
from prometheus_client.parser import text_string_to_metric_families

url, phase, args = sys.argv[1], sys.argv[2], sys.argv[3:]
problems = []

def check(ok, what):
    if not ok:
        problems.append(what)

def fetch():
    with urllib.request.urlopen(url, timeout=10) as r:
        check(r.status == 200, "status %d" % r.status)
        ct = r.headers.get("Content-Type", "")
        check(ct.startswith("text/plain; version=0.0.4"), "Content-Type: " + ct)
        return r.read().decode()

def parse(text):
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    vals = {}
    for f in fams.values():
        for s in f.samples:
            vals[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return fams, vals

def v(vals, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    if key not in vals:
        problems.append("no sample %s%s" % (name, labels))
        return 0
    return vals[key]

CMDS = ["READ", "WRITE", "FLUSH", "TRIM", "CACHE", "WRITE_ZEROES", "BLOCK_STATUS"]
ERRS = ["EIO", "ENOSPC", "EINVAL", "EPERM", "ENOMEM", "ENOTSUP", "ESHUTDOWN", "EOVERFLOW"]
TYPES = {
    "dionbd_requests": "counter", "dionbd_request_errors": "counter",
    "dionbd_read_bytes": "counter", "dionbd_written_bytes": "counter",
    "dionbd_requests_in_flight": "gauge", "dionbd_request_duration_seconds": "histogram",
    "dionbd_connections_open": "gauge", "dionbd_connections_accepted": "counter",
    "dionbd_connections_refused": "counter", "dionbd_connections_dropped": "counter",
    "dionbd_tls_handshake_failures": "counter", "dionbd_reactor_busy_seconds": "counter",
    "dionbd_buffer_pool_used_bytes": "gauge", "dionbd_buffer_pool_size_bytes": "gauge",
    "dionbd_request_stage_seconds": "counter", "dionbd_requests_staged": "counter",
    "dionbd_polling_allowed": "gauge", "dionbd_poll_checks": "counter",
    "dionbd_poll_check_replies": "gauge", "dionbd_poll_check_replies_per_second": "gauge",
    "dionbd_poll_check_cpu_seconds_per_reply": "gauge", "dionbd_poll_check_others_cpus": "gauge",
    "dionbd_reactor_polling": "gauge",
    "dionbd_reactor_poll_windows": "counter", "dionbd_reactor_poll_empty_seconds": "counter",
    "dionbd_reactor_reaps": "counter", "dionbd_reactor_completions": "counter",
    "dionbd_reactor_reply_writes": "counter", "dionbd_reactor_replies": "counter",
}
STAGES = ["receive", "libdio", "reply"]

def common(fams, vals, exports):
    for name, typ in TYPES.items():
        check(name in fams and fams[name].type == typ, "family %s of type %s" % (name, typ))
    for e in exports:
        for c in CMDS:
            n = v(vals, "dionbd_requests_total", export=e, cmd=c)
            cnt = v(vals, "dionbd_request_duration_seconds_count", export=e, cmd=c)
            inf = v(vals, "dionbd_request_duration_seconds_bucket", export=e, cmd=c, le="+Inf")
            check(n == cnt == inf, "%s %s: %s requests, histogram count %s, +Inf %s" %
                  (e, c, n, cnt, inf))
            buckets = sorted((float(dict(k[1])["le"]), val) for k, val in vals.items()
                             if k[0] == "dionbd_request_duration_seconds_bucket"
                             and dict(k[1])["export"] == e and dict(k[1])["cmd"] == c)
            check(len(buckets) >= 10 and buckets[0][0] <= 1e-5 and buckets[-2][0] >= 10,
                  "%s %s: buckets from 10 us to 10 s: %s" % (e, c, [b[0] for b in buckets]))
            check(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])),
                  "%s %s: buckets not cumulative" % (e, c))
            s = v(vals, "dionbd_request_duration_seconds_sum", export=e, cmd=c)
            check((s > 0) == (n > 0) and s < n * 10 + 1, "%s %s: sum %s for %s" % (e, c, s, n))
        for err in ERRS:
            v(vals, "dionbd_request_errors_total", export=e, error=err)
        # Stages: only requests that went through libdio and whose reply was
        # written whole; never more than were answered, time only with requests.
        staged = v(vals, "dionbd_requests_staged_total", export=e)
        answered = sum(v(vals, "dionbd_requests_total", export=e, cmd=c) for c in CMDS)
        check(staged <= answered, "%s: %s requests staged of %s answered" % (e, staged, answered))
        for st in STAGES:
            t = v(vals, "dionbd_request_stage_seconds_total", export=e, stage=st)
            check(t >= 0 and (t == 0 or staged > 0) and t < staged * 10 + 1,
                  "%s: stage %s %s s over %s requests" % (e, st, t, staged))
    size = [val for k, val in vals.items() if k[0] == "dionbd_buffer_pool_size_bytes"]
    used = [val for k, val in vals.items() if k[0] == "dionbd_buffer_pool_used_bytes"]
    check(len(size) == len(used) == 2 and all(x > 0 for x in size), "pool sizes %s" % size)
    check(all(0 <= u <= s for u, s in zip(used, size)), "pool used %s of %s" % (used, size))
    check(len([k for k in vals if k[0] == "dionbd_reactor_busy_seconds_total"]) == 2,
          "busy time of 2 reactors")
    # adaptive polling, each reactor (poll-us is on by default)
    for r in ["0", "1"]:
        p = v(vals, "dionbd_reactor_polling", reactor=r)
        check(p in (0, 1), "reactor %s polling %s" % (r, p))
        empty = v(vals, "dionbd_reactor_poll_windows_total", reactor=r, outcome="empty")
        v(vals, "dionbd_reactor_poll_windows_total", reactor=r, outcome="hit")
        spun = v(vals, "dionbd_reactor_poll_empty_seconds_total", reactor=r)
        check((spun > 0) == (empty > 0) and spun <= empty * 0.1,
              "reactor %s: %s s spun in %s empty windows" % (r, spun, empty))
    # batching: every counted pass ran a completion, every counted write ended a reply
    for r in ["0", "1"]:
        reaps = v(vals, "dionbd_reactor_reaps_total", reactor=r)
        done = v(vals, "dionbd_reactor_completions_total", reactor=r)
        writes = v(vals, "dionbd_reactor_reply_writes_total", reactor=r)
        replies = v(vals, "dionbd_reactor_replies_total", reactor=r)
        check(0 <= reaps <= done, "reactor %s: %s completions in %s reaps" % (r, done, reaps))
        check(0 <= writes <= replies, "reactor %s: %s replies in %s writes" % (r, replies, writes))
    for mode in ["poll", "nopoll"]:
        check(v(vals, "dionbd_poll_check_replies_per_second", mode=mode) >= 0, "check rate")
        check(0 <= v(vals, "dionbd_poll_check_cpu_seconds_per_reply", mode=mode) < 1,
              "check CPU per reply")
        # busy ticks less our precise CPU time: a tick below zero at most
        check(-0.5 < v(vals, "dionbd_poll_check_others_cpus", mode=mode) <= os.cpu_count(),
              "check: the rest of the machine's CPUs")

def ge(val, n, what):
    check(val >= n, "%s: %s, expected at least %s" % (what, val, n))

def eq(val, n, what):
    check(val == n, "%s: %s, expected %s" % (what, val, n))

if phase == "idle":
    # No traffic yet: everything present and at zero.
    fams, vals = parse(fetch())
    common(fams, vals, ["", "ro"])
    for k, val in vals.items():
        if k[0].startswith(("dionbd_request", "dionbd_read", "dionbd_written",
                            "dionbd_connections", "dionbd_tls")):
            eq(val, 0, "%s%s" % k)
elif phase == "load":
    # Pages taken while nbdcopy writes: each must parse.
    for i in range(int(args[0])):
        fams, vals = parse(fetch())
        common(fams, vals, ["", "ro"])
        time.sleep(0.05)
elif phase == "traffic":
    written, read, accepted = (int(x) for x in args)
    # connections close asynchronously: wait for the last one to be gone
    for i in range(100):
        fams, vals = parse(fetch())
        if v(vals, "dionbd_connections_open") == 0:
            break
        time.sleep(0.1)
    common(fams, vals, ["", "ro"])
    eq(v(vals, "dionbd_connections_open"), 0, "connections open")
    for c in ["READ", "WRITE", "FLUSH", "TRIM", "WRITE_ZEROES", "BLOCK_STATUS"]:
        ge(v(vals, "dionbd_requests_total", export="", cmd=c), 1, c + " requests")
    ge(v(vals, "dionbd_written_bytes_total", export=""), written, "bytes written")
    ge(v(vals, "dionbd_read_bytes_total", export=""), read, "bytes read")
    # every request of this phase went through libdio; each stage took some time
    ge(v(vals, "dionbd_requests_staged_total", export=""), 6, "requests staged")
    for st in STAGES:
        t = v(vals, "dionbd_request_stage_seconds_total", export="", stage=st)
        check(t > 0, "stage %s: %s s" % (st, t))
    eq(v(vals, "dionbd_written_bytes_total", export="ro"), 0, "bytes written to ro")
    for e in ["", "ro"]:
        eq(v(vals, "dionbd_requests_in_flight", export=e), 0, "in flight on '%s'" % e)
    eq(v(vals, "dionbd_request_errors_total", export="ro", error="EPERM"), 1, "ro EPERM")
    eq(v(vals, "dionbd_request_errors_total", export="ro", error="EINVAL"), 1, "ro EINVAL")
    eq(v(vals, "dionbd_requests_total", export="ro", cmd="WRITE"), 1, "ro WRITEs")
    eq(v(vals, "dionbd_requests_total", export="ro", cmd="READ"), 2, "ro READs")
    for err in ERRS:
        eq(v(vals, "dionbd_request_errors_total", export="", error=err), 0, "errors " + err)
    ge(v(vals, "dionbd_connections_accepted_total"), accepted, "connections accepted")
    eq(v(vals, "dionbd_connections_refused_total", cause="connection_cap"), 1, "refused: cap")
    eq(v(vals, "dionbd_connections_dropped_total", cause="handshake_deadline"), 3,
       "dropped: handshake deadline")
    eq(v(vals, "dionbd_connections_dropped_total", cause="protocol_error"), 1,
       "dropped: protocol error")
    # every staged request's reply was written whole, by some write that counted it
    total = lambda name: sum(val for k, val in vals.items() if k[0] == name)
    ge(total("dionbd_reactor_replies_total"),
       v(vals, "dionbd_requests_staged_total", export=""), "replies written")
    ge(total("dionbd_reactor_reply_writes_total"), 1, "reply writes")
    ge(total("dionbd_reactor_completions_total"), 6, "I/O completions")
    ge(total("dionbd_reactor_reaps_total"), 1, "reap passes")
    busy = sum(val for k, val in vals.items() if k[0] == "dionbd_reactor_busy_seconds_total")
    check(0 < busy < 600, "reactor busy time %s s" % busy)
elif phase == "tls":
    fams, vals = parse(fetch())
    common(fams, vals, [""])
    eq(v(vals, "dionbd_tls_handshake_failures_total", cause="protocol"), 1, "TLS: protocol")
    eq(v(vals, "dionbd_tls_handshake_failures_total", cause="unknown_psk"), 1,
       "TLS: unknown PSK identity")
    # a client that leaves is not dropped by the server
    eq(v(vals, "dionbd_tls_handshake_failures_total", cause="peer_closed"), 1,
       "TLS: the client left")
    eq(v(vals, "dionbd_connections_dropped_total", cause="tls_failure"), 2,
       "dropped: TLS failure")
if problems:
    print("\n".join(problems))
    sys.exit(1)
PY

# raw.py SOCK MODE: NBD clients that misbehave, with Python's sockets.
#   stuck: 3 clients that never answer the greeting (the cap is 3), then a
#          4th that must be closed at once, then wait for the 3 to be dropped
#   badopt: a client that sends an option with a bad magic
#   tlsjunk: STARTTLS, then bytes that are not TLS
#   tlsquit: STARTTLS, then hang up
cat >"$TMP/raw.py" <<'PY'
import socket, struct, sys, time

path, mode = sys.argv[1], sys.argv[2]
IHAVEOPT = 0x49484156454F5054

def connect():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    return s

def recv_all(s, n):
    b = b""
    while len(b) < n:
        k = s.recv(n - len(b))
        if not k:
            break
        b += k
    return b

def closed(s):
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    return True

if mode == "stuck":
    held = [connect() for i in range(3)]
    for s in held:
        if len(recv_all(s, 18)) != 18:
            sys.exit("no greeting")
    time.sleep(0.5)
    extra = connect()
    if recv_all(extra, 18):
        sys.exit("a 4th client over the cap of 3 got the greeting")
    t = time.time()
    for s in held:
        closed(s)
    if time.time() - t > 8:
        sys.exit("the handshake deadline did not drop the clients")
elif mode == "badopt":
    s = connect()
    recv_all(s, 18)
    s.sendall(struct.pack(">I", 1) + struct.pack(">QII", 0x1234, 1, 0))
    closed(s)
elif mode in ("tlsjunk", "tlsquit"):
    s = connect()
    recv_all(s, 18)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", IHAVEOPT, 5, 0))
    rep = recv_all(s, 20)
    if len(rep) != 20 or struct.unpack(">QIII", rep)[2] != 1:
        sys.exit("no STARTTLS ACK: %r" % rep)
    if mode == "tlsjunk":
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"\0" * 200)
        closed(s)
    else:
        s.close()
PY

check_page()
{
	"$PY" "$TMP/check.py" "$MURL" "$@" || fail "the metrics page, $1: see above"
}

f=$TMP/vol.img
ro=$TMP/ro.img
mkvol "$f" 64M
mkvol "$ro" 1M
start_metrics --threads 2 --handshake-timeout 2 --max-connections 3 -e "ro=$ro,readonly" "$f"
check_page idle

# HTTP: 404 elsewhere, what is not GET or HEAD refused (libevent 2.1 says 501),
# HEAD without a body.
code=$(curl -s -o /dev/null -w '%{http_code}' "${MURL%/metrics}/other")
[ "$code" = 404 ] || fail "GET /other: HTTP $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$MURL")
[ "$code" = 405 ] || [ "$code" = 501 ] || fail "POST /metrics: HTTP $code"
[ -z "$(curl -s -I "$MURL" | sed -n '/^\r$/,$p' | tail -n +2)" ] || fail "HEAD sent a body"

# Real traffic: 1.5 MiB written and read back, flush, trim, zeroes, extents.
qemu-io -f raw "$URI" -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 1M 512k' \
	-c 'read -P 0x5a 0 1M' -c 'read -P 0x6b 1M 512k' -c flush -c 'discard 2M 1M' \
	-c 'write -z 4M 1M' >"$TMP/qemu-io.out" 2>&1 || fail "qemu-io: $(cat "$TMP/qemu-io.out")"
timeout 20 nbdinfo --map "$URI" >"$TMP/map" 2>&1 || fail "nbdinfo --map: $(cat "$TMP/map")"
# Errors on the read-only export, past libnbd's own checks: EPERM and EINVAL.
timeout 20 nbdsh -c "
h.set_strict_mode(0)
h.connect_uri('$(uri_of ro)')
h.pread(512, 0)
for f, args in ((h.pwrite, (b'x' * 512, 0)), (h.pread, (512, 1 << 20))):
    try:
        f(*args)
        raise SystemExit('no error')
    except nbd.Error as e:
        print(e.errno)
h.shutdown()
" >"$TMP/nbdsh.out" 2>&1 || fail "nbdsh: $(cat "$TMP/nbdsh.out")"
[ "$(tr '\n' ' ' <"$TMP/nbdsh.out")" = "EPERM EINVAL " ] ||
	fail "nbdsh: expected EPERM and EINVAL: $(cat "$TMP/nbdsh.out")"
# The cap and the handshake deadline, then a protocol error.
timeout 30 "$PY" "$TMP/raw.py" "$SOCK" stuck || fail "stuck clients"
timeout 30 "$PY" "$TMP/raw.py" "$SOCK" badopt || fail "bad option"
# Pages while a copy runs (one connection: the cap is 3).
head -c 32M /dev/urandom >"$TMP/src.img"
timeout 120 nbdcopy -C 1 "$TMP/src.img" "$URI" &
copy=$!
check_page load 10
wait "$copy" || fail "nbdcopy"
# qemu-io 1.5 MiB + nbdcopy 32 MiB written; qemu-io 1.5 MiB read;
# qemu-io, nbdinfo, nbdsh, 3 stuck, 1 bad option, nbdcopy accepted.
check_page traffic $((33 * 1024 * 1024 + 512 * 1024)) $((3 * 512 * 1024)) 8
finish

# TLS: a client that sends junk after STARTTLS, one that hangs up after it, one
# with an unknown PSK identity.
if command -v openssl >/dev/null; then
	CERTS=$TMP/certs
	"$DIO_SRC/deploy/make-certs.sh" "$CERTS" >/dev/null || fail "deploy/make-certs.sh"
	printf 'nobody:%s\n' "$(openssl rand -hex 32)" >"$TMP/other.psk"
	start_metrics -v --tls on --tls-creds "$CERTS/server" --tls-psk-file "$CERTS/keys.psk" "$f"
	timeout 30 "$PY" "$TMP/raw.py" "$SOCK" tlsjunk || fail "junk after STARTTLS"
	timeout 30 "$PY" "$TMP/raw.py" "$SOCK" tlsquit || fail "hang up after STARTTLS"
	if timeout 20 nbdinfo "nbds+unix://nobody@/?socket=$SOCK&tls-psk-file=$TMP/other.psk" \
		>"$TMP/psk.out" 2>&1; then
		fail "an unknown PSK identity was served"
	fi
	check_page tls
	finish
else
	echo "$NAME: no openssl: TLS failures not tried" >&2
fi
