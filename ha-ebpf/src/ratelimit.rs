//! Token bucket for ICMPv6 errors the data plane generates (RFC 4443 §2.4(f)).

use ha_common::abi::RateLimit;

/// Burst allowed after a quiet period.
pub const BURST: u64 = 10;

/// Takes a token if one is available, refilling at `rate_per_sec` since the last call.
#[inline(always)]
pub fn allow(state: &mut RateLimit, now_ns: u64, rate_per_sec: u32) -> bool {
    if rate_per_sec == 0 {
        return false;
    }
    let interval = 1_000_000_000 / rate_per_sec as u64;
    let elapsed = now_ns.saturating_sub(state.last_ns);
    let refill = elapsed / interval.max(1);
    if refill > 0 {
        state.tokens = (state.tokens + refill).min(BURST);
        state.last_ns = now_ns;
    }
    if state.tokens == 0 {
        return false;
    }
    state.tokens -= 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut s = RateLimit::default();
        let t0 = 10_000_000_000u64;
        // A long quiet period fills the bucket to the burst.
        let sent = (0..100).filter(|_| allow(&mut s, t0, 100)).count();
        assert_eq!(sent as u64, BURST);
        // 100/s: one more token every 10 ms.
        assert!(!allow(&mut s, t0 + 5_000_000, 100));
        assert!(allow(&mut s, t0 + 10_000_000, 100));
        assert!(!allow(&mut s, t0 + 10_000_001, 100));
    }

    #[test]
    fn zero_rate_sends_nothing() {
        let mut s = RateLimit::default();
        assert!(!allow(&mut s, 1 << 40, 0));
    }
}
