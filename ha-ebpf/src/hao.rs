//! The Home Address destination option (RFC 6275 §6.3) in signalling sent to the home agent.
//!
//! A kernel without `CONFIG_IPV6_MIP6` discards packets carrying it (option type 0xC9: "discard
//! and send Parameter Problem"). Like the kernel's own mip6 input code, the data plane swaps
//! the IPv6 source (the care-of address) with the option's home address, and then retypes the
//! option to [`HAO_SWAPPED`], an option the kernel skips, so the packet reaches xfrm and the
//! daemon's raw socket looking as if it came from the home address; the daemon reads the
//! care-of address from the retyped option (IPV6_RECVDSTOPTS).

/// Home Address option type.
pub const HAO_TYPE: u8 = 0xC9;
/// Length of the Home Address option's data.
pub const HAO_LEN: u8 = 16;
/// The type a rewritten Home Address option gets (it then carries the care-of address).
pub use ha_common::mh::HAO_SWAPPED;
/// Longest Destination Options header searched (a BU's is 24 bytes). A power of two.
pub const MAX_DSTOPTS_LEN: usize = 64;
const _: () = assert!(MAX_DSTOPTS_LEN.is_power_of_two());
/// Most options scanned in one header (a BU's has two: PadN and the HAO).
pub const MAX_OPTIONS: usize = 8;

/// What a Destination Options header holds, as far as the home agent is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DstOpts {
    /// A Home Address option whose type byte is at this offset in the header.
    HomeAddress(usize),
    /// An already swapped option: forged.
    Forged,
    /// Neither.
    None,
    /// Malformed: leave it to the kernel.
    Unparsed,
}

/// Length in bytes of a Destination Options header from its Hdr Ext Len byte.
#[inline(always)]
pub fn header_len(hdr_ext_len: u8) -> usize {
    (hdr_ext_len as usize + 1) * 8
}

/// Scans a Destination Options header (its first `len` bytes are valid in `h`) for a Home
/// Address option.
///
/// The programs copy the header to the stack first (`bpf_xdp_load_bytes`): scanning a stack
/// buffer with bounded indices is what the verifier accepts, while variable offsets into the
/// packet are not provable after LLVM reassociates the bounds checks.
#[inline(always)]
pub fn scan_dstopts(h: &[u8; MAX_DSTOPTS_LEN], len: usize) -> DstOpts {
    if !(8..=MAX_DSTOPTS_LEN).contains(&len) {
        return DstOpts::Unparsed;
    }
    let mut pos = 2usize;
    // A small constant bound keeps the verifier's work small — older verifiers (6.1) walk
    // every iteration. A header with more options than this is left to the kernel.
    for _ in 0..MAX_OPTIONS {
        if pos >= len {
            return DstOpts::None;
        }
        // Indices are masked (MAX_DSTOPTS_LEN is a power of two) rather than bounds-checked:
        // the verifier tracks a mask, but older ones (6.1) not a comparison against another
        // register. black_box keeps LLVM from dropping the mask it can prove redundant.
        let opt_type = h[core::hint::black_box(pos) & (MAX_DSTOPTS_LEN - 1)];
        if opt_type == 0 {
            // Pad1
            pos += 1;
            continue;
        }
        if pos + 1 >= len {
            return DstOpts::Unparsed;
        }
        let opt_len = h[core::hint::black_box(pos + 1) & (MAX_DSTOPTS_LEN - 1)];
        if opt_type == HAO_TYPE && opt_len == HAO_LEN {
            if pos + 2 + HAO_LEN as usize > len {
                return DstOpts::Unparsed;
            }
            return DstOpts::HomeAddress(pos);
        }
        if opt_type == HAO_SWAPPED {
            return DstOpts::Forged;
        }
        pos += 2 + opt_len as usize;
    }
    DstOpts::Unparsed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BU's destination options header: next header 135, length 2 (24 bytes), PadN(4),
    /// HAO at 8n+6.
    fn bu_dstopts() -> [u8; MAX_DSTOPTS_LEN] {
        let mut h = [0u8; MAX_DSTOPTS_LEN];
        h[..8].copy_from_slice(&[135, 2, 1, 2, 0, 0, HAO_TYPE, 16]);
        h[8..24].copy_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0xbe, 0xe5, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xfa, 0xce,
        ]);
        h
    }

    #[test]
    fn finds_the_home_address_option() {
        let h = bu_dstopts();
        assert_eq!(header_len(h[1]), 24);
        assert_eq!(scan_dstopts(&h, 24), DstOpts::HomeAddress(6));
    }

    #[test]
    fn forged_marker_is_reported() {
        let mut h = bu_dstopts();
        h[6] = HAO_SWAPPED;
        assert_eq!(scan_dstopts(&h, 24), DstOpts::Forged);
    }

    #[test]
    fn no_option_or_truncated() {
        let mut h = [0u8; MAX_DSTOPTS_LEN];
        h[..8].copy_from_slice(&[59, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(scan_dstopts(&h, 8), DstOpts::None);
        // The HAO runs past the header's end.
        assert_eq!(scan_dstopts(&bu_dstopts(), 16), DstOpts::Unparsed);
        assert_eq!(scan_dstopts(&bu_dstopts(), 72), DstOpts::Unparsed);
    }

    #[test]
    fn wrong_length_hao_is_not_a_hao() {
        let mut h = bu_dstopts();
        h[7] = 8; // HAO with length 8: not ours to interpret; skip over it
        assert_eq!(scan_dstopts(&h, 24), DstOpts::None);
    }

    #[test]
    fn never_panics_on_any_header() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut h = [0u8; MAX_DSTOPTS_LEN];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let _ = scan_dstopts(&h, (x >> 32) as usize % 80);
        }
    }
}
