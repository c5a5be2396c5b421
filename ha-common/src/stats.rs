//! Global counters: one per-CPU slot per action and per drop/pass reason.
//!
//! The slot index is the `#[repr(u32)]` discriminant, fixed forever once released (dashboards
//! and `hagent stats` history depend on it), as Katran does with its fixed counter indices.
//! New counters are appended; none is ever renumbered.

/// Index into the per-CPU global counter array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Every frame the XDP program saw.
    RxFrames = 0,
    /// Frames whose (possibly VLAN-tagged) EtherType is IPv6.
    RxIpv6 = 1,
    /// Frames that are not IPv6 (ARP, IPv4, LLDP, ...): passed to the kernel untouched.
    PassNotIpv6 = 2,
    /// Frames too short to hold the headers they announce: passed to the kernel, which
    /// accounts for them in its own error counters.
    PassTruncated = 3,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 4] = [
        Counter::RxFrames,
        Counter::RxIpv6,
        Counter::PassNotIpv6,
        Counter::PassTruncated,
    ];

    /// Number of slots the counter map needs.
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// The map index of this counter.
    #[inline(always)]
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// A stable snake_case name, used in `hagent stats --json` and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::RxFrames => "rx_frames",
            Counter::RxIpv6 => "rx_ipv6",
            Counter::PassNotIpv6 => "pass_not_ipv6",
            Counter::PassTruncated => "pass_truncated",
        }
    }
}

/// One counter slot: packets and bytes. `#[repr(C)]`, shared with the kernel side.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValue {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<CounterValue>() == 16);
const _: () = assert!(core::mem::align_of::<CounterValue>() == 8);

#[cfg(feature = "user")]
// SAFETY: `CounterValue` is `#[repr(C)]`, made only of `u64`s, has no padding and every bit
// pattern is a valid value.
unsafe impl aya::Pod for CounterValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_in_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index() as usize, i, "{c:?} is not at its slot");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }
}
