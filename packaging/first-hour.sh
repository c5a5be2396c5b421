#!/bin/bash
# Run from the repository root as root: packaging/first-hour.sh (it installs the package, runs
# the daemon in a network namespace of its own, and purges the package again).
# The first hour of an operator, on this machine: install the package, check a config (a stock
# UMIP HA config with directives hagent does not act on), start the daemon on a home link
# (a netns standing in for the router, entered with nsenter so /sys and bpffs stay the host's),
# status, a binding, traffic, stats, monitor, metrics, stop, purge.
NS=hour-ha-$$; PEER=hour-peer-$$
show() { echo; echo "\$ $*"; eval "$@" 2>&1; }
inns() { nsenter --net=/run/netns/$NS "$@"; }
cleanup() { [ -n "$PID" ] && kill $PID 2>/dev/null; sleep 2; ip netns del $NS 2>/dev/null; ip netns del $PEER 2>/dev/null; dpkg --purge hagent >/dev/null 2>&1; }
if dpkg-query -W -f='${Status}' hagent 2>/dev/null | grep -q 'install ok installed'; then
  echo "a hagent package is installed here: this script installs and purges its own; not run" >&2
  exit 1
fi
trap cleanup EXIT
cd "$(dirname "$0")/.."
show "cargo xtask dist 2>&1 | tail -2"
show "dpkg -i target/dist/hagent_0.1.0_amd64.deb"
show "hagent --version"
show "dpkg -L hagent | grep -E 'sbin|systemd|etc/|man8/hagent.8|sysctl|rt_protos'"
show "systemd-analyze verify /lib/systemd/system/hagent.service && echo unit verified"
cat > /etc/hagent/umip-ha.conf <<'C'
# a stock UMIP 1.0 home agent config, as an operator brings it
NodeConfig HA;
DebugLevel 1;
DebugLogFile "/var/log/mip6d.log";
Interface "eth0" { IfType CN; }
SendMobPfxAdvs enabled;
SendUnsolMobPfxAdvs enabled;
MaxMobPfxAdvInterval 86400;
MinMobPfxAdvInterval 600;
HaMaxBindingLife 3600;
BindingAclPolicy 2001:db8:bee5::dead:face allow;
DefaultBindingAclPolicy deny;
UseMnHaIPsec disabled;
KeyMngMobCapability disabled;
C
show "hagent config check /etc/hagent/umip-ha.conf | head -12"
# The router: a home link (eth0) with the HA address, a foreign side (eth1).
ip netns add $NS; ip netns add $PEER
ip -n $NS link set lo up
ip link add eth0 netns $NS type veth peer name eth0 netns $PEER
ip -n $NS link set eth0 up; ip -n $PEER link set eth0 up
ip netns exec $NS sysctl -qw net.ipv6.conf.all.forwarding=1
ip -n $NS addr add 2001:db8:bee5::c001:babe/64 dev eth0 nodad
# The peer is the home link's router; the care-of address is beyond it (on its lo here).
ip -n $PEER addr add 2001:db8:bee5::1/64 dev eth0 nodad
ip -n $PEER link set lo up
ip -n $PEER addr add 2001:db8:c001::2/128 dev lo
ip -n $NS route add default via 2001:db8:bee5::1 dev eth0
# From here on `hagent` and `curl` are the router's (the daemon runs in its network namespace).
hagent() { inns /usr/sbin/hagent "$@"; }
curl() { inns /usr/bin/curl "$@"; }
# A router's default gateway is resolved; here it has just been created.
ip netns exec $NS ping -6 -c 1 -W 2 2001:db8:bee5::1 >/dev/null
echo; echo "\$ hagent run -c /etc/hagent/hagent.toml --metrics-listen '[::1]:9725' &   # what the unit starts (ExecStart), plus metrics"
nsenter --net=/run/netns/$NS /usr/sbin/hagent run -c /etc/hagent/hagent.toml --metrics-listen '[::1]:9725' > ${TMPDIR:-/tmp}/hagent-first-hour-daemon.log 2>&1 &
PID=$!
for i in $(seq 100); do [ -S /run/hagent/hagent.sock ] && break; sleep 0.1; done
show "hagent status"
nsenter --net=/run/netns/$NS /usr/sbin/hagent monitor > ${TMPDIR:-/tmp}/hagent-first-hour-monitor.log 2>&1 &
MON=$!
sleep 0.5
show "hagent binding add 2001:db8:bee5::dead:face 2001:db8:c001::2 --lifetime 3600"
show "hagent bindings"
show "ip netns exec $PEER ping -6 -c 3 -i 0.2 -W 1 2001:db8:bee5::dead:face | tail -2   # from the home link: tunnelled to the CoA (nothing answers there: no ip6tnl at the CoA)"
show "hagent stats"
show "curl -s 'http://[::1]:9725/metrics' -H 'Accept: application/openmetrics-text' | grep -E '^hagent_(build_info|bindings |binding_packets_total|dataplane_packets_total.action=.(tunnel|answer).,reason=.(encap_tx|nd_proxy_answered)|dad_probes_total)'" 
show "hagent binding del 2001:db8:bee5::dead:face"
sleep 0.3
kill $MON
show "cat ${TMPDIR:-/tmp}/hagent-first-hour-monitor.log"
kill -TERM $PID; wait $PID; PID=
show "cat ${TMPDIR:-/tmp}/hagent-first-hour-daemon.log"
rm /etc/hagent/umip-ha.conf
show "dpkg --purge hagent | tail -1"
