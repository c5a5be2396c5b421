# Smoke test of the VM tier: ESP in transport mode between two network namespaces on a veth.
# The host kernel has no esp6 ("Requested type not found"); Debian's kernel in the guest does.
# Runs under `sh -e`: any failing command fails the test.
A=2001:db8:1::1
B=2001:db8:1::2
ENC=0x00112233445566778899aabbccddeeff
AUTH=0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f

ip netns add a
ip netns add b
ip link add va netns a type veth peer name vb netns b
# Up first: the kernel turns the carrier on asynchronously (linkwatch, up to a second later) and
# drops what is sent before, which would cost the first ping a neighbour solicitation retry.
for l in "a va" "b vb"; do
	set -- $l
	ip -n "$1" link set lo up
	ip -n "$1" link set "$2" up
done
ip -n a addr add $A/64 dev va nodad
ip -n b addr add $B/64 dev vb nodad

# Both namespaces hold both SAs (a's outbound is b's inbound and vice versa).
for ns in a b; do
	ip -n $ns xfrm state add src $A dst $B proto esp spi 0x100 reqid 1 mode transport \
		enc 'cbc(aes)' $ENC auth-trunc 'hmac(sha256)' $AUTH 128
	ip -n $ns xfrm state add src $B dst $A proto esp spi 0x200 reqid 2 mode transport \
		enc 'cbc(aes)' $ENC auth-trunc 'hmac(sha256)' $AUTH 128
done
ip -n a xfrm policy add src $A/128 dst $B/128 dir out tmpl src $A dst $B proto esp reqid 1 mode transport
ip -n a xfrm policy add src $B/128 dst $A/128 dir in tmpl src $B dst $A proto esp reqid 2 mode transport
ip -n b xfrm policy add src $B/128 dst $A/128 dir out tmpl src $B dst $A proto esp reqid 2 mode transport
ip -n b xfrm policy add src $A/128 dst $B/128 dir in tmpl src $A dst $B proto esp reqid 1 mode transport

for l in "a va" "b vb"; do
	set -- $l
	until ip -n "$1" link show "$2" | grep -q 'state UP'; do sleep 0.05; done
done
ip netns exec a ping -c 3 -i 0.2 -W 5 $B

echo "--- ip -s xfrm state (namespace a) ---"
ip -n a -s xfrm state
echo "--- ip -s xfrm state (namespace b) ---"
ip -n b -s xfrm state

# "lifetime current:" is followed by a line like "  456(bytes), 4(packets)".
packets() {
	ip -n "$1" -s xfrm state get src "$2" dst "$3" proto esp spi "$4" |
		sed -n 's/.*, \([0-9][0-9]*\)(packets).*/\1/p' | head -n 1
}
sent=$(packets a $A $B 0x100)
received=$(packets b $A $B 0x100)
echo "ESP a->b: a's SA counted ${sent:-?} packets, b's SA ${received:-?}"
if [ "${sent:-0}" -gt 0 ] && [ "${received:-0}" -gt 0 ]; then
	echo "smoke: ESP transport mode works"
else
	echo "smoke: FAIL: an SA packet counter is 0"
	exit 1
fi
