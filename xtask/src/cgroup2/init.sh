#!/bin/busybox sh
# /init of the cgroup v2 test VM's initramfs (see xtask/src/cgroup2.rs).
# Loads the modules the tests need, mounts the host's root (9p, read-only)
# with tmpfs over the places the tests write, and switches to it.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "firepit-vm: loading modules"
while read -r m; do
    insmod "/modules/$m.ko" || echo "firepit-vm: loading $m failed"
done </modules/order
echo "firepit-vm: mounting the host's root"
mkdir -p /newroot
opts=trans=virtio,version=9p2000.L,msize=512000
if ! mount -t 9p -o "$opts,cache=loose,ro" root /newroot; then
    echo "firepit-vm: cannot mount the host's root"
    poweroff -f
fi
for d in /run /tmp /var/tmp; do
    mount -t tmpfs -o mode=1777 tmpfs "/newroot$d"
done
# The machines' uid-range registry (/var/lib/firepit/uid-ranges) must be
# writable: a tmpfs of its own, or over /var/lib where the host has none yet.
if [ -d /newroot/var/lib/firepit ]; then
    mount -t tmpfs -o mode=700 tmpfs /newroot/var/lib/firepit
else
    mount -t tmpfs -o mode=755 tmpfs /newroot/var/lib
fi
chmod 755 /newroot/run
mkdir -p /newroot/run/firepit-vm/out
if ! mount -t 9p -o "$opts" out /newroot/run/firepit-vm/out; then
    echo "firepit-vm: cannot mount the run dir"
    poweroff -f
fi
cp /bin/busybox /stage2 /newroot/run/firepit-vm/
for d in /dev /proc /sys; do
    mount --move "$d" "/newroot$d"
done
exec switch_root /newroot /run/firepit-vm/busybox sh /run/firepit-vm/stage2
