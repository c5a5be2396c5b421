//! Unsolicited Neighbor Advertisements for new bindings (RFC 6275 §10.4.1, RFC 4861 §7.2.6):
//! when a home agent starts defending a home address it multicasts an advertisement so the
//! home link's nodes point their caches at it, and repeats it up to
//! [`MAX_NEIGHBOR_ADVERTISEMENT`] times in all, [`RETRANS_TIMER`] apart — one lost frame must
//! not leave a neighbour sending to the mobile node's old MAC. The repeats stop as soon as the
//! binding is gone (a deregistration: the mobile node then advertises itself, §11.5.4).
//! Sans-IO: the home agent sends what [`Advertisements::handle_timeout`] returns.

use std::{
    collections::VecDeque,
    net::Ipv6Addr,
    time::{Duration, Instant},
};

/// RFC 4861 §10: transmissions of an unsolicited advertisement.
pub const MAX_NEIGHBOR_ADVERTISEMENT: u8 = 3;
/// RFC 4861 §10: RETRANS_TIMER, the spacing of the repeats.
pub const RETRANS_TIMER: Duration = Duration::from_secs(1);
/// Repeats waiting at most (a registration flood's new bindings): beyond it a binding gets its
/// first advertisement only.
pub const MAX_PENDING: usize = 65_536;

#[derive(Debug, Default)]
pub struct Advertisements {
    /// (due, home link, HoA, transmissions so far), in due order (all spaced alike).
    queue: VecDeque<(Instant, u32, Ipv6Addr, u8)>,
    /// Repeats not scheduled because the queue was full.
    pub dropped: u64,
}

impl Advertisements {
    /// A binding for `hoa` on `ifindex` was created at `now`: the first advertisement goes now
    /// (the caller sends it), the repeats are scheduled.
    pub fn start(&mut self, hoa: Ipv6Addr, ifindex: u32, now: Instant) {
        if self.queue.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        self.queue.push_back((now + RETRANS_TIMER, ifindex, hoa, 1));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.front().map(|&(t, ..)| t)
    }

    /// The advertisements due by `now` whose binding is still on that home link
    /// (`bound(hoa, ifindex)`); schedules the next repeat of each.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        bound: impl Fn(&Ipv6Addr, u32) -> bool,
    ) -> Vec<(u32, Ipv6Addr)> {
        let mut due = Vec::new();
        while let Some(&(t, ifindex, hoa, sent)) = self.queue.front() {
            if t > now {
                break;
            }
            self.queue.pop_front();
            if !bound(&hoa, ifindex) {
                continue;
            }
            due.push((ifindex, hoa));
            if sent + 1 < MAX_NEIGHBOR_ADVERTISEMENT {
                self.queue
                    .push_back((t + RETRANS_TIMER, ifindex, hoa, sent + 1));
            }
        }
        due
    }

    /// Repeats scheduled.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn three_transmissions_one_second_apart_rfc4861_7_2_6() {
        let mut ads = Advertisements::default();
        let t0 = Instant::now();
        let hoa = a("2001:db8:bee5::dead:face");
        ads.start(hoa, 2, t0);
        assert_eq!(ads.poll_timeout(), Some(t0 + RETRANS_TIMER));
        assert!(
            ads.handle_timeout(t0 + Duration::from_millis(999), |_, _| true)
                .is_empty()
        );
        assert_eq!(
            ads.handle_timeout(t0 + RETRANS_TIMER, |_, _| true),
            vec![(2, hoa)]
        );
        assert_eq!(
            ads.handle_timeout(t0 + 2 * RETRANS_TIMER, |_, _| true),
            vec![(2, hoa)]
        );
        // The first went with the binding: 1 + 2 repeats = MAX_NEIGHBOR_ADVERTISEMENT.
        assert_eq!(ads.poll_timeout(), None);
        assert!(
            ads.handle_timeout(t0 + 10 * RETRANS_TIMER, |_, _| true)
                .is_empty()
        );
    }

    #[test]
    fn repeats_stop_when_the_binding_goes_rfc6275_10_4_1() {
        let mut ads = Advertisements::default();
        let t0 = Instant::now();
        let (h1, h2) = (a("2001:db8:bee5::1"), a("2001:db8:bee5::2"));
        ads.start(h1, 2, t0);
        ads.start(h2, 2, t0);
        // h1 deregistered; h2 moved to another home link (not the one it was advertised on).
        let out = ads.handle_timeout(t0 + RETRANS_TIMER, |h, i| *h == h2 && i == 2);
        assert_eq!(out, vec![(2, h2)]);
        let out = ads.handle_timeout(t0 + 2 * RETRANS_TIMER, |_, i| i == 3);
        assert!(out.is_empty());
        assert_eq!(ads.pending(), 0);
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut ads = Advertisements::default();
        let t0 = Instant::now();
        for i in 0..MAX_PENDING as u128 + 10 {
            ads.start(Ipv6Addr::from(0x2001_0db8_u128 << 96 | i), 2, t0);
        }
        assert_eq!(ads.pending(), MAX_PENDING);
        assert_eq!(ads.dropped, 10);
    }
}
