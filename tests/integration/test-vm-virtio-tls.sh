#!/usr/bin/env bash
# test-vm-virtio.sh with TLS: QEMU's NBD client with tls-creds-x509 (a client
# certificate) against dionbd --tls require --tls-verify-peer.
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-vm.sh"
vm_tls
vm_check_scenario virtio 2 1
