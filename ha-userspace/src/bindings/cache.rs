//! The binding cache (RFC 6275 §9.1): the daemon's source of truth. The data plane's maps are
//! a projection of it, written by [`super::Bindings`] after every change here.
//!
//! Ordered by home address, so listings page through it without sorting; expiry from a heap
//! with lazy deletion, compacted when stale entries outnumber live ones (a refresh pushes a
//! new entry, so without compaction a flood of refreshes would grow it without bound).

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap},
    net::Ipv6Addr,
    ops::Bound,
    time::{Duration, Instant},
};

use serde::Serialize;

/// Where a binding came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Added by the operator (`hagent binding add`), like UMIP's `bc add`.
    Static,
    /// Registered by a mobile node with a Binding Update.
    Registered,
}

/// What a caller wants the cache to hold for a home address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingSpec {
    pub hoa: Ipv6Addr,
    pub coa: Ipv6Addr,
    /// The home agent address of the registration (the BU's destination): our tunnel
    /// endpoint in the HA role, the peer's in the MN role.
    pub ha_address: Ipv6Addr,
    /// The interface of the home link the HoA belongs to.
    pub home_ifindex: u32,
    pub sequence: u16,
    /// `None`: never expires.
    pub lifetime: Option<Duration>,
    /// `ha_common::abi::BINDING_F_*`.
    pub flags: u32,
    /// Mobile network prefixes (NEMO).
    pub prefixes: Vec<(Ipv6Addr, u8)>,
    pub origin: Origin,
}

/// A binding cache entry.
#[derive(Clone, Debug)]
pub struct Binding {
    pub spec: BindingSpec,
    /// Index of the binding's per-binding counters in the data plane.
    pub id: u32,
    pub registered_at: Instant,
    pub expires_at: Option<Instant>,
}

impl Binding {
    /// Seconds left, rounded down (None: no expiry).
    pub fn lifetime_remaining(&self, now: Instant) -> Option<u64> {
        self.expires_at
            .map(|t| t.saturating_duration_since(now).as_secs())
    }
}

/// How an insert changed the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new binding with this id (`reused`: an id an earlier binding had, whose counters
    /// must be zeroed).
    Created { id: u32, reused: bool },
    /// An existing binding was refreshed or moved; `previous` is what it was.
    Updated { id: u32, previous: BindingSpec },
}

/// Why the cache refused a binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// No room (BA status 130, Insufficient resources).
    Full { capacity: u32 },
}

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheError::Full { capacity } => {
                write!(
                    f,
                    "binding cache full ({capacity} bindings; raise max_bindings)"
                )
            }
        }
    }
}

impl std::error::Error for CacheError {}

/// The binding cache.
pub struct BindingCache {
    by_hoa: BTreeMap<Ipv6Addr, Binding>,
    free_ids: Vec<u32>,
    next_id: u32,
    capacity: u32,
    /// Expiry times, earliest first. Entries go stale when a binding is refreshed or removed;
    /// they are checked against the binding and skipped then (lazy deletion keeps every
    /// operation O(log n) with a million bindings).
    expiries: BinaryHeap<Reverse<(Instant, Ipv6Addr)>>,
    /// Restored from an earlier daemon: an id may have counted for a binding that is gone, so
    /// every new binding's counters are zeroed.
    restored: bool,
}

impl BindingCache {
    /// A cache for at most `capacity` bindings (binding ids 0..capacity).
    pub fn new(capacity: u32) -> Self {
        Self {
            by_hoa: BTreeMap::new(),
            free_ids: Vec::new(),
            next_id: 0,
            capacity,
            expiries: BinaryHeap::new(),
            restored: false,
        }
    }

    pub fn len(&self) -> usize {
        self.by_hoa.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hoa.is_empty()
    }

    pub fn get(&self, hoa: &Ipv6Addr) -> Option<&Binding> {
        self.by_hoa.get(hoa)
    }

    /// Every binding, in home address order.
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.by_hoa.values()
    }

    /// The bindings after `after` (from the first without it), in home address order.
    pub fn iter_after(&self, after: Option<Ipv6Addr>) -> impl Iterator<Item = &Binding> {
        let from = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        self.by_hoa.range((from, Bound::Unbounded)).map(|(_, b)| b)
    }

    /// Whether no binding can be added.
    pub fn is_full(&self) -> bool {
        self.free_ids.is_empty() && self.next_id >= self.capacity
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Entries in the expiry heap (live and stale), for the memory bound's test.
    pub fn expiry_entries(&self) -> usize {
        self.expiries.len()
    }

    fn compact_expiries(&mut self) {
        if self.expiries.len() <= 2 * self.by_hoa.len() + 1024 {
            return;
        }
        let live: Vec<_> = self
            .by_hoa
            .values()
            .filter_map(|b| b.expires_at.map(|t| Reverse((t, b.spec.hoa))))
            .collect();
        self.expiries = BinaryHeap::from(live);
    }

    /// Creates or updates the binding for `spec.hoa`. An update keeps the binding's id (and so
    /// its counters) and replaces everything else.
    pub fn upsert(&mut self, spec: BindingSpec, now: Instant) -> Result<Change, CacheError> {
        let expires_at = spec.lifetime.map(|l| now + l);
        let hoa = spec.hoa;
        let change = self.put(spec, now, expires_at)?;
        if let Some(t) = expires_at {
            self.expiries.push(Reverse((t, hoa)));
            self.compact_expiries();
        }
        Ok(change)
    }

    fn put(
        &mut self,
        spec: BindingSpec,
        now: Instant,
        expires_at: Option<Instant>,
    ) -> Result<Change, CacheError> {
        if let Some(b) = self.by_hoa.get_mut(&spec.hoa) {
            let previous = std::mem::replace(&mut b.spec, spec);
            b.registered_at = now;
            b.expires_at = expires_at;
            return Ok(Change::Updated { id: b.id, previous });
        }
        let (id, reused) = match self.free_ids.pop() {
            Some(id) => (id, true),
            None if self.next_id < self.capacity => {
                self.next_id += 1;
                (self.next_id - 1, false)
            }
            None => {
                return Err(CacheError::Full {
                    capacity: self.capacity,
                });
            }
        };
        self.by_hoa.insert(
            spec.hoa,
            Binding {
                spec,
                id,
                registered_at: now,
                expires_at,
            },
        );
        Ok(Change::Created {
            id,
            reused: reused || self.restored,
        })
    }

    /// Fills an empty cache with bindings a restarted daemon recovered, ids and expiries as
    /// they were. Refuses (changing nothing) an id out of range or given twice.
    pub fn restore(&mut self, bindings: Vec<Binding>) -> Result<(), String> {
        assert!(self.by_hoa.is_empty(), "restore into an empty cache only");
        let mut used = vec![false; self.capacity as usize];
        for b in &bindings {
            let slot = used
                .get_mut(b.id as usize)
                .ok_or_else(|| format!("binding id {} of {} is out of range", b.id, b.spec.hoa))?;
            if std::mem::replace(slot, true) {
                return Err(format!("binding id {} is used twice", b.id));
            }
        }
        self.restored = true;
        self.next_id = used.iter().rposition(|&u| u).map_or(0, |i| i as u32 + 1);
        self.free_ids = (0..self.next_id)
            .rev()
            .filter(|&i| !used[i as usize])
            .collect();
        for b in bindings {
            if let Some(t) = b.expires_at {
                self.expiries.push(Reverse((t, b.spec.hoa)));
            }
            self.by_hoa.insert(b.spec.hoa, b);
        }
        Ok(())
    }

    /// Removes the binding for `hoa`, freeing its id.
    pub fn remove(&mut self, hoa: &Ipv6Addr) -> Option<Binding> {
        let b = self.by_hoa.remove(hoa)?;
        self.free_ids.push(b.id);
        Some(b)
    }

    /// Whether a heap entry still describes its binding's expiry.
    fn current(&self, t: Instant, hoa: &Ipv6Addr) -> bool {
        self.by_hoa
            .get(hoa)
            .is_some_and(|b| b.expires_at == Some(t))
    }

    /// Home addresses whose bindings have expired at `now` (each reported once; the caller
    /// removes them).
    pub fn expired(&mut self, now: Instant) -> Vec<Ipv6Addr> {
        let mut out = Vec::new();
        while let Some(Reverse((t, hoa))) = self.expiries.peek().copied() {
            if t > now {
                break;
            }
            self.expiries.pop();
            if self.current(t, &hoa) && !out.contains(&hoa) {
                out.push(hoa);
            }
        }
        out
    }

    /// When the next binding expires.
    pub fn next_expiry(&mut self) -> Option<Instant> {
        while let Some(Reverse((t, hoa))) = self.expiries.peek().copied() {
            if self.current(t, &hoa) {
                return Some(t);
            }
            self.expiries.pop();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hoa: &str, coa: &str, lifetime: Option<u64>) -> BindingSpec {
        BindingSpec {
            hoa: hoa.parse().unwrap(),
            coa: coa.parse().unwrap(),
            ha_address: "2001:db8:bee5::c001:babe".parse().unwrap(),
            home_ifindex: 2,
            sequence: 1,
            lifetime: lifetime.map(Duration::from_secs),
            flags: 0,
            prefixes: vec![],
            origin: Origin::Static,
        }
    }

    fn restored(hoa: &str, id: u32, expires_in: Option<u64>, now: Instant) -> Binding {
        Binding {
            spec: spec(hoa, "2001:db8:f::1", expires_in),
            id,
            registered_at: now,
            expires_at: expires_in.map(|s| now + Duration::from_secs(s)),
        }
    }

    #[test]
    fn a_restored_cache_keeps_ids_and_expiries_and_hands_out_the_gaps() {
        let mut c = BindingCache::new(8);
        let t = Instant::now();
        c.restore(vec![
            restored("2001:db8::1", 5, Some(10), t),
            restored("2001:db8::2", 2, None, t),
        ])
        .unwrap();
        assert_eq!(c.get(&"2001:db8::1".parse().unwrap()).unwrap().id, 5);
        assert_eq!(c.next_expiry(), Some(t + Duration::from_secs(10)));
        assert_eq!(
            c.expired(t + Duration::from_secs(11)),
            vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]
        );
        // New bindings get the free ids below the highest, then go on from it.
        let mut ids = vec![];
        for i in 0..6 {
            match c.upsert(spec(&format!("2001:db8::a{i}"), "2001:db8:f::1", None), t) {
                Ok(Change::Created { id, .. }) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        ids.sort();
        assert_eq!(ids, vec![0, 1, 3, 4, 6, 7]);
        assert!(c.is_full());
    }

    #[test]
    fn inconsistent_records_are_refused_whole() {
        let t = Instant::now();
        let mut c = BindingCache::new(4);
        let e = c
            .restore(vec![
                restored("2001:db8::1", 1, None, t),
                restored("2001:db8::2", 1, None, t),
            ])
            .unwrap_err();
        assert!(e.contains("used twice"), "{e}");
        assert!(c.is_empty());
        let e = c
            .restore(vec![restored("2001:db8::1", 4, None, t)])
            .unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        assert!(c.is_empty());
    }

    #[test]
    fn create_update_remove_reuses_ids() {
        let mut c = BindingCache::new(2);
        let t = Instant::now();
        assert_eq!(
            c.upsert(spec("2001:db8::1", "2001:db8:f::1", None), t),
            Ok(Change::Created {
                id: 0,
                reused: false
            })
        );
        assert_eq!(
            c.upsert(spec("2001:db8::2", "2001:db8:f::2", None), t),
            Ok(Change::Created {
                id: 1,
                reused: false
            })
        );
        // A CoA change keeps the id (and with it the counters).
        match c.upsert(spec("2001:db8::1", "2001:db8:f::9", None), t) {
            Ok(Change::Updated { id: 0, previous }) => {
                assert_eq!(previous.coa, "2001:db8:f::1".parse::<Ipv6Addr>().unwrap())
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.upsert(spec("2001:db8::3", "2001:db8:f::3", None), t),
            Err(CacheError::Full { capacity: 2 })
        );
        assert_eq!(c.remove(&"2001:db8::2".parse().unwrap()).unwrap().id, 1);
        assert_eq!(
            c.upsert(spec("2001:db8::3", "2001:db8:f::3", None), t),
            Ok(Change::Created {
                id: 1,
                reused: true
            })
        );
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn refreshes_do_not_grow_the_expiry_heap_without_bound() {
        let mut c = BindingCache::new(4);
        let t = Instant::now();
        for i in 0..100_000u64 {
            c.upsert(
                spec("2001:db8::1", "2001:db8:f::1", Some(600)),
                t + Duration::from_millis(i),
            )
            .unwrap();
        }
        assert!(
            c.expiry_entries() <= 2 * c.len() + 1025,
            "{}",
            c.expiry_entries()
        );
        assert_eq!(
            c.next_expiry(),
            Some(t + Duration::from_millis(99_999) + Duration::from_secs(600))
        );
    }

    #[test]
    fn pages_in_home_address_order() {
        let mut c = BindingCache::new(8);
        let t = Instant::now();
        for h in ["2001:db8::3", "2001:db8::1", "2001:db8::2"] {
            c.upsert(spec(h, "2001:db8:f::1", None), t).unwrap();
        }
        let after: Vec<String> = c
            .iter_after(Some("2001:db8::1".parse().unwrap()))
            .map(|b| b.spec.hoa.to_string())
            .collect();
        assert_eq!(after, ["2001:db8::2", "2001:db8::3"]);
        assert_eq!(c.iter_after(None).count(), 3);
    }

    #[test]
    fn expiry() {
        let mut c = BindingCache::new(8);
        let t = Instant::now();
        c.upsert(spec("2001:db8::1", "2001:db8:f::1", Some(4)), t)
            .unwrap();
        c.upsert(spec("2001:db8::2", "2001:db8:f::2", Some(8)), t)
            .unwrap();
        c.upsert(spec("2001:db8::3", "2001:db8:f::3", None), t)
            .unwrap();
        assert_eq!(c.next_expiry(), Some(t + Duration::from_secs(4)));
        assert!(c.expired(t + Duration::from_secs(3)).is_empty());
        assert_eq!(
            c.expired(t + Duration::from_secs(4)),
            vec!["2001:db8::1".parse::<Ipv6Addr>().unwrap()]
        );
        // Each expiry is reported once (the caller removes the binding).
        assert_eq!(
            c.expired(t + Duration::from_secs(100)),
            vec!["2001:db8::2".parse::<Ipv6Addr>().unwrap()]
        );
        let b = c.get(&"2001:db8::2".parse().unwrap()).unwrap();
        assert_eq!(
            b.lifetime_remaining(t + Duration::from_millis(2500)),
            Some(5)
        );
        // A refresh restarts the lifetime.
        c.upsert(
            spec("2001:db8::1", "2001:db8:f::1", Some(4)),
            t + Duration::from_secs(3),
        )
        .unwrap();
        assert!(c.expired(t + Duration::from_secs(5)).is_empty());
    }
}
