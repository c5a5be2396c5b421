#!/usr/bin/python3
"""A mobile node made of scapy: an implementation nobody on this project wrote, used by the
end-to-end tests to talk to hagent. Prints one JSON object per command on stdout.

  bu        send a Binding Update (with Home Address option), wait for the BA
  tunnel    listen for IPv6-in-IPv6 packets to the CoA
  reverse   send reverse-tunnelled echo requests to a CN, wait for the tunnelled replies
  ha        play a home agent: answer the first Binding Update with a BA (status 0, type 2
            routing header), print what the BU said
  ns        send a Neighbor Solicitation (or, from ::, a DAD probe), print the advertisement
  mh        play a correspondent: send a Home Test, a Binding Refresh Request and a Binding
            Error to --dst (the HoA), through the routing table
  hoti      send a reverse-tunnelled Home Test Init (CoA -> HA, inside HoA -> CN)
  sniff-mh  listen for Mobility Headers from --src, print their types
  hao-echo  send an echo request with a Home Address option for --hoa, print the Binding
            Error that answers it
  mps       send a reverse-tunnelled Mobile Prefix Solicitation, print the tunnelled
            advertisement's prefixes
  dhaad     send a DHAAD Request from --src to --anycast, print the reply's addresses
  ra-ha     send a Router Advertisement announcing this node as a home agent (H flag, an
            R-flag prefix with --address, a Home Agent Information option)
"""
import argparse
import json
import struct
import sys
import threading
import time

from scapy.all import conf, AsyncSniffer, sendp, Ether, raw
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting, HAO, MIP6MH_BU, MIP6MH_BA, MIP6OptAltCoA,
                                MIP6MH_HoTI, MIP6MH_HoT, MIP6MH_BRR, MIP6MH_BE,
                                ICMPv6EchoRequest, ICMPv6EchoReply, getmacbyip6)

conf.verb = 0


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mh_checksum_ok(src, final_dst, mh_bytes):
    """RFC 6275 6.1.1: pseudo-header with the final destination, Next Header 135."""
    import socket
    ph = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, final_dst)
          + struct.pack("!I", len(mh_bytes)) + b"\0\0\0\x87")
    return csum(ph + mh_bytes) == 0


def l2(iface, dst_ip):
    # The default router's MAC: the first hop of everything we send.
    return Ether()


def send_and_await(a, frame, match, routed=False):
    """Sends `frame` on a.iface (an IPv6 packet through the routing table when `routed`) and
    returns the first received frame `match` accepts, or None after a.timeout seconds. The
    sniffer starts first so a fast answer is not missed."""
    from scapy.all import send
    sniffer = AsyncSniffer(iface=a.iface, lfilter=match, store=True, count=1)
    sniffer.start()
    time.sleep(0.3)
    if routed:
        send(frame)
    else:
        sendp(frame, iface=a.iface)
    sniffer.join(timeout=a.timeout)
    if sniffer.running:
        sniffer.stop()
    res = sniffer.results or []
    return res[0] if res else None


def cmd_bu(a):
    # scapy's BU flags field takes the flag letters (A, H, L, K, M, R, P).
    f = a.flags
    opts = []
    if a.alt_coa:
        opts.append(MIP6OptAltCoA(acoa=a.alt_coa))
    bu = MIP6MH_BU(seq=a.seq, flags=f, mhtime=a.lifetime, options=opts)
    pkt = IPv6(src=a.coa, dst=a.ha) / IPv6ExtHdrDestOpt(options=[HAO(hoa=a.hoa)]) / bu
    data = raw(pkt)
    if a.bad_checksum:
        b = bytearray(data)
        # IPv6 40 + DestOpt 24; MH checksum at offset 4 of the MH.
        b[40 + 24 + 4] ^= 0xFF
        data = bytes(b)
    got = []

    def is_ba(p):
        if not (IPv6 in p and p[IPv6].dst == a.coa and MIP6MH_BA in p):
            return False
        # Ours, not another home address's (a flood from the same CoA may be answered too).
        rh = p.getlayer(IPv6ExtHdrRouting)
        return rh is None or not rh.addresses or rh.addresses[0] == a.hoa

    p = send_and_await(a, Ether(dst=a.router_mac) / IPv6(data), is_ba)
    if p is None:
        print(json.dumps({"timeout": True}))
        return
    ba = p[MIP6MH_BA]
    rh = p.getlayer(IPv6ExtHdrRouting)
    rh2_hoa = None
    final = p[IPv6].dst
    if rh is not None:
        rh2_hoa = rh.addresses[0] if rh.addresses else None
        final = rh2_hoa or final
    mh_bytes = raw(ba)
    print(json.dumps({
        "status": ba.status, "seq": ba.seq, "lifetime": ba.mhtime, "flags": str(ba.flags),
        "src": p[IPv6].src, "dst": p[IPv6].dst,
        "rh2_type": rh.type if rh is not None else None,
        "rh2_segleft": rh.segleft if rh is not None else None,
        "rh2_hoa": rh2_hoa,
        "checksum_ok": mh_checksum_ok(p[IPv6].src, final, mh_bytes),
    }))


def cmd_tunnel(a):
    def is_tunnel(p):
        return IPv6 in p and p[IPv6].nh == 41 and p[IPv6].dst == a.coa
    pk = AsyncSniffer(iface=a.iface, lfilter=is_tunnel, store=True)
    pk.start()
    time.sleep(a.duration)
    pk.stop()
    pkts = pk.results or []
    out = []
    for p in pkts:
        outer = p[IPv6]
        inner = outer.payload
        mh_type = None
        if inner.nh == 135:
            mh_type = raw(inner.payload)[2]
        out.append({"outer_src": outer.src, "outer_dst": outer.dst,
                    "inner_src": inner.src, "inner_dst": inner.dst, "mh_type": mh_type,
                    "mh_checksum_ok": mh_checksum_ok(inner.src, inner.dst, raw(inner.payload))
                    if mh_type is not None else None})
    print(json.dumps({"count": len(out), "packets": out[:20]}))


def cmd_reverse(a):
    def is_reply(p):
        if IPv6 not in p or p[IPv6].nh != 41 or p[IPv6].dst != a.coa:
            return False
        inner = p[IPv6].payload
        return ICMPv6EchoReply in inner and inner.src == a.cn and inner.dst == a.hoa
    sniffer = AsyncSniffer(iface=a.iface, lfilter=is_reply, store=True)
    sniffer.start()
    time.sleep(0.3)
    for i in range(a.count):
        pkt = (Ether(dst=a.router_mac) / IPv6(src=a.coa, dst=a.ha, nh=41)
               / IPv6(src=a.hoa, dst=a.cn) / ICMPv6EchoRequest(id=0x4d4e, seq=i))
        sendp(pkt, iface=a.iface)
        time.sleep(0.05)
    time.sleep(a.timeout)
    sniffer.stop()
    print(json.dumps({"sent": a.count, "replies": len(sniffer.results or [])}))


def cmd_ha(a):
    from scapy.all import sniff
    def is_bu(p):
        return IPv6 in p and MIP6MH_BU in p and p[IPv6].dst == a.ha
    got = sniff(iface=a.iface, lfilter=is_bu, count=1, timeout=a.timeout)
    if not got:
        print(json.dumps({"timeout": True}))
        return
    p = got[0]
    bu = p[MIP6MH_BU]
    hao = None
    if IPv6ExtHdrDestOpt in p:
        for o in p[IPv6ExtHdrDestOpt].options:
            if isinstance(o, HAO):
                hao = o.hoa
    coa = p[IPv6].src
    ba = (Ether(dst=p[Ether].src) / IPv6(src=a.ha, dst=coa)
          / IPv6ExtHdrRouting(type=2, segleft=1, addresses=[hao])
          / MIP6MH_BA(status=0, seq=bu.seq, mhtime=bu.mhtime))
    sendp(ba, iface=a.iface)
    out = {"coa": coa, "hoa": hao, "seq": bu.seq, "lifetime": bu.mhtime,
           "flags": str(bu.flags), "checksum_ok": mh_checksum_ok(hao or coa, a.ha, raw(bu))}
    if a.then_brr:
        # A Binding Refresh Request to the registered node (RFC 6275 6.1.2, RH2 like the BA);
        # the node should answer with a new BU (11.7.4).
        time.sleep(1.0)
        brr = (Ether(dst=p[Ether].src) / IPv6(src=a.ha, dst=coa)
               / IPv6ExtHdrRouting(type=2, segleft=1, addresses=[hao]) / MIP6MH_BRR())
        def is_next_bu(q):
            return is_bu(q) and q[MIP6MH_BU].seq != bu.seq
        again = send_and_await(a, brr, is_next_bu)
        out["after_brr_seq"] = again[MIP6MH_BU].seq if again is not None else None
    print(json.dumps(out))


def cmd_ns(a):
    """Sends a Neighbor Solicitation for a.target (from a.src, :: for a DAD probe) to its
    solicited-node group and prints the Neighbor Advertisement that answers it."""
    from scapy.all import get_if_hwaddr
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr, in6_getnsma, in6_getnsmac, inet_pton, inet_ntop
    import socket
    group = inet_ntop(socket.AF_INET6, in6_getnsma(inet_pton(socket.AF_INET6, a.target)))
    mac = get_if_hwaddr(a.iface)
    ns = Ether(src=mac, dst=in6_getnsmac(inet_pton(socket.AF_INET6, group))) / IPv6(src=a.src, dst=group, hlim=255) / ICMPv6ND_NS(tgt=a.target)
    if a.src != "::":
        ns = ns / ICMPv6NDOptSrcLLAddr(lladdr=mac)

    def is_na(p):
        return ICMPv6ND_NA in p and p[ICMPv6ND_NA].tgt == a.target

    p = send_and_await(a, ns, is_na)
    if p is None:
        print(json.dumps({"timeout": True}))
        return
    na = p[ICMPv6ND_NA]
    tlla = p[ICMPv6NDOptDstLLAddr].lladdr if ICMPv6NDOptDstLLAddr in p else None
    print(json.dumps({"eth_src": p[Ether].src, "eth_dst": p[Ether].dst, "src": p[IPv6].src,
                      "dst": p[IPv6].dst, "hlim": p[IPv6].hlim, "target": na.tgt, "tlla": tlla,
                      "R": na.R, "S": na.S, "O": na.O}))


def cmd_mh(a):
    from scapy.all import send
    msgs = [MIP6MH_HoT(index=5, cookie=b"\x11" * 8, token=b"\x22" * 8),
            MIP6MH_BRR(),
            MIP6MH_BE(status=1, ha=a.dst)]
    for m in msgs:
        send(IPv6(dst=a.dst) / m)
        time.sleep(0.1)
    print(json.dumps({"sent": [raw(m)[2] for m in msgs]}))


def cmd_hoti(a):
    pkt = (Ether(dst=a.router_mac) / IPv6(src=a.coa, dst=a.ha, nh=41)
           / IPv6(src=a.hoa, dst=a.cn) / MIP6MH_HoTI(cookie=b"\x33" * 8))
    sendp(pkt, iface=a.iface)
    print(json.dumps({"sent": 1}))


def cmd_sniff_mh(a):
    from scapy.all import sniff
    def is_mh(p):
        return IPv6 in p and p[IPv6].nh == 135 and p[IPv6].src == a.src
    got = sniff(iface=a.iface, lfilter=is_mh, count=1, timeout=a.timeout)
    out = [{"src": p[IPv6].src, "dst": p[IPv6].dst, "mh_type": raw(p[IPv6].payload)[2],
            "checksum_ok": mh_checksum_ok(p[IPv6].src, p[IPv6].dst, raw(p[IPv6].payload))}
           for p in got]
    print(json.dumps({"count": len(out), "packets": out}))


def cmd_hao_echo(a):
    def is_be(p):
        return IPv6 in p and MIP6MH_BE in p and p[IPv6].dst == a.src
    echo = (IPv6(src=a.src, dst=a.dst) / IPv6ExtHdrDestOpt(options=[HAO(hoa=a.hoa)])
            / ICMPv6EchoRequest(id=0x4845, seq=1))
    p = send_and_await(a, echo, is_be, routed=True)
    if p is None:
        print(json.dumps({"timeout": True}))
        return
    be = p[MIP6MH_BE]
    print(json.dumps({"src": p[IPv6].src, "dst": p[IPv6].dst, "status": be.status, "hoa": be.ha,
                      "checksum_ok": mh_checksum_ok(p[IPv6].src, p[IPv6].dst, raw(be))}))


def cmd_mps(a):
    from scapy.layers.inet6 import ICMPv6MPSol, ICMPv6MPAdv, ICMPv6NDOptPrefixInfo
    def is_mpa(p):
        if IPv6 not in p or p[IPv6].nh != 41 or p[IPv6].dst != a.coa:
            return False
        return ICMPv6MPAdv in p[IPv6].payload
    pkt = (Ether(dst=a.router_mac) / IPv6(src=a.coa, dst=a.ha, nh=41)
           / IPv6(src=a.hoa, dst=a.ha) / ICMPv6MPSol(id=0x4d50))
    p = send_and_await(a, pkt, is_mpa)
    if p is None:
        print(json.dumps({"timeout": True}))
        return
    inner = p[IPv6].payload
    adv = inner[ICMPv6MPAdv]
    prefixes = [{"prefix": o.prefix, "len": o.prefixlen, "L": o.L, "A": o.A, "R": o.R,
                 "valid": o.validlifetime}
                for o in adv.iterpayloads() if isinstance(o, ICMPv6NDOptPrefixInfo)]
    print(json.dumps({"outer_src": p[IPv6].src, "inner_src": inner.src, "inner_dst": inner.dst,
                      "id": adv.id, "prefixes": prefixes}))


def cmd_dhaad(a):
    from scapy.layers.inet6 import ICMPv6HAADRequest, ICMPv6HAADReply
    def is_reply(p):
        return ICMPv6HAADReply in p and p[ICMPv6HAADReply].id == 0x4242
    request = IPv6(src=a.src, dst=a.anycast) / ICMPv6HAADRequest(id=0x4242)
    p = send_and_await(a, request, is_reply, routed=True)
    if p is None:
        print(json.dumps({"timeout": True}))
        return
    r = p[ICMPv6HAADReply]
    print(json.dumps({"src": p[IPv6].src, "dst": p[IPv6].dst, "id": r.id,
                      "addresses": list(r.addresses)}))


def cmd_ra_ha(a):
    from scapy.all import in6_getifaddr, get_if_hwaddr
    from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptHAInfo
    ll = [x[0] for x in in6_getifaddr() if x[2] == a.iface and x[0].startswith("fe80")][0]
    ra = (Ether(src=get_if_hwaddr(a.iface), dst="33:33:00:00:00:01")
          / IPv6(src=ll, dst="ff02::1", hlim=255)
          / ICMPv6ND_RA(H=1, routerlifetime=1800)
          / ICMPv6NDOptPrefixInfo(prefixlen=64, L=1, A=0, R=1, prefix=a.address)
          / ICMPv6NDOptHAInfo(pref=a.pref, lifetime=a.lifetime))
    sendp(ra, iface=a.iface)
    print(json.dumps({"sent": 1, "src": ll}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("bu", "tunnel", "reverse", "ha", "ns", "mh", "hoti", "sniff-mh", "dhaad", "ra-ha",
                 "hao-echo", "mps"):
        p = sub.add_parser(name)
        p.add_argument("--iface", default="eth0")
        p.add_argument("--router-mac", default=None)
        p.add_argument("--coa", required=(name not in ("ha", "ns", "mh", "sniff-mh", "dhaad", "ra-ha",
                                                       "hao-echo")))
        p.add_argument("--timeout", type=float, default=3.0)
        if name == "ha":
            p.add_argument("--ha", required=True)
            p.add_argument("--then-brr", action="store_true")
        if name in ("bu", "reverse", "hoti", "mps"):
            p.add_argument("--ha", required=True)
            p.add_argument("--hoa", required=True)
        if name == "bu":
            p.add_argument("--seq", type=int, required=True)
            p.add_argument("--lifetime", type=int, required=True, help="4-second units")
            p.add_argument("--flags", default="AH")
            p.add_argument("--alt-coa", default=None)
            p.add_argument("--bad-checksum", action="store_true")
        if name == "tunnel":
            p.add_argument("--duration", type=float, default=3.0)
        if name in ("reverse", "hoti"):
            p.add_argument("--cn", required=True)
        if name == "reverse":
            p.add_argument("--count", type=int, default=3)
        if name == "mh":
            p.add_argument("--dst", required=True)
        if name == "sniff-mh":
            p.add_argument("--src", required=True)
        if name == "dhaad":
            p.add_argument("--src", required=True)
            p.add_argument("--anycast", required=True)
        if name == "hao-echo":
            p.add_argument("--src", required=True)
            p.add_argument("--dst", required=True)
            p.add_argument("--hoa", required=True)
        if name == "ra-ha":
            p.add_argument("--address", required=True)
            p.add_argument("--pref", type=int, default=0)
            p.add_argument("--lifetime", type=int, default=1800)
        if name == "ns":
            p.add_argument("--src", required=True)
            p.add_argument("--target", required=True)
    a = ap.parse_args()
    {"bu": cmd_bu, "tunnel": cmd_tunnel, "reverse": cmd_reverse, "ha": cmd_ha, "ns": cmd_ns,
     "mh": cmd_mh, "hoti": cmd_hoti, "sniff-mh": cmd_sniff_mh, "dhaad": cmd_dhaad,
     "ra-ha": cmd_ra_ha, "hao-echo": cmd_hao_echo, "mps": cmd_mps}[a.cmd](a)


if __name__ == "__main__":
    main()
