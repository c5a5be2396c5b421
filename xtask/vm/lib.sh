# Shared by the guest test scripts that run hagent (prepended by xtask/src/vmtest.rs).
# Negative checks are written `if CMD; then ...; exit 1; fi`: `! CMD` never stops `sh -e`
# (POSIX ignores -e for a pipeline that starts with `!`).

# wait_socket SOCKET PID LOG: until the daemon answers on its control socket — or dies, then
# show its log. Under TCG, loading and verifying the programs takes a while. (It asks: a
# socket file a killed daemon left does not answer.)
wait_socket() {
	i=0
	while ! $HAGENT stats --socket "$1" > /dev/null 2>&1 && [ $i -lt 240 ] && kill -0 "$2" 2>/dev/null; do
		sleep 0.5
		i=$((i + 1))
	done
	$HAGENT stats --socket "$1" > /dev/null 2>&1 || { echo "no answer on $1"; cat "$3"; return 1; }
}

# `ip netns exec` remounts /sys, which hides /sys/fs/bpf: a home agent pins its data plane on
# a bpffs mounted outside /sys (`hagent run --bpffs`).
BPFFS=/run/hagent-bpffs
mkdir -p $BPFFS
grep -q " $BPFFS bpf " /proc/mounts || mount -t bpf bpf $BPFFS
