# IPsec start-up on a kernel with ESP: the home agent from the seed's mip6d.conf with
# UseMnHaIPsec enabled starts (the ESP probe passes), its policies are in the SPD, and a
# SIGTERM removes exactly them. Runs under `sh -e`.
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
# Another tool's policy, which hagent must leave alone.
ip -n ha xfrm policy add src 2001:db8:9::1/128 dst 2001:db8:9::2/128 dir out priority 100
ip netns exec ha $HAGENT run -c /etc/hagent/mip6d.conf --bpffs $BPFFS --socket /tmp/ha.sock > /tmp/ha.log 2>&1 &
PID=$!
wait_socket /tmp/ha.sock $PID /tmp/ha.log
cat /tmp/ha.log
ip -n ha xfrm policy
ip -n ha xfrm policy | grep -q "proto mobility-header"
ip -n ha xfrm policy | grep -q "proto esp reqid 10 mode transport"
kill -TERM $PID
wait $PID || true
echo "after shutdown:"
ip -n ha xfrm policy
if ip -n ha xfrm policy | grep -q "mobility-header"; then echo "ipsec.sh:27: must not hold"; exit 1; fi
ip -n ha xfrm policy | grep -q "2001:db8:9::1"
