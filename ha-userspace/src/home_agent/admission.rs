//! Admission of new registrations from a source: a token bucket per care-of /64 (a node
//! rotates addresses inside its /64 freely; the /64 is what it cannot leave), in a table of
//! bounded size. When the table is full of active sources, the rest share one bucket, so a
//! flood from many prefixes degrades to one global budget instead of unbounded memory. Pure:
//! time is an argument.

use std::{
    collections::HashMap,
    net::Ipv6Addr,
    time::{Duration, Instant},
};

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn refill(&mut self, rate: u32, burst: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.last = now;
    }

    fn take(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether it would be full now (an idle source: forgetting it changes nothing).
    fn idle(&self, rate: u32, burst: u32, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, burst, now);
        b.tokens >= f64::from(burst)
    }
}

/// New registrations per source prefix.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: u32,
    burst: u32,
    max_sources: usize,
    buckets: HashMap<u64, Bucket>,
    /// Shared by the sources that found the table full.
    overflow: Option<Bucket>,
    last_prune: Option<Instant>,
}

impl SourceLimiter {
    /// `rate` registrations per second and `burst` at once per source /64, at most
    /// `max_sources` tracked one by one.
    pub fn new(rate: u32, burst: u32, max_sources: usize) -> Self {
        Self {
            rate,
            burst: burst.max(1),
            max_sources: max_sources.max(1),
            buckets: HashMap::new(),
            overflow: None,
            last_prune: None,
        }
    }

    /// The /64 of an address: what a source is keyed by.
    pub fn key(a: &Ipv6Addr) -> u64 {
        (u128::from(*a) >> 64) as u64
    }

    /// Takes one registration from `source`'s budget; false when it is spent.
    pub fn allow(&mut self, source: &Ipv6Addr, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        let key = Self::key(source);
        if let Some(b) = self.buckets.get_mut(&key) {
            return b.take(rate, burst, now);
        }
        if self.buckets.len() >= self.max_sources {
            self.prune(now);
        }
        if self.buckets.len() < self.max_sources {
            let mut b = Bucket::full(burst, now);
            let ok = b.take(rate, burst, now);
            self.buckets.insert(key, b);
            return ok;
        }
        self.overflow
            .get_or_insert_with(|| Bucket::full(burst, now))
            .take(rate, burst, now)
    }

    /// Forgets idle sources (at most once a second: the scan is O(table)).
    fn prune(&mut self, now: Instant) {
        if self
            .last_prune
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_prune = Some(now);
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| !b.idle(rate, burst, now));
    }

    /// Sources tracked one by one.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut l = SourceLimiter::new(10, 5, 100);
        let t = Instant::now();
        let src = a("2001:db8:f00d::1");
        assert_eq!((0..20).filter(|_| l.allow(&src, t)).count(), 5);
        // A tenth of a second later: one more.
        assert!(l.allow(&src, t + Duration::from_millis(100)));
        assert!(!l.allow(&src, t + Duration::from_millis(100)));
    }

    #[test]
    fn addresses_of_one_slash_64_share_a_budget() {
        let mut l = SourceLimiter::new(1, 2, 100);
        let t = Instant::now();
        assert!(l.allow(&a("2001:db8:f00d::1"), t));
        assert!(l.allow(&a("2001:db8:f00d::2"), t));
        assert!(!l.allow(&a("2001:db8:f00d::3"), t), "same /64");
        assert!(l.allow(&a("2001:db8:f00e::1"), t), "another source");
    }

    #[test]
    fn the_table_is_bounded_and_the_overflow_shares_one_bucket() {
        let mut l = SourceLimiter::new(1, 3, 4);
        let t = Instant::now();
        for i in 0..4u128 {
            let src = Ipv6Addr::from((0x2001_0db8_0000_0000u128 + i) << 64);
            assert!(l.allow(&src, t));
        }
        assert_eq!(l.tracked(), 4);
        // Sources 5.. share one bucket of 3.
        let more: usize = (4..100u128)
            .filter(|i| l.allow(&Ipv6Addr::from((0x2001_0db8_0000_0000u128 + i) << 64), t))
            .count();
        assert_eq!(more, 3);
        assert_eq!(l.tracked(), 4, "bounded");
        // Once the first four are idle they are forgotten and new sources get their own.
        let later = t + Duration::from_secs(10);
        assert!(l.allow(&Ipv6Addr::from(0x2001_0db8_0000_1000u128 << 64), later));
        assert_eq!(l.tracked(), 1);
    }
}
