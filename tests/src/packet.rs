//! Byte-level packet builders for test fixtures. Deliberately independent of the data plane's
//! own header code, so a test compares the programs against a second implementation.

use std::net::Ipv6Addr;

pub type Mac = [u8; 6];

pub fn addr(s: &str) -> Ipv6Addr {
    s.parse().expect("valid IPv6 address")
}

/// Ethernet header.
pub fn eth(dst: Mac, src: Mac) -> Vec<u8> {
    let mut v = Vec::with_capacity(14);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&[0x86, 0xdd]);
    v
}

/// An IPv6 header followed by `payload`.
pub fn ipv6(
    traffic_class: u8,
    flow_label: u32,
    next_header: u8,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + payload.len());
    let word: u32 = (6 << 28) | ((traffic_class as u32) << 20) | (flow_label & 0xfffff);
    v.extend_from_slice(&word.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.push(next_header);
    v.push(hop_limit);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(payload);
    v
}

/// A UDP datagram (checksum computed) with `payload`.
pub fn udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    let c = checksum(src, dst, 17, &v);
    v[6..8].copy_from_slice(&c.to_be_bytes());
    v
}

/// An ICMPv6 message of `icmp_type`/`code` with `body` after the 4-byte header.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, icmp_type: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![icmp_type, code, 0, 0];
    v.extend_from_slice(body);
    let c = checksum(src, dst, 58, &v);
    v[2..4].copy_from_slice(&c.to_be_bytes());
    v
}

/// RFC 1071 checksum over the IPv6 pseudo-header and `data` (whose checksum field is zero).
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += w as u64;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(data.len() as u32).to_be_bytes());
    add(&[0, 0, 0, next_header]);
    add(data);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A filler payload whose bytes differ, so a misplaced copy shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}
