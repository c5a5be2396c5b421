//! Home registration as a state machine per home address, sans IO (the shape of Firezone's
//! relay): Binding Updates, DAD outcomes, the binding layer's results, operator requests and
//! expiries go in through `handle_*`; what to do comes out of [`Registrations::poll_effect`].
//! Time is an argument. The driver (`home_agent::HomeAgent`) carries the effects out and
//! feeds their outcomes back.
//!
//! Per HoA: idle (no entry) → DAD (a new binding, §10.3.1) → applying (the binding layer) →
//! bound (the cache holds it; no entry here) → removing → idle. While a HoA has an entry,
//! further BUs for it are dropped — the mobile node retransmits.
//!
//! In front of it, the trust boundary (`validate`) and admission: a BU is validated before
//! anything else (§9.5.1: a home or care-of address that is not unicast routable → discarded,
//! no BA); then new HoAs — not refreshes or moves of bindings, not HoAs an ACL rule allows —
//! pass a per-source rate limit, the cache's capacity (130 without DAD, leaving room for the
//! ACL's HoAs) and the bound on DAD probes in flight. Nothing here grows without a bound.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use ha_common::mh::{self, BaFields};
use serde::Serialize;

use super::{
    admission::SourceLimiter,
    registrar::{self, BindingUpdate, Decision, Existing, Policy, status},
};
use crate::{
    bindings::{Applied, ApplyError, Binding, BindingSpec, Op, Origin},
    config::HomeAgentConfig,
    validate::{Problem, Scope},
};

/// Who waits for a registration's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiter {
    /// A mobile node: answer its Binding Update with a BA.
    MobileNode(BindingUpdate),
    /// An operator's control request.
    Operator(u64),
    /// Nobody (an expiry).
    Nobody,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send this BA for `bu` (to its CoA, or to the HoA at home).
    Ba {
        bu: BindingUpdate,
        fields: BaFields,
        refresh_units: Option<u16>,
    },
    /// Probe `hoa` on its home link (Duplicate Address Detection) and report with
    /// [`Registrations::handle_dad`].
    StartDad { hoa: Ipv6Addr, ifindex: u32 },
    /// Stop probing `hoa`; no report wanted.
    CancelDad { hoa: Ipv6Addr },
    /// Apply this change and report with [`Registrations::handle_applied`].
    Apply(Op),
    /// Tell the home link that `hoa` is now at this node (RFC 6275 §10.4.1).
    Advertise { hoa: Ipv6Addr, ifindex: u32 },
    /// Answer control request `id`: the binding of this HoA now, or an error.
    Reply {
        id: u64,
        result: Result<Ipv6Addr, String>,
    },
}

/// Counters of what happened to Binding Updates and requests, for `hagent stats` and the
/// periodic summary in the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub created: u64,
    pub updated: u64,
    pub removed: u64,
    /// BAs with status ≥ 128, by status.
    pub refused: std::collections::BTreeMap<u8, u64>,
    /// Discarded without a BA: the home address is not unicast routable (§9.5.1), or
    /// reserved (ours, anycast).
    pub discarded_home_address: u64,
    /// Discarded without a BA: the care-of address is not unicast routable, or ours, or at
    /// home (§9.5.1).
    pub discarded_care_of_address: u64,
    /// Discarded: sent to an address of ours that is no home agent address.
    pub discarded_not_to_home_agent: u64,
    /// Dropped: the HoA's previous registration is still being processed.
    pub dropped_busy: u64,
    /// Dropped: the source's budget of new registrations is spent.
    pub dropped_rate_limited: u64,
    /// Dropped: as many DAD probes as allowed are in flight.
    pub dropped_dad_full: u64,
    /// Ignored: not a home registration, and nothing bound (§9.5.1).
    pub ignored: u64,
    /// New bindings refused because another node holds the address (134).
    pub dad_conflicts: u64,
    /// Duplicate Address Detection probes that ended with nobody claiming the address.
    pub dad_clear: u64,
    /// Probes that could not run or whose result was lost (the BU got status 128).
    pub dad_errors: u64,
}

impl Stats {
    /// Everything refused, discarded or dropped.
    pub fn turned_away(&self) -> u64 {
        self.refused.values().sum::<u64>()
            + self.discarded_home_address
            + self.discarded_care_of_address
            + self.discarded_not_to_home_agent
            + self.dropped_busy
            + self.dropped_rate_limited
            + self.dropped_dad_full
            + self.ignored
    }
}

/// A registration waiting for DAD or the binding layer.
#[derive(Clone, Debug)]
struct Pending {
    waiter: Waiter,
    spec: BindingSpec,
    lifetime_units: u16,
    refresh_units: Option<u16>,
    flags: u8,
    /// Counts against the DAD bound (not an ACL-allowed HoA, not an operator's).
    bounded: bool,
    /// A binding that does not exist yet.
    new: bool,
}

#[derive(Clone, Debug)]
enum Phase {
    Dad(Pending),
    Applying(Pending),
    Removing(Waiter),
}

/// The home registrations in progress.
pub struct Registrations {
    config: HomeAgentConfig,
    scope: Scope,
    capacity: usize,
    /// HoAs an ACL rule allows: never starved by floods of others.
    allowed: HashSet<Ipv6Addr>,
    /// How many of them have no binding: capacity kept for them.
    allowed_unbound: usize,
    phases: HashMap<Ipv6Addr, Phase>,
    /// DAD probes in flight that count against `limits.max_pending_dad`.
    dad_bounded: usize,
    /// New bindings in flight (DAD or applying), counted against the capacity.
    new_in_flight: usize,
    limiter: SourceLimiter,
    effects: VecDeque<Effect>,
    stats: Stats,
}

/// What an operator is told when the cache has no room.
const CACHE_FULL: &str = "the binding cache is full (dataplane.max_bindings)";

/// The BA of a home registration to `bu`.
fn ba(status: u8, sequence: u16, lifetime_units: u16, flags: u8) -> BaFields {
    BaFields {
        status,
        flags,
        sequence,
        lifetime_units,
    }
}

impl Registrations {
    /// `capacity`: the binding cache's size.
    pub fn new(config: &HomeAgentConfig, scope: Scope, capacity: usize) -> Self {
        let allowed: HashSet<Ipv6Addr> = config.allowed_hoas().collect();
        let l = &config.limits;
        Self {
            allowed_unbound: allowed.len(),
            allowed,
            config: config.clone(),
            scope,
            capacity,
            phases: HashMap::new(),
            dad_bounded: 0,
            new_in_flight: 0,
            limiter: SourceLimiter::new(
                l.registrations_per_source,
                l.registration_burst_per_source,
                l.tracked_sources as usize,
            ),
            effects: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// A new configuration (a reload): ACL, lifetimes, DAD and limits apply to the next
    /// Binding Update; existing bindings stay as they are until then (RFC 6275 §10.3.1: the
    /// home agent decides at each registration) — `bound` tells which ACL'd HoAs hold one.
    /// Registrations in flight finish under the rules they started with.
    pub fn set_config(&mut self, config: &HomeAgentConfig, bound: impl Fn(&Ipv6Addr) -> bool) {
        let l = &config.limits;
        if l.registrations_per_source != self.config.limits.registrations_per_source
            || l.registration_burst_per_source != self.config.limits.registration_burst_per_source
            || l.tracked_sources != self.config.limits.tracked_sources
        {
            self.limiter = SourceLimiter::new(
                l.registrations_per_source,
                l.registration_burst_per_source,
                l.tracked_sources as usize,
            );
        }
        self.allowed = config.allowed_hoas().collect();
        self.allowed_unbound = self.allowed.iter().filter(|h| !bound(h)).count();
        self.config = config.clone();
    }

    /// A binding restored at start (a restarted daemon): an ACL'd HoA with one no longer
    /// needs the room kept for it.
    pub fn note_restored(&mut self, hoa: &Ipv6Addr) {
        if self.allowed.contains(hoa) {
            self.allowed_unbound = self.allowed_unbound.saturating_sub(1);
        }
    }

    /// The addresses and prefixes this node serves changed.
    pub fn set_scope(&mut self, scope: Scope) {
        self.scope = scope;
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Registrations in progress (DAD or applying).
    pub fn in_progress(&self) -> usize {
        self.phases.len()
    }

    /// The next thing to do.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    fn answer(&mut self, waiter: Waiter, fields: BaFields, refresh_units: Option<u16>) {
        if fields.status >= 128 {
            *self.stats.refused.entry(fields.status).or_default() += 1;
        }
        match waiter {
            Waiter::MobileNode(bu) => self.effects.push_back(Effect::Ba {
                bu,
                fields,
                refresh_units,
            }),
            Waiter::Operator(id) => self.effects.push_back(Effect::Reply {
                id,
                result: Err(match fields.status {
                    status::INSUFFICIENT_RESOURCES => CACHE_FULL.to_string(),
                    status::DAD_FAILED => {
                        "the address is in use on the home link (duplicate address detection)"
                            .to_string()
                    }
                    s => format!("refused with status {s}"),
                }),
            }),
            Waiter::Nobody => {}
        }
    }

    fn refuse(&mut self, bu: &BindingUpdate, status: u8, sequence: u16) {
        self.answer(
            Waiter::MobileNode(bu.clone()),
            ba(status, sequence, 0, 0),
            None,
        );
    }

    fn reply_err(&mut self, id: u64, e: impl Into<String>) {
        self.effects.push_back(Effect::Reply {
            id,
            result: Err(e.into()),
        });
    }

    /// Whether a new binding finds room: the cache's capacity less what is in flight, and —
    /// for HoAs no ACL rule allows — less the room kept for those that are.
    fn room(&self, bindings: usize, allowed: bool) -> bool {
        let reserved = if allowed { 0 } else { self.allowed_unbound };
        bindings + self.new_in_flight + reserved < self.capacity
    }

    /// A Binding Update arrived (after the checksum and format checks of §9.2). `existing`
    /// is the cache's binding of its HoA, `bindings` the cache's size.
    pub fn handle_bu(
        &mut self,
        bu: BindingUpdate,
        existing: Option<&Binding>,
        bindings: usize,
        now: Instant,
    ) {
        // RFC 6275 §9.5.1: a CoA that is not unicast routable → discarded, no BA to it. CoA =
        // HoA is a deregistration from home.
        if bu.coa != bu.hoa
            && let Err(p) = self.scope.care_of_address(&bu.coa)
        {
            tracing::debug!(hoa = %bu.hoa, coa = %bu.coa, problem = %p, "binding update discarded: care-of address");
            self.stats.discarded_care_of_address += 1;
            return;
        }
        let home = match self.scope.home_address(&bu.hoa) {
            Ok(h) => Some(h),
            Err(Problem::NotHome) => None,
            Err(p) => {
                tracing::debug!(hoa = %bu.hoa, problem = %p, "binding update discarded: home address");
                self.stats.discarded_home_address += 1;
                return;
            }
        };
        if let Some(h) = home
            && h.ha_address != bu.ha_address
            && !self
                .scope
                .home_prefixes
                .iter()
                .any(|p| p.ha_address == bu.ha_address)
        {
            // To the link-local address, or another of ours: the binding's tunnel needs a home
            // agent address as its endpoint.
            self.stats.discarded_not_to_home_agent += 1;
            return;
        }
        if self.phases.contains_key(&bu.hoa) {
            self.stats.dropped_busy += 1;
            return;
        }
        let allowed = self.allowed.contains(&bu.hoa);
        let admitted = existing.is_some() || allowed;
        if !admitted && !self.limiter.allow(&bu.coa, now) {
            self.stats.dropped_rate_limited += 1;
            return;
        }
        if existing.is_some_and(|b| b.spec.origin == Origin::Static) {
            // The operator's binding: a Binding Update does not move it.
            return self.refuse(&bu, status::ADMIN_PROHIBITED, bu.sequence);
        }
        let policy = Policy {
            config: &self.config,
            is_home_agent: true,
            on_home_link: home.is_some(),
        };
        let decision = registrar::decide(
            &bu,
            existing.map(|b| Existing {
                sequence: b.spec.sequence,
                mobile_router: b.spec.flags & ha_common::abi::BINDING_F_MOBILE_ROUTER != 0,
            }),
            &policy,
        );
        match decision {
            Decision::Ignore => self.stats.ignored += 1,
            Decision::Reject { status, sequence } => self.refuse(&bu, status, sequence),
            Decision::Deregister => {
                let hoa = bu.hoa;
                self.phases
                    .insert(hoa, Phase::Removing(Waiter::MobileNode(bu)));
                self.effects.push_back(Effect::Apply(Op::Remove(hoa)));
            }
            Decision::Register {
                new,
                lifetime_units,
                refresh_units,
                prefixes,
                mobile_router,
            } => {
                let home = home.expect("decide() registers only HoAs on a home link");
                // RFC 3963: a prefix the ACL authorises must still be one we can route.
                if prefixes
                    .iter()
                    .any(|&(p, l)| self.scope.mobile_network_prefix(&p, l).is_err())
                {
                    return self.refuse(&bu, status::INVALID_PREFIX, bu.sequence);
                }
                if new && !self.room(bindings, allowed) {
                    return self.refuse(&bu, status::INSUFFICIENT_RESOURCES, bu.sequence);
                }
                let spec = BindingSpec {
                    hoa: bu.hoa,
                    coa: bu.coa,
                    ha_address: bu.ha_address,
                    home_ifindex: home.ifindex,
                    sequence: bu.sequence,
                    lifetime: Some(Duration::from_secs(u64::from(lifetime_units) * 4)),
                    flags: if mobile_router {
                        ha_common::abi::BINDING_F_MOBILE_ROUTER
                    } else {
                        0
                    },
                    prefixes,
                    origin: Origin::Registered,
                };
                let pending = Pending {
                    waiter: Waiter::MobileNode(bu),
                    spec,
                    lifetime_units,
                    refresh_units,
                    flags: if mobile_router { mh::BA_FLAG_R } else { 0 },
                    bounded: !allowed,
                    new,
                };
                self.start(pending);
            }
        }
    }

    /// Starts a registration that passed admission: DAD first for a new binding.
    fn start(&mut self, p: Pending) {
        let hoa = p.spec.hoa;
        if p.new && self.config.dad {
            if p.bounded && self.dad_bounded >= self.config.limits.max_pending_dad as usize {
                self.stats.dropped_dad_full += 1;
                if let Waiter::Operator(id) = p.waiter {
                    self.reply_err(
                        id,
                        "too many duplicate address detections in flight; try again",
                    );
                }
                return;
            }
            self.dad_bounded += usize::from(p.bounded);
            self.new_in_flight += 1;
            let ifindex = p.spec.home_ifindex;
            self.phases.insert(hoa, Phase::Dad(p));
            self.effects.push_back(Effect::StartDad { hoa, ifindex });
            return;
        }
        self.new_in_flight += usize::from(p.new);
        let op = Op::Put(p.spec.clone());
        self.phases.insert(hoa, Phase::Applying(p));
        self.effects.push_back(Effect::Apply(op));
    }

    /// DAD for `hoa` ended: `Ok(true)` when another node claimed the address.
    pub fn handle_dad(&mut self, hoa: Ipv6Addr, result: Result<bool, String>) {
        let Some(Phase::Dad(p)) = self.phases.remove(&hoa) else {
            return;
        };
        self.dad_bounded -= usize::from(p.bounded);
        match result {
            Ok(false) => {
                self.stats.dad_clear += 1;
                let op = Op::Put(p.spec.clone());
                self.phases.insert(hoa, Phase::Applying(p));
                self.effects.push_back(Effect::Apply(op));
            }
            Ok(true) => {
                self.new_in_flight -= 1;
                self.stats.dad_conflicts += 1;
                tracing::info!(%hoa, "duplicate address detection failed: the home address is in use on the home link");
                let seq = p.spec.sequence;
                self.answer(p.waiter, ba(status::DAD_FAILED, seq, 0, 0), None);
            }
            Err(e) => {
                self.new_in_flight -= 1;
                self.stats.dad_errors += 1;
                tracing::warn!(%hoa, error = %e, "duplicate address detection could not run");
                let seq = p.spec.sequence;
                self.answer(p.waiter, ba(status::UNSPECIFIED, seq, 0, 0), None);
            }
        }
    }

    /// The binding layer applied (or refused) the change of `hoa`.
    pub fn handle_applied(&mut self, hoa: Ipv6Addr, result: &Result<Applied, ApplyError>) {
        let phase = self.phases.remove(&hoa);
        if let Ok(Applied::Created { .. }) = result
            && self.allowed.contains(&hoa)
        {
            self.allowed_unbound = self.allowed_unbound.saturating_sub(1);
        }
        if let Ok(Applied::Removed(_)) = result
            && self.allowed.contains(&hoa)
        {
            self.allowed_unbound += 1;
        }
        match phase {
            Some(Phase::Applying(p)) => {
                self.new_in_flight -= usize::from(p.new);
                let seq = p.spec.sequence;
                match result {
                    Ok(Applied::Created { .. }) | Ok(Applied::Updated { .. }) => {
                        if matches!(result, Ok(Applied::Created { .. })) {
                            self.stats.created += 1;
                            self.effects.push_back(Effect::Advertise {
                                hoa,
                                ifindex: p.spec.home_ifindex,
                            });
                        } else {
                            self.stats.updated += 1;
                        }
                        match p.waiter {
                            Waiter::Operator(id) => self.effects.push_back(Effect::Reply {
                                id,
                                result: Ok(hoa),
                            }),
                            w => self.answer(
                                w,
                                ba(status::ACCEPTED, seq, p.lifetime_units, p.flags),
                                p.refresh_units,
                            ),
                        }
                    }
                    Ok(Applied::Removed(_)) => {}
                    Err(e) => {
                        let status = match e {
                            ApplyError::Full { .. } => status::INSUFFICIENT_RESOURCES,
                            ApplyError::PrefixTaken { .. } => status::NOT_AUTHORIZED_FOR_PREFIX,
                            _ => status::UNSPECIFIED,
                        };
                        tracing::warn!(%hoa, error = %e, status, "binding refused");
                        match p.waiter {
                            Waiter::Operator(id) => self.reply_err(id, e.to_string()),
                            w => self.answer(w, ba(status, seq, 0, 0), None),
                        }
                    }
                }
            }
            Some(Phase::Removing(w)) => match (result, w) {
                (Ok(Applied::Removed(_)), Waiter::MobileNode(bu)) => {
                    self.stats.removed += 1;
                    let seq = bu.sequence;
                    // §10.3.2: status 0, lifetime 0, the BU's sequence number.
                    self.answer(
                        Waiter::MobileNode(bu),
                        ba(status::ACCEPTED, seq, 0, 0),
                        None,
                    );
                }
                (Ok(Applied::Removed(_)), Waiter::Operator(id)) => {
                    self.stats.removed += 1;
                    self.effects.push_back(Effect::Reply {
                        id,
                        result: Ok(hoa),
                    });
                }
                (Ok(_), _) => self.stats.removed += 1,
                (Err(ApplyError::NotBound(_)), Waiter::MobileNode(bu)) => {
                    self.refuse(&bu, status::NOT_HOME_AGENT_FOR_MN, bu.sequence)
                }
                (Err(e), Waiter::MobileNode(bu)) => {
                    self.refuse(&bu, status::UNSPECIFIED, bu.sequence);
                    tracing::warn!(%hoa, error = %e, "deregistration failed");
                }
                (Err(e), Waiter::Operator(id)) => self.reply_err(id, e.to_string()),
                (Err(_), Waiter::Nobody) => {}
            },
            Some(Phase::Dad(p)) => {
                // Cannot happen: DAD ends before the change is applied. Keep the entry.
                self.phases.insert(hoa, Phase::Dad(p));
            }
            // A change this machine did not start: nothing waits for it.
            None => {}
        }
    }

    /// The binding of `hoa` expired: remove it.
    pub fn handle_expired(&mut self, hoa: Ipv6Addr) {
        if self.phases.contains_key(&hoa) {
            return;
        }
        self.phases.insert(hoa, Phase::Removing(Waiter::Nobody));
        self.effects.push_back(Effect::Apply(Op::Remove(hoa)));
    }

    /// An operator asks for a static binding (`hagent binding add`, request `id`): validated
    /// like a Binding Update, DAD for a new one, the existing one's sequence number kept. A
    /// registration of the HoA still in DAD is cancelled: the operator's binding wins.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_static_add(
        &mut self,
        id: u64,
        hoa: Ipv6Addr,
        coa: Ipv6Addr,
        lifetime: Option<Duration>,
        prefixes: Vec<(Ipv6Addr, u8)>,
        existing: Option<&Binding>,
        bindings: usize,
    ) {
        let home = match crate::validate::static_binding(&self.scope, &hoa, &coa, &prefixes) {
            Ok(h) => h,
            Err(e) => return self.reply_err(id, e.to_string()),
        };
        // The operator wins over a registration still in DAD: it is cancelled (its mobile
        // node retransmits, and finds the static binding).
        match self.phases.remove(&hoa) {
            Some(Phase::Dad(p)) => {
                self.cancel_dad(hoa, p, format!("superseded by another request for {hoa}"))
            }
            Some(other) => {
                self.phases.insert(hoa, other);
                return self.reply_err(id, format!("{hoa} is being changed; try again"));
            }
            None => {}
        }
        let new = existing.is_none();
        if new && !self.room(bindings, true) {
            return self.reply_err(id, CACHE_FULL);
        }
        let spec = BindingSpec {
            hoa,
            coa,
            ha_address: home.ha_address,
            home_ifindex: home.ifindex,
            sequence: existing.map_or(0, |b| b.spec.sequence),
            lifetime,
            flags: 0,
            prefixes,
            origin: Origin::Static,
        };
        self.start(Pending {
            waiter: Waiter::Operator(id),
            spec,
            lifetime_units: 0,
            refresh_units: None,
            flags: 0,
            bounded: false,
            new,
        });
    }

    /// Ends `hoa`'s registration in DAD (taken out of `phases`) for an operator's request;
    /// an operator waiting for it is told `why`, a mobile node retransmits.
    fn cancel_dad(&mut self, hoa: Ipv6Addr, p: Pending, why: String) {
        self.dad_bounded -= usize::from(p.bounded);
        self.new_in_flight -= 1;
        self.effects.push_back(Effect::CancelDad { hoa });
        if let Waiter::Operator(other) = p.waiter {
            self.reply_err(other, why);
        }
    }

    /// An operator removes the binding of `hoa` (request `id`); a registration of it in
    /// progress is cancelled first, so nothing brings it back.
    pub fn handle_static_remove(&mut self, id: u64, hoa: Ipv6Addr, bound: bool) {
        let cancelled = match self.phases.remove(&hoa) {
            Some(Phase::Dad(p)) => {
                self.cancel_dad(hoa, p, format!("cancelled: {hoa} was removed"));
                true
            }
            Some(other) => {
                // Applying or removing: the driver applies changes before taking the next
                // event, so this cannot be seen; put it back.
                self.phases.insert(hoa, other);
                return self.reply_err(id, format!("{hoa} is being changed; try again"));
            }
            None => false,
        };
        if bound {
            self.phases
                .insert(hoa, Phase::Removing(Waiter::Operator(id)));
            self.effects.push_back(Effect::Apply(Op::Remove(hoa)));
        } else if cancelled {
            self.effects.push_back(Effect::Reply {
                id,
                result: Ok(hoa),
            });
        } else {
            self.reply_err(id, format!("no binding for {hoa}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        bindings::BindingCache,
        config::{AclRule, AclVerdict, LimitsConfig},
        validate::HomePrefix,
    };
    use ha_common::mh::{BU_FLAG_A, BU_FLAG_H};

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const HOA: &str = "2001:db8:bee5::dead:face";
    const COA: &str = "2001:db8:f00d::dead:face";
    const HA: &str = "2001:db8:bee5::c001:babe";

    fn scope() -> Scope {
        Scope {
            home_prefixes: vec![HomePrefix {
                prefix: a("2001:db8:bee5::"),
                len: 64,
                ifindex: 2,
                ha_address: a(HA),
            }],
            local_addresses: vec![a(HA)],
            local_prefixes: vec![(a("2001:db8:bee5::"), 64)],
        }
    }

    fn config(default: AclVerdict) -> HomeAgentConfig {
        HomeAgentConfig {
            acl: vec![AclRule {
                hoa: a(HOA),
                prefixes: vec![],
                action: AclVerdict::ALLOW,
            }],
            default_acl: default,
            max_binding_lifetime: 400,
            limits: LimitsConfig {
                max_pending_dad: 2,
                registrations_per_source: 1,
                registration_burst_per_source: 3,
                tracked_sources: 16,
            },
            ..Default::default()
        }
    }

    fn bu(hoa: &str, coa: &str, seq: u16, lifetime_units: u16) -> BindingUpdate {
        BindingUpdate {
            hoa: a(hoa),
            coa: a(coa),
            ha_address: a(HA),
            sequence: seq,
            flags: BU_FLAG_A | BU_FLAG_H,
            lifetime_units,
            prefixes: vec![],
        }
    }

    /// The machine, with a real cache standing in for the binding layer: effects are carried
    /// out the way the driver does (DAD answered by `dad`).
    struct Harness {
        r: Registrations,
        cache: BindingCache,
        now: Instant,
        /// Effects seen, except the Apply/StartDad ones the harness carried out.
        out: Vec<Effect>,
        dad_started: Vec<Ipv6Addr>,
    }

    impl Harness {
        fn new(c: HomeAgentConfig, capacity: u32) -> Self {
            Self {
                r: Registrations::new(&c, scope(), capacity as usize),
                cache: BindingCache::new(capacity),
                now: Instant::now(),
                out: vec![],
                dad_started: vec![],
            }
        }

        fn drive(&mut self) {
            while let Some(e) = self.r.poll_effect() {
                match e {
                    Effect::Apply(op) => {
                        let hoa = op.hoa();
                        let result = match op {
                            Op::Put(spec) => match self.cache.upsert(spec, self.now) {
                                Ok(crate::bindings::Change::Created { id, .. }) => {
                                    Ok(Applied::Created { id })
                                }
                                Ok(crate::bindings::Change::Updated { id, previous }) => {
                                    Ok(Applied::Updated { id, previous })
                                }
                                Err(crate::bindings::CacheError::Full { capacity }) => {
                                    Err(ApplyError::Full { capacity })
                                }
                            },
                            Op::Remove(h) => match self.cache.remove(&h) {
                                Some(b) => Ok(Applied::Removed(b)),
                                None => Err(ApplyError::NotBound(h)),
                            },
                        };
                        self.r.handle_applied(hoa, &result);
                    }
                    Effect::StartDad { hoa, .. } => self.dad_started.push(hoa),
                    e => self.out.push(e),
                }
            }
        }

        fn bu(&mut self, b: BindingUpdate) -> Vec<Effect> {
            let existing = self.cache.get(&b.hoa).cloned();
            self.r
                .handle_bu(b, existing.as_ref(), self.cache.len(), self.now);
            self.drive();
            std::mem::take(&mut self.out)
        }

        fn dad(&mut self, hoa: &str, conflict: bool) -> Vec<Effect> {
            self.r.handle_dad(a(hoa), Ok(conflict));
            self.drive();
            std::mem::take(&mut self.out)
        }
    }

    fn status_of(effects: &[Effect]) -> Vec<u8> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Ba { fields, .. } => Some(fields.status),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_binding_waits_for_dad_then_is_acknowledged_rfc6275_10_3_1() {
        let mut h = Harness::new(config(AclVerdict::DENY), 8);
        assert!(h.bu(bu(HOA, COA, 7, 100)).is_empty(), "no BA before DAD");
        assert_eq!(h.dad_started, vec![a(HOA)]);
        // A retransmission while DAD runs is dropped: the MN retransmits.
        assert!(h.bu(bu(HOA, COA, 8, 100)).is_empty());
        assert_eq!(h.r.stats().dropped_busy, 1);
        let out = h.dad(HOA, false);
        assert_eq!(status_of(&out), vec![0]);
        assert!(out.contains(&Effect::Advertise {
            hoa: a(HOA),
            ifindex: 2
        }));
        match &out[..] {
            [.., Effect::Ba { fields, .. }] => {
                assert_eq!((fields.sequence, fields.lifetime_units), (7, 100))
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(h.cache.get(&a(HOA)).unwrap().spec.coa, a(COA));
        // A refresh is no new binding: no DAD, answered at once.
        let out = h.bu(bu(HOA, "2001:db8:f00e::1", 9, 100));
        assert_eq!(status_of(&out), vec![0]);
        assert_eq!(h.dad_started.len(), 1);
    }

    #[test]
    fn dad_failure_refuses_with_134_rfc6275_10_3_1() {
        let mut h = Harness::new(config(AclVerdict::DENY), 8);
        h.bu(bu(HOA, COA, 7, 100));
        assert_eq!(status_of(&h.dad(HOA, true)), vec![134]);
        assert!(h.cache.get(&a(HOA)).is_none());
        assert_eq!(h.r.in_progress(), 0);
    }

    #[test]
    fn invalid_care_of_addresses_are_discarded_without_a_ba_rfc6275_9_5_1() {
        let mut h = Harness::new(config(AclVerdict::ALLOW), 8);
        for coa in [
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "ff0e::1",
            "fe80::1",
            HA,
            "2001:db8:bee5::42",
        ] {
            assert!(h.bu(bu(HOA, coa, 7, 100)).is_empty(), "{coa}");
        }
        assert_eq!(h.r.stats().discarded_care_of_address, 7);
        assert!(h.dad_started.is_empty(), "no work for a discarded BU");
    }

    #[test]
    fn the_home_agents_own_and_anycast_addresses_are_never_bound_rfc2526() {
        let mut h = Harness::new(config(AclVerdict::ALLOW), 8);
        for hoa in [HA, "2001:db8:bee5::fdff:ffff:ffff:fffe", "2001:db8:bee5::"] {
            assert!(h.bu(bu(hoa, COA, 7, 100)).is_empty(), "{hoa}");
        }
        assert_eq!(h.r.stats().discarded_home_address, 3);
        assert!(h.cache.is_empty() && h.dad_started.is_empty());
        // Outside the home prefixes: 132, as RFC 6275 §10.3.1 says.
        assert_eq!(
            status_of(&h.bu(bu("2001:db8:cafe::1", COA, 7, 100))),
            vec![132]
        );
    }

    #[test]
    fn a_bu_to_an_address_that_is_no_home_agent_address_is_discarded() {
        let mut h = Harness::new(config(AclVerdict::ALLOW), 8);
        let mut b = bu(HOA, COA, 7, 100);
        b.ha_address = a("fe80::1");
        assert!(h.bu(b).is_empty());
        assert_eq!(h.r.stats().discarded_not_to_home_agent, 1);
    }

    #[test]
    fn new_home_addresses_are_rate_limited_per_source_but_acl_and_refreshes_are_not() {
        let mut c = config(AclVerdict::ALLOW);
        c.dad = false;
        let mut h = Harness::new(c, 64);
        // Burst 3 from one /64, then nothing more at this instant.
        let accepted = (1..=10u16)
            .filter(|i| status_of(&h.bu(bu(&format!("2001:db8:bee5::1:{i}"), COA, 1, 100))) == [0])
            .count();
        assert_eq!(accepted, 3);
        assert_eq!(h.r.stats().dropped_rate_limited, 7);
        // From the same source: the ACL's HoA, and refreshes of what is bound, pass.
        assert_eq!(status_of(&h.bu(bu(HOA, COA, 1, 100))), vec![0]);
        assert_eq!(
            status_of(&h.bu(bu("2001:db8:bee5::1:1", COA, 2, 100))),
            vec![0]
        );
        // Another source has its own budget.
        assert_eq!(
            status_of(&h.bu(bu("2001:db8:bee5::2:1", "2001:db8:f00e::1", 1, 100))),
            vec![0]
        );
    }

    #[test]
    fn pending_dad_is_bounded_and_the_acl_is_exempt() {
        let mut c = config(AclVerdict::ALLOW);
        c.limits.registration_burst_per_source = 100;
        let mut h = Harness::new(c, 64);
        for i in 1..=5u16 {
            h.bu(bu(&format!("2001:db8:bee5::1:{i}"), COA, 1, 100));
        }
        assert_eq!(h.dad_started.len(), 2, "max_pending_dad = 2");
        assert_eq!(h.r.stats().dropped_dad_full, 3);
        h.bu(bu(HOA, COA, 1, 100));
        assert_eq!(h.dad_started.len(), 3, "the ACL's HoA is not held back");
        // One probe ends: room for one more.
        h.dad("2001:db8:bee5::1:1", false);
        h.bu(bu("2001:db8:bee5::1:9", COA, 1, 100));
        assert_eq!(h.dad_started.len(), 4);
    }

    #[test]
    fn a_full_cache_answers_130_without_dad_and_keeps_room_for_the_acl() {
        let mut c = config(AclVerdict::ALLOW);
        c.limits.registration_burst_per_source = 100;
        c.dad = false;
        // Capacity 3, one rule allowing HOA: others get 2.
        let mut h = Harness::new(c, 3);
        for i in 1..=2u16 {
            assert_eq!(
                status_of(&h.bu(bu(&format!("2001:db8:bee5::1:{i}"), COA, 1, 100))),
                vec![0]
            );
        }
        let mut c2 = config(AclVerdict::ALLOW);
        c2.limits.registration_burst_per_source = 100;
        let out = h.bu(bu("2001:db8:bee5::1:3", COA, 1, 100));
        assert_eq!(status_of(&out), vec![130]);
        assert!(h.dad_started.is_empty());
        // The ACL's HoA still fits; existing bindings still refresh.
        assert_eq!(status_of(&h.bu(bu(HOA, COA, 1, 100))), vec![0]);
        assert_eq!(
            status_of(&h.bu(bu("2001:db8:bee5::1:1", COA, 2, 100))),
            vec![0]
        );
        assert_eq!(h.cache.len(), 3, "no live binding evicted");
        let _ = c2;
    }

    #[test]
    fn deregistration_removes_and_answers_lifetime_0_rfc6275_10_3_2() {
        let mut c = config(AclVerdict::DENY);
        c.dad = false;
        let mut h = Harness::new(c, 8);
        h.bu(bu(HOA, COA, 1, 100));
        let out = h.bu(bu(HOA, COA, 2, 0));
        match &out[..] {
            [Effect::Ba { fields, .. }] => {
                assert_eq!(
                    (fields.status, fields.lifetime_units, fields.sequence),
                    (0, 0, 2)
                )
            }
            o => panic!("{o:?}"),
        }
        assert!(h.cache.is_empty());
        // From home (CoA = HoA), nothing bound: 133.
        assert_eq!(status_of(&h.bu(bu(HOA, HOA, 3, 0))), vec![133]);
    }

    #[test]
    fn operator_removal_cancels_a_registration_in_progress() {
        let mut h = Harness::new(config(AclVerdict::DENY), 8);
        h.bu(bu(HOA, COA, 7, 100));
        h.r.handle_static_remove(1, a(HOA), false);
        h.drive();
        assert!(h.out.contains(&Effect::CancelDad { hoa: a(HOA) }));
        assert!(h.out.contains(&Effect::Reply {
            id: 1,
            result: Ok(a(HOA))
        }));
        h.out.clear();
        // The late DAD outcome must not resurrect it.
        assert!(h.dad(HOA, false).is_empty());
        assert!(h.cache.is_empty());
    }

    #[test]
    fn the_operators_static_binding_supersedes_a_registration_in_dad() {
        let mut h = Harness::new(config(AclVerdict::ALLOW), 8);
        h.bu(bu(HOA, COA, 7, 100));
        assert_eq!(h.dad_started, vec![a(HOA)]);
        h.r.handle_static_add(1, a(HOA), a("2001:db8:f00e::1"), None, vec![], None, 0);
        h.drive();
        assert!(h.out.contains(&Effect::CancelDad { hoa: a(HOA) }));
        assert_eq!(
            h.dad_started.len(),
            2,
            "the operator's binding is probed anew"
        );
        h.out.clear();
        h.r.handle_dad(a(HOA), Ok(false));
        h.drive();
        assert_eq!(
            h.out,
            vec![
                Effect::Advertise {
                    hoa: a(HOA),
                    ifindex: 2
                },
                Effect::Reply {
                    id: 1,
                    result: Ok(a(HOA))
                }
            ],
            "no BA for the cancelled registration"
        );
        assert_eq!(h.cache.get(&a(HOA)).unwrap().spec.origin, Origin::Static);
    }

    #[test]
    fn static_bindings_are_validated_and_probed_like_registrations() {
        let mut h = Harness::new(config(AclVerdict::DENY), 8);
        let hoa = a("2001:db8:bee5::1:2");
        h.r.handle_static_add(
            1,
            hoa,
            a(COA),
            None,
            vec![(a("::"), 0)],
            None,
            h.cache.len(),
        );
        h.drive();
        match &h.out[..] {
            [
                Effect::Reply {
                    id: 1,
                    result: Err(e),
                },
            ] => {
                assert!(e.contains("::/0"), "{e}")
            }
            o => panic!("{o:?}"),
        }
        h.out.clear();
        h.r.handle_static_add(2, hoa, a(COA), None, vec![], None, h.cache.len());
        h.drive();
        assert_eq!(
            h.dad_started,
            vec![hoa],
            "an address in use must be refused"
        );
        h.r.handle_dad(hoa, Ok(true));
        h.drive();
        assert!(
            matches!(&h.out[..], [Effect::Reply { id: 2, result: Err(e) }] if e.contains("in use"))
        );
        assert!(h.cache.is_empty());
        // A BU does not move the operator's binding.
        let mut c = config(AclVerdict::ALLOW);
        c.dad = false;
        let mut h = Harness::new(c, 8);
        h.r.handle_static_add(3, hoa, a(COA), None, vec![], None, 0);
        h.drive();
        assert_eq!(
            status_of(&h.bu(bu("2001:db8:bee5::1:2", "2001:db8:f00e::9", 5, 100))),
            vec![129]
        );
        assert_eq!(h.cache.get(&hoa).unwrap().spec.coa, a(COA));
    }

    #[test]
    fn nothing_grows_under_a_flood_of_random_new_home_addresses() {
        let mut c = config(AclVerdict::ALLOW);
        c.limits.registrations_per_source = 100_000;
        c.limits.registration_burst_per_source = 100_000;
        let mut h = Harness::new(c, 1000);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let hoa = Ipv6Addr::from((0x2001_0db8_bee5_0000u128 << 64) | u128::from(x));
            h.bu(BindingUpdate {
                hoa,
                ..bu(HOA, COA, 1, 100)
            });
        }
        assert_eq!(h.r.in_progress(), 2, "DAD in flight stays at its bound");
        assert_eq!(h.dad_started.len(), 2);
        // The ACL's HoA still registers.
        h.bu(bu(HOA, COA, 1, 100));
        assert_eq!(h.dad_started.last(), Some(&a(HOA)));
    }
}
