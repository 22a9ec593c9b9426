#!/usr/bin/env bash
# Install what dionbd needs to build and test, from Debian's archive only.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

PKGS=(
	build-essential cmake pkg-config clang
	liburing-dev libevent-dev libssl-dev libinih-dev libsystemd-dev
	libnbd-dev libnbd-bin python3-libnbd nbdkit nbdkit-plugin-dev
	libcriterion-dev qemu-utils fio nbd-server libjansson-dev
	openssl gnutls-bin util-linux procps iproute2 python3
	python3-prometheus-client curl
	strace systemd mandoc
	# rbd volumes: librbd to build against; a one-node Ceph cluster
	# (tests/ceph/ceph-cluster.sh: monitor, OSD, the ceph and rbd tools)
	librbd-dev librados-dev ceph-mon ceph-osd ceph-common uuid-runtime
	# bench/run-rbd.sh: qemu-nbd serving an rbd image (its block-rbd module)
	qemu-block-extra
	# the VM tests (tests/vm): QEMU, and what the guest is made of; the
	# guest's kernel is downloaded at test time, never installed here
	qemu-system-x86 busybox-static nbd-client e2fsprogs cpio kmod
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${missing[*]}; run as root (or apt-get install them)" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
