#!/usr/bin/env bash
# build-guest.sh OUTDIR BRIDGE: make the test guest of tests/integration/test-vm-*.sh
# from Debian packages, at test time (nothing prebuilt is in the repo):
#   OUTDIR/vmlinuz     the kernel of Debian's linux-image-amd64 (downloaded with
#                      apt-get download into $DIO_VM_CACHE, never installed: that
#                      would change the host's boot)
#   OUTDIR/base.cpio   an initramfs (newc, uncompressed: TCG unpacks it faster) with
#                      the kernel's virtio, nbd and ext4 modules, busybox-static,
#                      nbd-client, mke2fs, e2fsck, fio, their libraries from the
#                      host, BRIDGE (tests/vm/vport-bridge.c, static) and /init
#                      (tests/vm/guest-init.sh)
# Rebuilt only when an input changes (kernel version, programs, scripts).
# Exit status 77 with a reason on stderr when something cannot be had.
set -euo pipefail
out=${1:?usage: build-guest.sh OUTDIR BRIDGE}
bridge=${2:?usage: build-guest.sh OUTDIR BRIDGE}
here=$(cd "$(dirname "$0")" && pwd)
cache=${DIO_VM_CACHE:-}
if [ -z "$cache" ]; then
	cache=/var/cache/dionbd-vm
	mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=$out/cache
fi
mkdir -p "$out" "$cache"

cannot()
{
	echo "build-guest: $*" >&2
	exit 77
}

# Guest programs: path on the host, path in the guest.
PROGS=(
	/bin/busybox:/bin/busybox
	/usr/sbin/nbd-client:/sbin/nbd-client
	/usr/sbin/mke2fs:/sbin/mke2fs
	/usr/sbin/e2fsck:/sbin/e2fsck
	/usr/bin/fio:/bin/fio
	"$bridge":/bin/vport-bridge
)
MODULES=(virtio_pci virtio_blk virtio_console nbd ext4 crc32c_generic)

for p in "${PROGS[@]}"; do
	[ -x "${p%%:*}" ] || cannot "${p%%:*} is missing (scripts/deps.sh installs it)"
done
for c in dpkg-deb depmod modprobe cpio ldd; do
	command -v "$c" >/dev/null 2>&1 || cannot "$c is not installed"
done

# One builder at a time (ctest -j runs tests side by side).
exec 9>"$out/.lock"
flock 9

# The kernel package: the one linux-image-amd64 depends on, from the cache or
# downloaded (after an apt-get update when the lists do not know it).
kpkg()
{
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1
}
pkg=$(kpkg)
if [ -z "$pkg" ] || ! ls "$cache/${pkg}_"*.deb >/dev/null 2>&1; then
	if [ -z "$pkg" ] || ! apt-cache show "$pkg" >/dev/null 2>&1; then
		apt-get update -qq >/dev/null 2>&1 || true
		pkg=$(kpkg)
	fi
	[ -n "$pkg" ] || cannot "apt knows no linux-image-amd64 (is Debian's archive reachable?)"
	(cd "$cache" && timeout 600 apt-get download -q "$pkg" >/dev/null 2>&1) ||
		cannot "apt-get download $pkg failed"
fi
deb=$(ls "$cache/${pkg}_"*.deb | tail -n 1)

stamp=$( (sha256sum "$deb" "$here/guest-init.sh" "$here/build-guest.sh" "$bridge"
	for p in "${PROGS[@]}"; do sha256sum "${p%%:*}"; done) | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] &&
	[ -f "$out/vmlinuz" ] && [ -f "$out/base.cpio" ]; then
	exit 0
fi
echo "build-guest: building the guest from $(basename "$deb")" >&2

scratch=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
kx=$scratch/kernel
root=$scratch/root
dpkg-deb -x "$deb" "$kx"
kver=$(ls "$kx/lib/modules" | head -n 1)
cp "$kx/boot/vmlinuz-$kver" "$scratch/vmlinuz"
depmod -b "$kx" "$kver"

mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,mnt,lib/modules,lib64}
# Modules in load order (dependencies first), once each.
for m in "${MODULES[@]}"; do
	modprobe -d "$kx" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' >"$scratch/order"
while read -r ko; do
	cp "$ko" "$root/lib/modules/"
	basename "$ko" >>"$root/lib/modules/load-order"
done <"$scratch/order"

# Programs and every library they load (ldd gives the whole closure).
for p in "${PROGS[@]}"; do
	cp "${p%%:*}" "$root${p#*:}"
	ldd "${p%%:*}" 2>/dev/null | grep -o '/[^ ]*' || true
done | sort -u >"$scratch/libs"
while read -r lib; do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done <"$scratch/libs"
ln -s busybox "$root/bin/sh"
ln -s mke2fs "$root/sbin/mkfs.ext4"
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
cp "$here/guest-init.sh" "$root/init"
chmod 755 "$root/init"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$scratch/base.cpio"
mv "$scratch/vmlinuz" "$scratch/base.cpio" "$out/"
echo "$stamp" >"$out/stamp"
echo "build-guest: kernel $kver, initramfs $(du -h "$out/base.cpio" | cut -f1)" >&2
