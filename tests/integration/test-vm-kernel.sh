#!/usr/bin/env bash
# The Linux kernel's NBD client (nbd-client, netlink) in a guest with no NIC,
# through a virtio-serial port to dionbd's Unix socket: fio verify, ext4,
# checksums, a clean detach; on the host the file holds what the guest wrote.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-vm.sh"
vm_check_scenario kernel 2 1
