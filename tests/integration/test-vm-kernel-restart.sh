#!/usr/bin/env bash
# Restart under the kernel's NBD client: fio verify running on /dev/nbd0,
# dionbd SIGTERMed and started again on the same socket, the client
# reconnecting within its dead-connection timeout. No I/O or verify error.
#
# Needs nbd-client 3.27 or later (netlink persist mode: a dead-connection
# timeout and a reconfigure with new sockets). Debian 12's 3.24 cannot: in
# netlink mode it sets no dead-connection timeout and exits once attached, so
# the kernel fails the I/O of a dead connection at once; with -nonetlink
# -persist it reconnects only after NBD_DO_IT has returned, when the kernel
# has failed what was queued (nbd_clear_que) and reset the device.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-vm.sh"
v=$(nbd-client -V 2>&1 | sed -n 's/.*nbd \([0-9.]*\).*/\1/p' | head -n 1)
printf '3.27\n%s\n' "$v" | sort -V -C ||
	skip "nbd-client ${v:-?} has no netlink persist mode (3.27 has): the kernel client cannot outlive a server restart without I/O errors"
vm_restart_scenario kernel 2 1
