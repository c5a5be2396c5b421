# The data plane on Debian's 6.1 kernel (a second verifier, and TC attach without tcx): hagent
# attaches natively to a veth in a namespace, a static binding is installed through the
# control API, and the peer's pings to the home address are tunnelled by XDP (encap_tx counts
# them). Runs under `sh -e`.
HAGENT=/usr/local/bin/hagent
ip netns add ha
ip netns add peer
ip link add eth0 netns ha type veth peer name eth0 netns peer
for ns in ha peer; do
	ip -n $ns link set lo up
	ip -n $ns link set eth0 up
done
ip netns exec ha sysctl -qw net.ipv6.conf.all.forwarding=1
ip -n ha addr add 2001:db8:bee5::c001:babe/64 dev eth0 nodad
ip -n peer addr add 2001:db8:bee5::1/64 dev eth0 nodad
ip -n ha -6 route add 2001:db8:f00d::/64 via 2001:db8:bee5::1 dev eth0
cat > /tmp/ha.toml <<'CONF'
[home_agent]
addresses = ["2001:db8:bee5::c001:babe"]
[dataplane]
interfaces = ["eth0"]
xdp_mode = "native"
max_bindings = 1024
CONF
ip netns exec ha $HAGENT run -c /tmp/ha.toml --bpffs $BPFFS --socket /tmp/ha.sock > /tmp/ha.log 2>&1 &
wait_socket /tmp/ha.sock $! /tmp/ha.log
cat /tmp/ha.log
$HAGENT binding add 2001:db8:bee5::dead:face 2001:db8:f00d::dead:face --socket /tmp/ha.sock
# The peer learns the HoA's MAC statically: what hagent's XDP program transmits (its answer to
# the peer's Neighbor Solicitation, like the tunnelled pings) is dropped by a veth whose peer
# runs no XDP program, and this test is about the 6.1 verifier and native attach, not ND.
HA_MAC=$(ip netns exec ha cat /sys/class/net/eth0/address)
ip -n peer -6 neigh replace 2001:db8:bee5::dead:face lladdr "$HA_MAC" dev eth0 nud permanent
ip netns exec peer ping -c 5 -i 0.2 -W 1 2001:db8:bee5::dead:face || true
$HAGENT stats --socket /tmp/ha.sock
ENCAP=$($HAGENT stats --socket /tmp/ha.sock | awk '$1 == "encap_tx" || $1 == "tc_encap_neigh" || $1 == "tc_encap" { n += $2 } END { print n + 0 }')
echo "tunnelled: $ENCAP"
[ "$ENCAP" -ge 5 ]
