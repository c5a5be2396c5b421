//! Neighbor Discovery (RFC 4861) as a home agent needs it on its home links: validating a
//! Neighbor Solicitation, and building the Neighbor Advertisement that answers it or announces
//! a binding (RFC 6275 §10.4.1).
//!
//! Shared by the data plane (which answers solicitations for bound home addresses itself,
//! instead of a kernel proxy entry per binding) and the daemon (DAD probes, unsolicited
//! advertisements), so both speak one definition. Written for the BPF verifier as much as for
//! the host: fixed-size buffers, constant loop bounds, masked indices, no allocation, no panic.

/// ICMPv6 type of a Router Solicitation (the first of the ND types, RFC 4861 §4).
pub const ICMPV6_RS: u8 = 133;
/// ICMPv6 type of a Redirect (the last of the ND types).
pub const ICMPV6_REDIRECT: u8 = 137;
/// ICMPv6 type of a Neighbor Solicitation.
pub const ICMPV6_NS: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement.
pub const ICMPV6_NA: u8 = 136;
/// The hop limit every ND message is sent and must be received with (RFC 4861 §7.1).
pub const ND_HOP_LIMIT: u8 = 255;

/// Neighbor Advertisement flags (the first byte after the checksum).
pub const NA_FLAG_ROUTER: u8 = 0x80;
pub const NA_FLAG_SOLICITED: u8 = 0x40;
pub const NA_FLAG_OVERRIDE: u8 = 0x20;

/// ND option: Source Link-Layer Address.
pub const OPT_SOURCE_LLADDR: u8 = 1;
/// ND option: Target Link-Layer Address.
pub const OPT_TARGET_LLADDR: u8 = 2;

/// Shortest valid NS/NA: type, code, checksum, 4 reserved/flag bytes, the target (RFC 4861
/// §7.1.1).
pub const ND_MIN_LEN: usize = 24;
/// Longest Neighbor Solicitation the data plane answers itself: the header and up to five
/// 8-octet options (source link-layer address, nonce, ...). Longer ones are left to the
/// kernel. A power of two, so indices into it can be masked.
pub const NS_MAX_LEN: usize = 64;
const _: () = assert!(NS_MAX_LEN.is_power_of_two());
/// Length of the Neighbor Advertisements built here: the header and a Target Link-Layer
/// Address option for Ethernet.
pub const NA_LEN: usize = ND_MIN_LEN + 8;
/// An NA as an IPv6 packet (fixed header and ICMPv6 message).
pub const NA_PACKET_LEN: usize = 40 + NA_LEN;
/// An NA as an Ethernet frame.
pub const NA_FRAME_LEN: usize = 14 + NA_PACKET_LEN;

/// ff02::1, the all-nodes multicast address.
pub const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// 33:33:00:00:00:01, the Ethernet address of ff02::1 (RFC 2464 §7).
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1): ff02::1:ff00:0/104 plus the low 24 bits of `a`.
#[inline(always)]
pub fn solicited_node(a: &[u8; 16]) -> [u8; 16] {
    [
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, a[13], a[14], a[15],
    ]
}

/// The Ethernet multicast address of an IPv6 multicast address (RFC 2464 §7).
#[inline(always)]
pub fn multicast_mac(group: &[u8; 16]) -> [u8; 6] {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

#[inline(always)]
fn is_unspecified(a: &[u8; 16]) -> bool {
    let mut any = 0u8;
    let mut i = 0;
    while i < 16 {
        any |= a[i];
        i += 1;
    }
    any == 0
}

/// Why a Neighbor Solicitation is not one to answer (RFC 4861 §7.1.1), or not one the data
/// plane answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsInvalid {
    /// Hop limit is not 255: the packet may come from off-link.
    HopLimit,
    /// ICMP code is not 0.
    Code,
    /// Shorter than 24 octets, or longer than [`NS_MAX_LEN`] (left to the kernel).
    Length,
    /// The ICMPv6 checksum does not verify.
    Checksum,
    /// The target is a multicast address.
    MulticastTarget,
    /// An option of length zero, or one that runs past the message.
    Options,
    /// From the unspecified address but not to the target's solicited-node group, or with a
    /// source link-layer address option.
    BadDad,
}

/// A valid Neighbor Solicitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ns {
    pub target: [u8; 16],
    /// From the unspecified address: a Duplicate Address Detection probe (RFC 4862 §5.4.2).
    pub dad: bool,
}

/// Sum of the 16-bit big-endian words of `b` (one's-complement arithmetic, unfolded).
#[inline(always)]
fn sum16<const N: usize>(b: &[u8; N]) -> u32 {
    let mut s = 0u32;
    let mut i = 0;
    while i + 1 < N {
        s += u16::from_be_bytes([b[i], b[i + 1]]) as u32;
        i += 2;
    }
    s
}

#[inline(always)]
fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The ICMPv6 checksum field for a message of `len` octets whose first bytes are in `msg`
/// (zero beyond `len`, and zero in the checksum field) from `src` to `dst`.
#[inline(always)]
pub fn icmpv6_checksum<const N: usize>(
    src: &[u8; 16],
    dst: &[u8; 16],
    msg: &[u8; N],
    len: usize,
) -> u16 {
    let s = sum16(src) + sum16(dst) + (len as u32 & 0xffff) + (len as u32 >> 16) + 58 + sum16(msg);
    !fold(s)
}

/// Validates a Neighbor Solicitation (RFC 4861 §7.1.1). `msg` holds the ICMPv6 message (its
/// first `len` octets; zero after them), `hop_limit`, `src` and `dst` come from its IPv6
/// header, which must have carried no extension header.
#[inline(always)]
pub fn check_ns(
    msg: &[u8; NS_MAX_LEN],
    len: usize,
    hop_limit: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> Result<Ns, NsInvalid> {
    let ns = check_ns_fields(msg, len, hop_limit, src, dst)?;
    // With the checksum field included, a correct message sums to 0xffff.
    let s = sum16(src) + sum16(dst) + len as u32 + 58 + sum16(msg);
    if fold(s) != 0xffff {
        return Err(NsInvalid::Checksum);
    }
    Ok(ns)
}

/// [`check_ns`] without the checksum, for callers that sum with their own means (the XDP
/// program uses `bpf_csum_diff`: an unrolled sum of 96 bytes does not fit the BPF stack).
#[inline(always)]
pub fn check_ns_fields(
    msg: &[u8; NS_MAX_LEN],
    len: usize,
    hop_limit: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
) -> Result<Ns, NsInvalid> {
    if hop_limit != ND_HOP_LIMIT {
        return Err(NsInvalid::HopLimit);
    }
    if msg[1] != 0 {
        return Err(NsInvalid::Code);
    }
    if !(ND_MIN_LEN..=NS_MAX_LEN).contains(&len) {
        return Err(NsInvalid::Length);
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&msg[8..24]);
    if target[0] == 0xff {
        return Err(NsInvalid::MulticastTarget);
    }
    // Options: each with a non-zero length, none past the end. At most (64 - 24) / 8 = 5 fit.
    let mut pos = ND_MIN_LEN;
    let mut has_slla = false;
    for _ in 0..(NS_MAX_LEN - ND_MIN_LEN) / 8 {
        if pos >= len {
            break;
        }
        if pos + 2 > len {
            return Err(NsInvalid::Options);
        }
        // Masked: the verifier tracks masks where it cannot follow the comparison above
        // (6.1's cannot); black_box keeps LLVM from dropping the mask it proves redundant.
        let t = msg[core::hint::black_box(pos) & (NS_MAX_LEN - 1)];
        let l = msg[core::hint::black_box(pos + 1) & (NS_MAX_LEN - 1)] as usize * 8;
        if l == 0 || pos + l > len {
            return Err(NsInvalid::Options);
        }
        has_slla |= t == OPT_SOURCE_LLADDR;
        pos += l;
    }
    if pos < len {
        return Err(NsInvalid::Options);
    }
    let dad = is_unspecified(src);
    if dad && (*dst != solicited_node(&target) || has_slla) {
        return Err(NsInvalid::BadDad);
    }
    Ok(Ns { target, dad })
}

/// A Neighbor Advertisement as an IPv6 packet: from `src` to `dst`, hop limit 255, for
/// `target` with `flags` (`NA_FLAG_*`) and a Target Link-Layer Address option of `mac`.
#[inline(always)]
pub fn na_packet(
    src: &[u8; 16],
    dst: &[u8; 16],
    target: &[u8; 16],
    flags: u8,
    mac: &[u8; 6],
) -> [u8; NA_PACKET_LEN] {
    let f = na_frame(&[0; 6], mac, src, dst, target, flags);
    let mut p = [0u8; NA_PACKET_LEN];
    p.copy_from_slice(&f[14..]);
    p
}

/// A Neighbor Advertisement in an Ethernet frame from `src_mac` to `dst_mac` (see
/// [`na_packet`]); the target link-layer address is `src_mac`.
#[inline(always)]
pub fn na_frame(
    dst_mac: &[u8; 6],
    src_mac: &[u8; 6],
    src: &[u8; 16],
    dst: &[u8; 16],
    target: &[u8; 16],
    flags: u8,
) -> [u8; NA_FRAME_LEN] {
    let mut f = [0u8; NA_FRAME_LEN];
    write_na_fields(&mut f, dst_mac, src_mac, src, dst, target, flags);
    let c = na_checksum(&f).to_be_bytes();
    f[NA_CHECKSUM] = c[0];
    f[NA_CHECKSUM + 1] = c[1];
    f
}

/// Offset of the ICMPv6 checksum in an NA frame.
pub const NA_CHECKSUM: usize = 14 + 40 + 2;

/// Writes every byte of an NA frame but the checksum (left zero), for callers that sum with
/// their own means (the XDP program, with `bpf_csum_diff`).
#[inline(always)]
pub fn write_na_fields(
    f: &mut [u8; NA_FRAME_LEN],
    dst_mac: &[u8; 6],
    src_mac: &[u8; 6],
    src: &[u8; 16],
    dst: &[u8; 16],
    target: &[u8; 16],
    flags: u8,
) {
    const IP: usize = 14;
    const ICMP: usize = IP + 40;
    f[..6].copy_from_slice(dst_mac);
    f[6..12].copy_from_slice(src_mac);
    f[12] = 0x86;
    f[13] = 0xdd;
    f[IP] = 0x60;
    f[IP + 1] = 0;
    f[IP + 2] = 0;
    f[IP + 3] = 0;
    f[IP + 4] = 0;
    f[IP + 5] = NA_LEN as u8;
    f[IP + 6] = 58;
    f[IP + 7] = ND_HOP_LIMIT;
    f[IP + 8..IP + 24].copy_from_slice(src);
    f[IP + 24..IP + 40].copy_from_slice(dst);
    f[ICMP] = ICMPV6_NA;
    f[ICMP + 1] = 0;
    f[ICMP + 2] = 0;
    f[ICMP + 3] = 0;
    f[ICMP + 4] = flags;
    f[ICMP + 5] = 0;
    f[ICMP + 6] = 0;
    f[ICMP + 7] = 0;
    f[ICMP + 8..ICMP + 24].copy_from_slice(target);
    f[ICMP + 24] = OPT_TARGET_LLADDR;
    f[ICMP + 25] = 1;
    f[ICMP + 26..ICMP + 32].copy_from_slice(src_mac);
}

/// The checksum of an NA frame written by [`write_na_fields`] (pseudo-header and message).
pub fn na_checksum(f: &[u8; NA_FRAME_LEN]) -> u16 {
    let mut s = NA_LEN as u32 + 58;
    // Source and destination addresses, then the message.
    let mut i = 14 + 8;
    while i + 1 < 14 + 40 {
        s += u16::from_be_bytes([f[i], f[i + 1]]) as u32;
        i += 2;
    }
    let mut i = 14 + 40;
    while i + 1 < NA_FRAME_LEN {
        s += u16::from_be_bytes([f[i], f[i + 1]]) as u32;
        i += 2;
    }
    !fold(s)
}

/// What a proxy answers to a valid solicitation (RFC 4861 §7.2.4, §7.2.8; RFC 6275 §10.4.1):
/// (IPv6 destination, Ethernet destination, flags). To a DAD probe: all nodes, not solicited;
/// otherwise back to the solicitor, solicited. Override stays clear, as for every proxied
/// advertisement, so the node itself wins should it be on the link.
#[inline(always)]
pub fn proxy_reply(
    ns: &Ns,
    solicitor: &[u8; 16],
    solicitor_mac: &[u8; 6],
) -> ([u8; 16], [u8; 6], u8) {
    if ns.dad {
        (ALL_NODES, ALL_NODES_MAC, 0)
    } else {
        (*solicitor, *solicitor_mac, NA_FLAG_SOLICITED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOA: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0xbe, 0xe5, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xfa, 0xce,
    ];
    const ROUTER: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0xbe, 0xe5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];

    /// An NS for `target` from `src` to `dst` with `options`, checksummed.
    fn ns(src: &[u8; 16], dst: &[u8; 16], target: &[u8; 16], options: &[u8]) -> ([u8; 64], usize) {
        let mut m = [0u8; 64];
        m[0] = ICMPV6_NS;
        m[8..24].copy_from_slice(target);
        m[24..24 + options.len()].copy_from_slice(options);
        let len = 24 + options.len();
        let c = icmpv6_checksum(src, dst, &m, len).to_be_bytes();
        m[2..4].copy_from_slice(&c);
        (m, len)
    }

    #[test]
    fn a_solicitation_with_source_lladdr_is_valid_rfc4861_7_1_1() {
        let dst = solicited_node(&HOA);
        let (m, len) = ns(&ROUTER, &dst, &HOA, &[1, 1, 2, 0, 0, 0, 0, 0xaa]);
        assert_eq!(
            check_ns(&m, len, 255, &ROUTER, &dst),
            Ok(Ns {
                target: HOA,
                dad: false
            })
        );
        assert_eq!(
            check_ns(&m, len, 254, &ROUTER, &dst),
            Err(NsInvalid::HopLimit)
        );
        let mut bad = m;
        bad[30] ^= 1;
        assert_eq!(
            check_ns(&bad, len, 255, &ROUTER, &dst),
            Err(NsInvalid::Checksum)
        );
        let mut code = m;
        code[1] = 1;
        assert_eq!(
            check_ns(&code, len, 255, &ROUTER, &dst),
            Err(NsInvalid::Code)
        );
    }

    #[test]
    fn dad_probes_come_from_unspecified_to_the_solicited_node_group_rfc4862_5_4_2() {
        let any = [0u8; 16];
        let group = solicited_node(&HOA);
        // With a nonce option (RFC 7527), as Linux sends them.
        let (m, len) = ns(&any, &group, &HOA, &[14, 1, 1, 2, 3, 4, 5, 6]);
        assert_eq!(
            check_ns(&m, len, 255, &any, &group),
            Ok(Ns {
                target: HOA,
                dad: true
            })
        );
        // To another group: not a DAD probe for this target.
        let (m, len) = ns(&any, &ALL_NODES, &HOA, &[]);
        assert_eq!(
            check_ns(&m, len, 255, &any, &ALL_NODES),
            Err(NsInvalid::BadDad)
        );
        // A source link-layer address option from :: is forbidden.
        let (m, len) = ns(&any, &group, &HOA, &[1, 1, 2, 0, 0, 0, 0, 0xaa]);
        assert_eq!(check_ns(&m, len, 255, &any, &group), Err(NsInvalid::BadDad));
    }

    #[test]
    fn options_must_have_a_length_and_fit() {
        let dst = solicited_node(&HOA);
        let (m, len) = ns(&ROUTER, &dst, &HOA, &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            check_ns(&m, len, 255, &ROUTER, &dst),
            Err(NsInvalid::Options)
        );
        let (m, len) = ns(&ROUTER, &dst, &HOA, &[1, 2, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            check_ns(&m, len, 255, &ROUTER, &dst),
            Err(NsInvalid::Options)
        );
        let mut mc = HOA;
        mc[0] = 0xff;
        let (m, len) = ns(&ROUTER, &dst, &mc, &[]);
        assert_eq!(
            check_ns(&m, len, 255, &ROUTER, &dst),
            Err(NsInvalid::MulticastTarget)
        );
        assert_eq!(check_ns(&m, 16, 255, &ROUTER, &dst), Err(NsInvalid::Length));
    }

    #[test]
    fn advertisements_verify_and_carry_our_address() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = na_frame(
            &ALL_NODES_MAC,
            &mac,
            &ROUTER,
            &ALL_NODES,
            &HOA,
            NA_FLAG_OVERRIDE,
        );
        assert_eq!(f.len(), 86);
        assert_eq!(&f[..6], &ALL_NODES_MAC);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(f[14 + 7], 255);
        assert_eq!(f[54], ICMPV6_NA);
        assert_eq!(f[58], NA_FLAG_OVERRIDE);
        assert_eq!(&f[62..78], &HOA);
        assert_eq!(&f[78..80], &[2, 1]);
        assert_eq!(&f[80..86], &mac);
        let mut msg = [0u8; NA_LEN];
        msg.copy_from_slice(&f[54..]);
        let s = sum16(&ROUTER) + sum16(&ALL_NODES) + NA_LEN as u32 + 58 + sum16(&msg);
        assert_eq!(fold(s), 0xffff, "checksum verifies");
    }

    #[test]
    fn proxy_replies_rfc4861_7_2_4() {
        let mac = [2, 0, 0, 0, 0, 0xaa];
        let dad = Ns {
            target: HOA,
            dad: true,
        };
        assert_eq!(
            proxy_reply(&dad, &[0; 16], &mac),
            (ALL_NODES, ALL_NODES_MAC, 0)
        );
        let ns = Ns {
            target: HOA,
            dad: false,
        };
        assert_eq!(
            proxy_reply(&ns, &ROUTER, &mac),
            (ROUTER, mac, NA_FLAG_SOLICITED)
        );
    }

    #[test]
    fn never_panics() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..50_000 {
            let mut m = [0u8; 64];
            for b in m.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let _ = check_ns(&m, (x >> 40) as usize % 80, 255, &[0; 16], &ALL_NODES);
        }
    }
}
