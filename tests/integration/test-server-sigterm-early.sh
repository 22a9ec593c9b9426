#!/usr/bin/env bash
# SIGTERM right after the socket appears is a clean exit: the daemon handles
# the signal before anyone can connect (a service manager or script may stop
# it at once).
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-server.sh"

f=$TMP/vol.img
mkvol "$f" 1M
for i in 1 2 3 4 5 6 7 8 9 10; do
	start_server_or_fail "$f"
	stop_server 10
done
