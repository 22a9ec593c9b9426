#!/usr/bin/env bash
# test-vm-kernel.sh with 4 connections (nbd-client -C 4, one virtio-serial port
# each) and 4 vCPUs, so the kernel's 4 blk-mq queues each use one.
#
# Opt-in (DIO_VM_MULTI_CONN=1) until the harness is fixed: with 4 ports, some
# NBD request stalls in the guest until the kernel's timeout (30 or 120 s,
# "Connection timed out, retrying (4/4 alive)") in about half the runs, with
# qemu-nbd as the server as well as dionbd, under TCG thread=single and
# thread=multi, with one virtio-serial device per port or one for all, with
# event_idx=off, and with a polling bridge; meanwhile the host's socket queues
# are empty. One port (test-vm-kernel.sh) never stalled.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-vm.sh"
[ "${DIO_VM_MULTI_CONN:-0}" = 1 ] ||
	skip "4 virtio-serial NBD connections stall in the guest with any server (see this file); DIO_VM_MULTI_CONN=1 runs it"
vm_check_scenario kernel 4 4
