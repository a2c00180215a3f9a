#!/run/firepit-vm/busybox sh
# PID 1 of the cgroup v2 test VM once its root is the host's (read-only):
# mounts cgroup v2 alone at /sys/fs/cgroup (there is no systemd to do it),
# runs the run dir's run.sh and leaves its exit status in the run dir.
# The tests run in a leaf group, as processes on a systemd host do (the
# root group alone may hold processes and enable controllers at once).
bb=/run/firepit-vm/busybox
out=/run/firepit-vm/out
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup
$bb mkdir /sys/fs/cgroup/init.scope
echo $$ >/sys/fs/cgroup/init.scope/cgroup.procs
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$bb hostname firepit-vm
$bb ip link set lo up
# A default route into a dummy interface: the VM has no NIC, and a host
# without any route would answer the machines' packets with "unreachable"
# before its firewall sees them. Nothing sent there leaves the VM.
$bb ip link add fpvm0 type dummy
$bb ip addr add 192.0.2.1/24 dev fpvm0
$bb ip link set fpvm0 up
$bb ip route add default via 192.0.2.2
echo "firepit-vm: cgroup controllers: $($bb cat /sys/fs/cgroup/cgroup.controllers)"
# Machines see their image through an idmapped mount, which 9p cannot give:
# the minimal image is copied onto a btrfs (in memory) mounted over its path.
img=/var/cache/firepit/images/minimal
if [ -d "$img" ]; then
    export PATH=/usr/sbin:/usr/bin:/sbin:/bin
    if $bb truncate -s 1G /var/tmp/fp-images.img &&
        mkfs.btrfs -q /var/tmp/fp-images.img >/dev/null &&
        $bb mkdir -p /var/tmp/fp-images &&
        mount -o loop /var/tmp/fp-images.img /var/tmp/fp-images &&
        cp -a "$img" /var/tmp/fp-images/minimal &&
        mount --bind /var/tmp/fp-images/minimal "$img"; then
        echo "firepit-vm: the minimal image is on btrfs"
    else
        echo "firepit-vm: could not put the minimal image on btrfs"
    fi
fi
$bb sh "$out/run.sh" </dev/null
status=$?
echo "$status" >"$out/status"
$bb sync
echo "firepit-vm: exit status $status"
$bb poweroff -f
