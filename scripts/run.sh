#!/usr/bin/env bash
# Install what is missing, build, create a default sparse volume and serve it.
#   sudo ./scripts/run.sh            (Ctrl-C stops the daemon)
# Environment: DIONBD_VOLUME (default /var/lib/dionbd/default.img),
# DIONBD_SIZE (default 10G), DIONBD_SOCKET (default /run/dionbd.sock),
# DIONBD_PORT (default 10809; the TCP listener is on loopback unless
# DIONBD_BIND is set).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
"$top/scripts/build.sh" "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo

vol=${DIONBD_VOLUME:-/var/lib/dionbd/default.img}
size=${DIONBD_SIZE:-10G}
sock=${DIONBD_SOCKET:-/run/dionbd.sock}
port=${DIONBD_PORT:-10809}
bind=${DIONBD_BIND:-127.0.0.1}

mkdir -p "$(dirname "$vol")"
if [ ! -e "$vol" ]; then
	truncate -s "$size" "$vol"
	echo "created sparse volume $vol ($size)"
fi

cat <<MSG
dionbd serving $vol as the default export
  nbd://$bind:$port        (TCP; use nbd://localhost from this machine)
  nbd+unix:///?socket=$sock
try:
  nbdinfo 'nbd+unix:///?socket=$sock'
  qemu-img info 'nbd+unix:///?socket=$sock'
MSG
exec "$top/build/server/dionbd" -f -U "$sock" -b "$bind" -p "$port" "$vol"
