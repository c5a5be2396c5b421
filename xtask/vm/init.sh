#!/bin/sh
# PID 1 of a `cargo xtask vmtest` guest. /bin/sh is dash, not busybox's shell: Debian's busybox
# prefers its own applets over PATH, so under it `ip` would be busybox's `ip` (no netns, no xfrm)
# even with iproute2 installed. Not `set -e`: whatever happens, this must print the marker line
# the host parses and power the VM off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb

mount -t devtmpfs devtmpfs /dev
# The initramfs normally ships /dev/console, so the kernel has already opened it for us; when
# building it could not create that node (not root), this is what gives the test any output.
[ -t 1 ] || exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf || echo "vmtest: cannot mount bpffs"
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
ip link set lo up

rc=0
# Host-resolved .ko paths, dependencies first (modprobe --show-depends order).
while read -r ko; do
	[ -n "$ko" ] || continue
	if ! insmod "$ko"; then
		echo "vmtest: insmod $ko failed"
		rc=125
		break
	fi
done </vmtest/modules

if [ "$rc" -eq 0 ]; then
	cd /tmp
	sh -e /vmtest/test.sh
	rc=$?
fi
echo "GUEST-RC=$rc"
poweroff -f
