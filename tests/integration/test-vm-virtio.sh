#!/usr/bin/env bash
# A VM's disk: virtio-blk backed by QEMU's NBD client on dionbd's Unix socket.
# fio verify, ext4, checksums in the guest; on the host the file holds them.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-vm.sh"
vm_check_scenario virtio 2 1
