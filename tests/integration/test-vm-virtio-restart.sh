#!/usr/bin/env bash
# Restart under a live VM: QEMU's NBD client with reconnect-delay behind a
# virtio-blk disk, fio verify running in the guest, dionbd SIGTERMed and
# started again on the same socket. No I/O error, no verify error.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-vm.sh"
vm_restart_scenario virtio 2 30
