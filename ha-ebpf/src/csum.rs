//! One's-complement Internet checksum arithmetic (RFC 1071), shared by the programs (which get
//! partial sums from `bpf_csum_diff`) and the host tests.

/// Adds a 32-bit partial sum into an accumulator, as `bpf_csum_diff` returns them.
#[inline(always)]
pub fn add(acc: u64, value: u32) -> u64 {
    acc + value as u64
}

/// Folds an accumulator to 16 bits and complements it: the checksum field's value.
#[inline(always)]
pub fn finish(mut acc: u64) -> u16 {
    // Four folds are enough for any 64-bit accumulator.
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// Sum of 16-bit big-endian words of `bytes` (an odd trailing byte is padded with zero).
#[inline(always)]
pub fn sum_be16(bytes: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut i = 0;
    while i + 1 < bytes.len() {
        acc += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u64;
        i += 2;
    }
    if i < bytes.len() {
        acc += (bytes[i] as u64) << 8;
    }
    acc
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1).
#[inline(always)]
pub fn pseudo_header(src: &[u8; 16], dst: &[u8; 16], upper_len: u32, next_header: u8) -> u64 {
    sum_be16(src)
        + sum_be16(dst)
        + (upper_len >> 16) as u64
        + (upper_len & 0xffff) as u64
        + next_header as u64
}

/// Converts a sum of native-endian (little-endian on BPF and x86) 32-bit words, as
/// `bpf_csum_diff` computes them, into a sum of big-endian 16-bit words.
#[inline(always)]
pub fn from_native(sum: u64) -> u64 {
    // Folding the native sum to 16 bits and swapping its bytes yields the network-order
    // one's-complement sum (RFC 1071 §2(B): byte order independence).
    let mut s = sum;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    (s as u16).swap_bytes() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (before complement).
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum_be16(&bytes)), !0xddf2);
    }

    #[test]
    fn native_word_sums_convert() {
        let bytes: Vec<u8> = (0..1232u32).map(|i| (i * 37 + 11) as u8).collect();
        // What bpf_csum_diff does on a little-endian machine: add 32-bit native words.
        let native: u64 = bytes
            .chunks(4)
            .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64)
            .sum();
        assert_eq!(finish(from_native(native)), finish(sum_be16(&bytes)));
    }
}
