//! ICMPv6 checksums (RFC 4443 §2.3) summed by `bpf_csum_diff`, for the XDP and TC programs:
//! Neighbor Advertisements they write, Neighbor Solicitations they check, Packet Too Big
//! messages they build. An unrolled byte sum would not fit the programs' stacks.

use aya_ebpf::helpers::bpf_csum_diff;
use ha_ebpf::{csum, headers::PTB_QUOTE_LEN, parse::IPPROTO_ICMPV6};

/// The native-endian sum of the `n` bytes at `p` (`n` a multiple of 4, at most 512).
///
/// # Safety
/// `p .. p + n` must be memory the verifier knows to be readable: a bounds-checked packet
/// range or a stack buffer.
#[inline(always)]
unsafe fn sum(p: *const u8, n: u32) -> Result<u64, ()> {
    // SAFETY: the caller's promise; bpf_csum_diff only reads `p`.
    let s = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, p as *mut u32, n, 0) };
    if s < 0 { Err(()) } else { Ok(s as u64) }
}

/// The checksum field's value for an ICMPv6 message of `icmp_len` bytes: `addrs` are the 32
/// bytes of source and destination address (contiguous in its IPv6 header), `msg` the message
/// summed over `summed` bytes (zero padding past `icmp_len` adds nothing). Over a message with
/// its checksum in place, 0 means the checksum is right.
///
/// # Safety
/// As [`sum`], for `addrs .. addrs + 32` and `msg .. msg + summed`.
#[inline(always)]
pub unsafe fn checksum(
    addrs: *const u8,
    msg: *const u8,
    summed: u32,
    icmp_len: usize,
) -> Result<u16, ()> {
    // SAFETY: the caller's promise.
    let native = unsafe { sum(addrs, 32)? + sum(msg, summed)? };
    Ok(csum::finish(
        csum::from_native(native) + icmp_len as u64 + IPPROTO_ICMPV6 as u64,
    ))
}

/// The checksum field's value for a Packet Too Big from `from` to `to` with header `hdr`
/// (checksum zero) and the [`PTB_QUOTE_LEN`]-byte quote at `quote`, summed in 512-byte
/// pieces (`bpf_csum_diff`'s most).
///
/// # Safety
/// As [`sum`], for `quote .. quote + PTB_QUOTE_LEN`.
#[inline(always)]
pub unsafe fn ptb_checksum(
    from: &[u8; 16],
    to: &[u8; 16],
    hdr: &[u8; 8],
    quote: *const u8,
) -> Result<[u8; 2], ()> {
    let mut native = 0u64;
    for (off, n) in [
        (0usize, 512u32),
        (512, 512),
        (1024, (PTB_QUOTE_LEN - 1024) as u32),
    ] {
        // SAFETY: off + n ≤ PTB_QUOTE_LEN; the caller's promise covers the quote.
        native += unsafe { sum(quote.add(off), n)? };
    }
    let acc = csum::pseudo_header(from, to, (8 + PTB_QUOTE_LEN) as u32, IPPROTO_ICMPV6)
        + csum::sum_be16(hdr)
        + csum::from_native(native);
    Ok(csum::finish(acc).to_be_bytes())
}
