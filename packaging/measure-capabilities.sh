#!/bin/bash
# Which capabilities hagent needs, measured: the daemon runs as uid 0 with its bounding set
# cut to CAPS (what systemd's CapabilityBoundingSet= does to a root service), in a network
# namespace with a home link, and must
#   1. start (load, attach XDP and TC, bind its sockets),
#   2. register a binding from a scapy mobile node (BU -> BA status 0),
#   3. hand off (SIGUSR2), start again adopting the pinned data plane and the binding,
#   4. stop with SIGTERM, removing everything (exit 0, no pins left).
# Then the same with each capability of CAPS dropped in turn, to show each is needed.
# Usage: measure-capabilities.sh HAGENT_BINARY [CAPS]   (root; scapy for python3)
# WRAP="strace -f -qq -o FILE" runs the daemon under that wrapper (to list its system calls).
set -u
BIN=${1:?usage: $0 HAGENT_BINARY [CAPS]}
CAPS=${2:-bpf,net_admin,net_raw,perfmon,sys_admin}
SCAPY_MN="$(cd "$(dirname "$0")/.." && pwd)/tests/scapy/mn.py"
BPFFS=/run/hagent-tests/bpffs
NS=hpkgcap-ha; PEER=hpkgcap-mn
WORK=$(mktemp -d /tmp/hpkgcap.XXXXXX)
HA=2001:db8:bee5::c001:babe HOA=2001:db8:bee5::dead:face COA=2001:db8:f00d::dead:face

cleanup() {
    for n in $NS $PEER; do
        for p in $(ip netns pids $n 2>/dev/null); do kill -9 "$p"; done
        ip netns del $n 2>/dev/null
    done
    rm -rf "$WORK" "$BPFFS/hagent/capprobe"
}
trap cleanup EXIT

mkdir -p $BPFFS
grep -q " $BPFFS bpf " /proc/mounts || mount -t bpf bpf $BPFFS
ip netns add $NS; ip netns add $PEER
ip link add home0 netns $NS type veth peer name eth0 netns $PEER
for n in $NS $PEER; do
    ip -n $n link set lo up
    ip netns exec $n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done
ip netns exec $NS sysctl -qw net.ipv6.conf.all.forwarding=1
ip -n $NS link set home0 up; ip -n $PEER link set eth0 up
ip -n $NS -6 addr add $HA/64 dev home0 nodad
ip -n $PEER -6 addr add $COA/64 dev eth0 nodad
ip -n $NS -6 route add 2001:db8:f00d::/64 dev home0
ip -n $PEER -6 route add 2001:db8:bee5::/64 dev eth0
HA_MAC=$(ip netns exec $NS cat /sys/class/net/home0/address)
cat > "$WORK/hagent.toml" <<CONF
[home_agent]
addresses = ["$HA"]
[dataplane]
interfaces = ["home0"]
max_bindings = 64
CONF

# One trial with bounding set $1; prints one result line.
trial() {
    local caps=$1 sock="$WORK/s.sock" log="$WORK/log.$1" seq=$2
    local args=(run -c "$WORK/hagent.toml" --socket "$sock" -i capprobe --bpffs $BPFFS
                --run-dir "$WORK/run")
    local cli=("$BIN" --socket "$sock")
    start() {
        ip netns exec $NS setpriv --bounding-set="-all${caps:+,+${caps//,/,+}}" \
            --inh-caps=-all ${WRAP:-} "$BIN" "${args[@]}" "$@" >>"$log" 2>&1 &
        PID=$!
        for _ in $(seq 100); do
            if [ -S "$sock" ] && "$BIN" stats --socket "$sock" >/dev/null 2>&1; then
                # Under a wrapper the daemon is its child: signals go to the daemon.
                DPID=$PID
                [ -n "${WRAP:-}" ] && DPID=$(pgrep -P $PID -n)
                return 0
            fi
            kill -0 $PID 2>/dev/null || return 1
            sleep 0.1
        done
        return 1
    }
    ip netns exec $NS "$BIN" cleanup -i capprobe --bpffs $BPFFS --run-dir "$WORK/run" >/dev/null 2>&1
    if ! start --fresh; then
        echo "[$caps] FAILS at start: $(grep -m1 -i 'error' "$log")"; kill -9 $PID 2>/dev/null; wait $PID 2>/dev/null; return
    fi
    local ba
    ba=$(ip netns exec $PEER /usr/bin/python3 "$SCAPY_MN" bu --iface eth0 --router-mac "$HA_MAC" \
        --coa $COA --ha $HA --hoa $HOA --seq "$seq" --lifetime 100 2>&1 | tail -1)
    local n; n=$("$BIN" bindings --count --socket "$sock" 2>&1)
    if [[ $ba != *'"status": 0'* || $n != 1 ]]; then
        echo "[$caps] FAILS at registration: BA $ba, bindings $n; log: $(grep -m1 -iE 'error|warn' "$log")"
        kill -TERM $DPID; wait $PID; return
    fi
    kill -USR2 $DPID; wait $PID; local hand=$?
    if ! start; then
        echo "[$caps] FAILS at adoption (hand-off exit $hand): $(grep -i 'error' "$log" | tail -1)"; kill -9 $PID 2>/dev/null; wait $PID 2>/dev/null; return
    fi
    n=$("$BIN" bindings --count --socket "$sock" 2>&1)
    kill -TERM $DPID; wait $PID; local rc=$?
    local left; left=$(ls $BPFFS/hagent/capprobe 2>/dev/null | wc -l)
    if [[ $n != 1 || $rc != 0 || $left != 0 ]]; then
        echo "[$caps] FAILS after adoption: bindings $n, SIGTERM exit $rc, $left pins left; $(grep -iE 'error|warn' "$log" | tail -2)"
        return
    fi
    echo "[$caps] OK: start, BU->BA 0, hand-off + adoption (1 binding kept), SIGTERM exit 0, no pins left"
}

seq=1
trial "$CAPS" $seq
[ -n "${ONLY:-}" ] && exit 0
IFS=, read -ra all <<<"$CAPS"
for drop in "${all[@]}"; do
    rest=$(printf '%s\n' "${all[@]}" | grep -vx "$drop" | paste -sd,)
    seq=$((seq + 1))
    echo -n "without $drop: "; trial "$rest" $seq
done
