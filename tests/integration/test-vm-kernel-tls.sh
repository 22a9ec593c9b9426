#!/usr/bin/env bash
# test-vm-kernel.sh with TLS: Debian's nbd-client (GnuTLS) presents a client
# certificate and verifies dionbd's (--tls require --tls-verify-peer).
source "${DIO_SRC:-$(dirname "$0")/../..}/tests/integration/lib-vm.sh"
vm_tls
vm_check_scenario kernel 2 1
