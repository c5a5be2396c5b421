# RFC 3776 end to end on a kernel with ESP: our home agent and our mobile node, both from
# mip6d.conf files with `UseMnHaIPsec enabled` and the SAs from one setkey.conf.
#  1. an unprotected BU (a mobile node without IPsec) is refused: the HA's kernel drops it by
#     policy, no binding appears;
#  2. the protected MN (configured in TOML, keys in root-only key files) registers: BU and BA
#     inside ESP (SA counters), the HoA/RH2 headers added by the TC programs after ESP; a
#     second, protected MN whose HoA the HA's ACL refuses gets its status 129 inside ESP too,
#     and the temporary route for that BA is gone afterwards;
#  3. TunnelPayload: CN → HoA reaches the CoA inside ESP (tunnel SA migrated to the CoA) and the
#     replies return through the reverse ESP tunnel — before and after a handover to a second
#     foreign link;
#  3b. the HA is SIGKILLed and restarted: it adopts the binding, its policies and migrated
#     SAs in place, and the payload keeps flowing inside ESP;
#  3c. a reload that drops TunnelPayload from the policy set takes the binding's tunnel
#     policies down (SAs migrated home), one that puts it back puts them up at the CoA, and
#     the payload flows inside ESP again — the binding untouched;
#  4. back home, the MN deregisters through ESP, the tunnel SAs are migrated back to the HoA
#     and the tunnel policies removed (the at-home state), and the HoA answers on the home link;
#  5. shutdown leaves the SPD and SAD as they were.
# Runs under `sh -e`.
HAGENT=/usr/local/bin/hagent
HA=2001:db8:bee5::c001:babe
HOA=2001:db8:bee5::dead:face
COA_A=2001:db8:f00d::dead:face
COA_B=2001:db8:f00e::dead:face
CN=2001:db8:cafe::c0de:f001
# A second mobile node, refused by the HA's ACL, on a link of its own.
HOA2=2001:db8:bee5::bad:face
COA2=2001:db8:f00c::bad:face

for ns in ha mn mn2 cn home; do
	ip netns add $ns
	ip -n $ns link set lo up
done
# The home link: a bridge joining the HA's eth0 and the MN's home0.
ip -n home link add br0 type bridge
ip link add eth0 netns ha type veth peer name p-ha netns home
ip link add home0 netns mn type veth peer name p-mn netns home
ip link add fa netns ha type veth peer name ethA netns mn
ip link add fb netns ha type veth peer name ethB netns mn
ip link add cn0 netns ha type veth peer name eth0 netns cn
ip link add fc netns ha type veth peer name ethA netns mn2
for l in eth0 fa fb fc cn0; do ip -n ha link set $l up; done
for l in p-ha p-mn; do
	ip -n home link set $l master br0
	ip -n home link set $l up
done
ip -n home link set br0 up
# The MN starts away; its HoA stays configured on home0 while that link is down.
ip netns exec mn sysctl -qw net.ipv6.conf.home0.keep_addr_on_down=1
ip -n mn addr add $HOA/64 dev home0 nodad
ip -n cn link set eth0 up
ip netns exec ha sysctl -qw net.ipv6.conf.all.forwarding=1
ip -n ha addr add $HA/64 dev eth0 nodad
ip -n ha addr add 2001:db8:f00d::1/64 dev fa nodad
ip -n ha addr add 2001:db8:f00e::1/64 dev fb nodad
ip -n ha addr add 2001:db8:cafe::1/64 dev cn0 nodad
ip -n ha addr add 2001:db8:f00c::1/64 dev fc nodad
ip -n cn addr add $CN/64 dev eth0 nodad
ip -n cn route add default via 2001:db8:cafe::1

POLICY_SET="IPsecPolicySet {
  HomeAgentAddress $HA;
  HomeAddress $HOA/64;
  IPsecPolicy HomeRegBinding UseESP 10;
  IPsecPolicy TunnelPayload UseESP 11;
}"
POLICY_SET2="IPsecPolicySet {
  HomeAgentAddress $HA;
  HomeAddress $HOA2/64;
  IPsecPolicy HomeRegBinding UseESP 20;
}"
mkdir -p /etc/hagent
cat > /etc/hagent/ha.conf <<CONF
NodeConfig HA;
DebugLevel 3;
Interface "eth0";
Interface "fa";
Interface "fb";
Interface "fc";
Interface "cn0";
BindingAclPolicy $HOA allow;
DefaultBindingAclPolicy deny;
UseMnHaIPsec enabled;
KeyMngMobCapability disabled;
$POLICY_SET
$POLICY_SET2
CONF
cat > /etc/hagent/mn2.conf <<CONF
NodeConfig MN;
DebugLevel 3;
Interface "ethA";
MnHomeLink "ethA" {
  HomeAgentAddress $HA;
  HomeAddress $HOA2/64;
}
UseMnHaIPsec enabled;
KeyMngMobCapability disabled;
$POLICY_SET2
CONF
cat > /etc/hagent/mn.conf <<CONF
NodeConfig MN;
DebugLevel 3;
Interface "home0";
Interface "ethA";
Interface "ethB";
MnHomeLink "home0" {
  HomeAgentAddress $HA;
  HomeAddress $HOA/64;
}
UseMnHaIPsec enabled;
KeyMngMobCapability disabled;
$POLICY_SET
CONF
sed 's/UseMnHaIPsec enabled/UseMnHaIPsec disabled/' /etc/hagent/mn.conf > /etc/hagent/mn-plain.conf
# Manually keyed SAs, as an operator writes them for setkey (transport for the BU/BA, tunnel
# for the payload, both written between the HA and the HoA). Root-only, like any key file.
ENC=0x00112233445566778899aabbccddeeff
AUTH=0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
cat > /etc/hagent/sa.conf <<CONF
# MN > HA: Binding Update
add $HOA $HA esp 1000 -u 10 -m transport -E aes-cbc $ENC -A hmac-sha256 $AUTH;
# HA > MN: Binding Acknowledgement
add $HA $HOA esp 1001 -u 10 -m transport -E aes-cbc $ENC -A hmac-sha256 $AUTH;
# MN > HA: payload
add $HOA $HA esp 1002 -u 11 -m tunnel -E aes-cbc $ENC -A hmac-sha256 $AUTH;
# HA > MN: payload
add $HA $HOA esp 1003 -u 11 -m tunnel -E aes-cbc $ENC -A hmac-sha256 $AUTH;
CONF
cat > /etc/hagent/sa2.conf <<CONF
add $HOA2 $HA esp 2000 -u 20 -m transport -E aes-cbc $ENC -A hmac-sha256 $AUTH;
add $HA $HOA2 esp 2001 -u 20 -m transport -E aes-cbc $ENC -A hmac-sha256 $AUTH;
CONF
cat /etc/hagent/sa2.conf >> /etc/hagent/sa.conf
chmod 600 /etc/hagent/sa.conf /etc/hagent/sa2.conf
# The protected MN uses the native TOML form instead: the same policy set and SAs, keys in
# root-only key files.
mkdir -p /etc/hagent/keys
echo $ENC > /etc/hagent/keys/enc
echo $AUTH > /etc/hagent/keys/auth
chmod 600 /etc/hagent/keys/enc /etc/hagent/keys/auth
sa_toml() { # SRC DST SPI REQID MODE
	cat <<SA
[[ipsec.sa]]
src = "$1"
dst = "$2"
spi = $3
reqid = $4
mode = "$5"
encryption = "aes-cbc"
encryption_key_file = "/etc/hagent/keys/enc"
authentication = "hmac-sha256"
authentication_key_file = "/etc/hagent/keys/auth"
SA
}
{
	cat <<CONF
role = "mobile_node"
debug_level = 3

[mobile_node]
home_address = "$HOA"
home_prefix_len = 64
home_agent = "$HA"
home_interface = "home0"

[dataplane]
interfaces = ["home0", "ethA", "ethB"]
max_bindings = 16
max_prefixes = 16

[ipsec]
use_mn_ha_ipsec = true

[[ipsec.policy_set]]
home_agent = "$HA"
home_addresses = ["$HOA/64"]
policies = [
  { type = "HomeRegBinding", reqid = 10 },
  { type = "TunnelPayload", reqid = 11 },
]
CONF
	sa_toml $HOA $HA 1000 10 transport
	sa_toml $HA $HOA 1001 10 transport
	sa_toml $HOA $HA 1002 11 tunnel
	sa_toml $HA $HOA 1003 11 tunnel
} > /etc/hagent/mn.toml
chmod 600 /etc/hagent/mn.toml
$HAGENT config check /etc/hagent/mn.toml > /dev/null

# wait_binding COA: until the HA's binding for the HoA points at COA (60 s).
wait_binding() {
	i=0
	while [ $i -lt 120 ]; do
		if $HAGENT bindings --json --socket /tmp/ha.sock | grep -q "\"coa\": *\"$1\""; then
			return 0
		fi
		sleep 0.5
		i=$((i + 1))
	done
	echo "the HA has no binding for $HOA at $1"
	$HAGENT bindings --socket /tmp/ha.sock
	return 1
}
# sa_packets NS SPI DST: packets through the SA with this SPI and destination.
sa_packets() {
	ip -n "$1" -s xfrm state | awk -v spi="$(printf '0x%08x' "$2")" -v dst="$3" '
		/^src / { cur = ($4 == dst) }
		/proto esp spi/ { hit = cur && index($4, spi) == 1 }
		hit && /^[ \t]*[0-9]+\(bytes\), [0-9]+\(packets\)/ { n = $2; sub(/\(packets\)/, "", n); print n + 0; exit }'
}
counter() {
	$HAGENT stats --socket "$1" | awk -v c="$2" '$1 == c { print $2 + 0; found = 1 } END { if (!found) print 0 }'
}
xfrm_stat() {
	ip netns exec "$1" cat /proc/net/xfrm_stat | awk -v c="$2" '$1 == c { print $2 }'
}

# Another tool's SA and policy: must survive hagent.
ip -n ha xfrm state add src 2001:db8:9::1 dst 2001:db8:9::2 proto esp spi 0x999 mode transport \
	enc 'cbc(aes)' $ENC auth-trunc 'hmac(sha256)' $AUTH 128
ip -n ha xfrm policy add src 2001:db8:9::1/128 dst 2001:db8:9::2/128 dir out priority 100

ip netns exec ha $HAGENT run -c /etc/hagent/ha.conf --setkey /etc/hagent/sa.conf --bpffs $BPFFS \
	--socket /tmp/ha.sock > /tmp/ha.log 2>&1 &
HA_PID=$!
wait_socket /tmp/ha.sock $HA_PID /tmp/ha.log

echo "== 1. an unprotected BU is refused"
ip -n mn link set ethA up
ip -n mn addr add $COA_A/64 dev ethA nodad
ip -n mn route add default via 2001:db8:f00d::1 dev ethA
MISMATCH0=$(xfrm_stat ha XfrmInTmplMismatch)
ip netns exec mn $HAGENT run -c /etc/hagent/mn-plain.conf --instance mn-plain --socket /tmp/mn-plain.sock > /tmp/mn-plain.log 2>&1 &
PLAIN_PID=$!
wait_socket /tmp/mn-plain.sock $PLAIN_PID /tmp/mn-plain.log
# The MN sends its BU at once and again after 1.5 s and 2.5 s.
i=0
while [ "$(counter /tmp/mn-plain.sock bu_sent)" -lt 3 ] && [ $i -lt 40 ]; do
	sleep 0.5
	i=$((i + 1))
done
sleep 1
kill -TERM $PLAIN_PID
wait $PLAIN_PID || true
MISMATCH1=$(xfrm_stat ha XfrmInTmplMismatch)
BU_RX=$(counter /tmp/ha.sock bu_received)
echo "unprotected BUs sent: 3+, HA XfrmInTmplMismatch $MISMATCH0 -> $MISMATCH1, BUs reaching the HA daemon: ${BU_RX:-0}"
$HAGENT bindings --socket /tmp/ha.sock
if $HAGENT bindings --json --socket /tmp/ha.sock | grep -q "$HOA"; then echo "mn-ipsec.sh:250: must not hold"; exit 1; fi
[ "$MISMATCH1" -gt "$MISMATCH0" ]
[ "${BU_RX:-0}" -eq 0 ]

echo "== 2. the protected MN registers through ESP"
ip netns exec mn $HAGENT run -c /etc/hagent/mn.toml --instance mn --socket /tmp/mn.sock > /tmp/mn.log 2>&1 &
MN_PID=$!
wait_socket /tmp/mn.sock $MN_PID /tmp/mn.log
wait_binding $COA_A || { cat /tmp/ha.log /tmp/mn.log; exit 1; }
$HAGENT bindings --socket /tmp/ha.sock
echo "SA counters after the registration (HA):"
ip -n ha -s xfrm state
BU_ESP=$(sa_packets ha 1000 $HA)
BA_ESP=$(sa_packets ha 1001 $HOA)
BA_ESP_MN=$(sa_packets mn 1001 $HOA)
echo "BUs decrypted by the HA: $BU_ESP, BAs encrypted by the HA: $BA_ESP, BAs decrypted by the MN: $BA_ESP_MN"
echo "HA signal_hao_rewritten $(counter /tmp/ha.sock signal_hao_rewritten), tc_signal_rh2 $(counter /tmp/ha.sock tc_signal_rh2); MN tc_signal_hao $(counter /tmp/mn.sock tc_signal_hao), mn_rh2_rewritten $(counter /tmp/mn.sock mn_rh2_rewritten)"
[ "$BU_ESP" -ge 1 ]
[ "$BA_ESP" -ge 1 ]
[ "$BA_ESP_MN" -ge 1 ]
# ... and the MN's daemon took it (after the kernel's inbound policy check).
grep -q "binding acknowledged" /tmp/mn.log
[ "$(counter /tmp/ha.sock tc_signal_rh2)" -ge 1 ]
[ "$(counter /tmp/mn.sock tc_signal_hao)" -ge 1 ]

echo "   ... and a protected MN the ACL refuses hears so inside ESP"
ip -n mn2 link set ethA up
ip -n mn2 addr add $COA2/64 dev ethA nodad
ip -n mn2 route add default via 2001:db8:f00c::1 dev ethA
ip netns exec mn2 $HAGENT run -c /etc/hagent/mn2.conf --setkey /etc/hagent/sa2.conf --instance mn2 \
	--socket /tmp/mn2.sock > /tmp/mn2.log 2>&1 &
MN2_PID=$!
wait_socket /tmp/mn2.sock $MN2_PID /tmp/mn2.log
i=0
while ! grep -q "refused the binding update" /tmp/mn2.log && [ $i -lt 60 ]; do
	sleep 0.5
	i=$((i + 1))
done
if ! grep -q "refused the binding update" /tmp/mn2.log; then
	echo "MN2 heard no refusal; HA SA 2001: $(sa_packets ha 2001 $HOA2)"
	$HAGENT stats --socket /tmp/ha.sock | awk '$2 != 0'
	$HAGENT stats --socket /tmp/mn2.sock | awk '$2 != 0'
	ip netns exec mn2 cat /proc/net/xfrm_stat | grep -v "	0$" || true
	ip netns exec ha cat /proc/net/xfrm_stat | grep -v "	0$" || true
	ip -n ha -6 route; ip -n ha -6 neigh
	tail -20 /tmp/ha.log
fi
kill -TERM $MN2_PID
wait $MN2_PID || true
grep "refused the binding update" /tmp/mn2.log
grep -q "status=129" /tmp/mn2.log
REFUSAL_ESP=$(sa_packets ha 2001 $HOA2)
echo "refusals encrypted by the HA: $REFUSAL_ESP; HA tc_signal_rh2 $(counter /tmp/ha.sock tc_signal_rh2)"
[ "$REFUSAL_ESP" -ge 1 ]
if $HAGENT bindings --json --socket /tmp/ha.sock | grep -q "$HOA2"; then echo "mn-ipsec.sh:304: must not hold"; exit 1; fi
# The temporary route and neighbour entry for the refusal are gone.
[ -z "$(ip -n ha -6 route show $HOA2)" ]
if ip -n ha -6 neigh show | grep -q "$HOA2"; then echo "mn-ipsec.sh:307: must not hold"; exit 1; fi

echo "== 3. TunnelPayload: CN <-> HoA inside ESP, across a handover"
# payload COA: five pings CN → HoA; the HA → CoA tunnel SA and the reverse one must carry them.
payload() {
	OUT0=$(sa_packets ha 1003 "$1")
	IN0=$(sa_packets ha 1002 $HA)
	ip netns exec cn ping -c 5 -i 0.2 -W 2 $HOA
	OUT1=$(sa_packets ha 1003 "$1")
	IN1=$(sa_packets ha 1002 $HA)
	echo "HA -> $1 tunnel SA: ${OUT0:-none} -> ${OUT1:-none} packets; reverse SA: ${IN0:-0} -> ${IN1:-0}"
	[ "${OUT1:-0}" -ge $((${OUT0:-0} + 5)) ]
	[ "${IN1:-0}" -ge $((${IN0:-0} + 5)) ]
}
payload $COA_A
ip -n ha xfrm policy | grep -A3 "dst $HOA/128" | grep -q "tmpl src $HA dst $COA_A"
echo "moving the MN to the foreign link B"
ip -n mn addr flush dev ethA
ip -n mn link set ethA down
ip -n mn link set ethB up
ip -n mn addr add $COA_B/64 dev ethB nodad
ip -n mn route add default via 2001:db8:f00e::1 dev ethB
wait_binding $COA_B || { cat /tmp/ha.log /tmp/mn.log; exit 1; }
payload $COA_B
ip -n ha xfrm policy | grep -A3 "dst $HOA/128" | grep -q "tmpl src $HA dst $COA_B"
# The old CoA's tunnel SA is gone (migrated, not copied).
[ -z "$(sa_packets ha 1003 $COA_A)" ]
echo "HA pass_ipsec_binding $(counter /tmp/ha.sock pass_ipsec_binding), encap_tx $(counter /tmp/ha.sock encap_tx), tc_encap $(counter /tmp/ha.sock tc_encap)"
[ "$(counter /tmp/ha.sock pass_ipsec_binding)" -ge 10 ]
[ "$(counter /tmp/ha.sock encap_tx)" -eq 0 ]
[ "$(counter /tmp/ha.sock tc_encap)" -eq 0 ]
echo "SA counters at the end (HA):"
ip -n ha -s xfrm state
echo "SA counters at the end (MN):"
ip -n mn -s xfrm state

echo "== 3b. the HA is SIGKILLed and restarted: the binding and its ESP tunnel carry on"
kill -KILL $HA_PID
wait $HA_PID || true
ip netns exec ha $HAGENT run -c /etc/hagent/ha.conf --setkey /etc/hagent/sa.conf --bpffs $BPFFS \
	--socket /tmp/ha.sock > /tmp/ha2.log 2>&1 &
HA_PID=$!
wait_socket /tmp/ha.sock $HA_PID /tmp/ha2.log
cat /tmp/ha2.log
grep -q "binding cache restored" /tmp/ha2.log
wait_binding $COA_B || { cat /tmp/ha2.log; exit 1; }
ip -n ha xfrm policy | grep -A3 "dst $HOA/128" | grep -q "tmpl src $HA dst $COA_B"
payload $COA_B
[ "$(counter /tmp/ha.sock encap_tx)" -eq 0 ]

echo "== 3c. a reload drops TunnelPayload from the policy set; another puts it back"
cp /etc/hagent/ha.conf /tmp/ha.conf.orig
sed -i '/TunnelPayload/d' /etc/hagent/ha.conf
$HAGENT config reload --socket /tmp/ha.sock | tee /tmp/reload.out
grep -q "^applied: .*ipsec (policy sets)" /tmp/reload.out
if ip -n ha xfrm policy | grep -q "tmpl src $HA dst $COA_B"; then echo "mn-ipsec.sh:362: must not hold"; exit 1; fi
# The tunnel SA went home with its policy; the binding stayed.
[ -n "$(sa_packets ha 1003 $HOA)" ]
$HAGENT bindings --json --socket /tmp/ha.sock | grep -q "\"coa\": *\"$COA_B\""
cp /tmp/ha.conf.orig /etc/hagent/ha.conf
$HAGENT config reload --socket /tmp/ha.sock | tee /tmp/reload.out
grep -q "^applied: .*ipsec (policy sets)" /tmp/reload.out
ip -n ha xfrm policy | grep -A3 "dst $HOA/128" | grep -q "tmpl src $HA dst $COA_B"
payload $COA_B

echo "== 4. back home: deregistration through ESP restores the at-home state"
BU0=$(sa_packets ha 1000 $HA)
BA0=$(sa_packets ha 1001 $HOA)
ip -n mn addr flush dev ethB
ip -n mn link set ethB down
ip -n mn link set home0 up
ip -n mn route replace default via $HA dev home0
i=0
while $HAGENT bindings --json --socket /tmp/ha.sock | grep -q "$HOA" && [ $i -lt 120 ]; do
	sleep 0.5
	i=$((i + 1))
done
if $HAGENT bindings --json --socket /tmp/ha.sock | grep -q "$HOA"; then
	echo "the binding is still there; MN's BU SA: $(sa_packets mn 1000 $HA) packets"
	echo "MN xfrm_stat:"; ip netns exec mn cat /proc/net/xfrm_stat | grep -v " 0$" || true
	echo "HA xfrm_stat:"; ip netns exec ha cat /proc/net/xfrm_stat | grep -v " 0$" || true
	ip -n mn xfrm policy
	ip netns exec mn cat /proc/net/snmp6 | grep -i "Ip6In\|Icmp6InParm" | grep -v " 0$" || true
	tail -20 /tmp/mn.log
	tail -20 /tmp/ha.log
	$HAGENT stats --socket /tmp/mn.sock
	exit 1
fi
BU1=$(sa_packets ha 1000 $HA)
BA1=$(sa_packets ha 1001 $HOA)
echo "deregistration: BU SA $BU0 -> $BU1, BA SA $BA0 -> $BA1; HA tunnel SA back at the HoA: $(sa_packets ha 1003 $HOA) packets"
[ "$BU1" -gt "$BU0" ]
[ "$BA1" -gt "$BA0" ]
# Tunnel SAs back at their at-home endpoints, tunnel policies gone, transport ones kept.
[ -n "$(sa_packets ha 1003 $HOA)" ]
[ -n "$(sa_packets ha 1002 $HA)" ]
if ip -n ha xfrm state | grep -q "$COA_B"; then echo "mn-ipsec.sh:403: must not hold"; exit 1; fi
if ip -n ha xfrm policy | grep -q "src ::/0 dst $HOA/128"; then echo "mn-ipsec.sh:404: must not hold"; exit 1; fi
ip -n ha xfrm policy | grep -q "src $HA/128 dst $HOA/128"
ip netns exec cn ping -c 3 -i 0.2 -W 2 $HOA

echo "== 5. shutdown removes exactly what hagent installed"
kill -TERM $MN_PID
wait $MN_PID || true
kill -TERM $HA_PID
wait $HA_PID || true
for ns in ha mn; do
	echo "$ns after shutdown:"
	ip -n $ns xfrm state
	ip -n $ns xfrm policy
	if ip -n $ns xfrm policy | grep -q "$HOA"; then echo "mn-ipsec.sh:417: must not hold"; exit 1; fi
	if ip -n $ns xfrm state | grep -q "$HOA\|$HOA2\|$COA_A\|$COA_B"; then echo "mn-ipsec.sh:418: must not hold"; exit 1; fi
done
ip -n ha xfrm state | grep -q "spi 0x00000999"
ip -n ha xfrm policy | grep -q "2001:db8:9::1"
