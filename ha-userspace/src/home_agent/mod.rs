//! The home agent role: its events — Binding Updates, DAD deadlines, expiries, the
//! operator's static bindings — go through the pure [`registration::Registrations`]; this
//! driver carries out what it asks (DAD probes, binding changes through [`Bindings`], BAs,
//! unsolicited NAs, control replies) and feeds the outcomes back.

pub mod admission;
pub mod advertise;
pub mod dad;
pub mod dhaad;
pub mod icmp;
pub mod mpd;
pub mod registrar;
pub mod registration;
pub mod signalling;
pub mod tunnel_icmp;

use std::{
    collections::HashMap,
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use ha_common::mh;
use serde_json::json;
use tokio::sync::oneshot;

use crate::{
    bindings::{Applied, Bindings},
    config::Config,
    interfaces::Served,
    mobility::{self, Rejected},
    ndisc::Ndisc,
    sock::Received,
    validate::Scope,
};

use self::{
    dad::Dad,
    registration::{Effect, Registrations, Stats},
    signalling::Signalling,
};

/// How often the log gets a summary of what happened to Binding Updates.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
/// Bindings created or removed logged one by one per summary interval; the rest are counted.
const LOGGED_CHANGES: u32 = 20;

/// Where a control request's answer goes.
pub type ReplyTo = oneshot::Sender<anyhow::Result<serde_json::Value>>;

enum Pending {
    Add(ReplyTo),
    Del(ReplyTo),
}

/// The log's view of the counters: one line per interval instead of one per refusal.
struct Summary {
    next: Instant,
    last: Stats,
    logged: u32,
    suppressed: u32,
}

pub struct HomeAgent {
    registrations: Registrations,
    dad: Dad,
    signalling: Signalling,
    ndisc: Ndisc,
    links: Vec<Served>,
    replies: HashMap<u64, Pending>,
    next_id: u64,
    summary: Summary,
    /// Why the next removal of this HoA happens, when not a deregistration (for its event).
    removal_cause: Option<(Ipv6Addr, crate::events::Kind)>,
    /// Repeats of the unsolicited advertisements for new bindings.
    advertisements: advertise::Advertisements,
    /// `home_agent.mobile_prefix_advertisements` (SendMobPfxAdvs).
    mobile_prefix_advertisements: bool,
    /// DHAAD: the home-agents list of each home link, and the shuffle of equal preferences.
    home_agents: dhaad::HomeAgents,
    shuffler: dhaad::Shuffler,
    /// The ICMPv6 socket of DHAAD, Mobile Prefix Discovery and the tunnel errors; their
    /// counters; what the reader's full queue dropped; this second's budget.
    icmp: Option<std::sync::Arc<icmp::Icmpv6Socket>>,
    icmp_stats: icmp::IcmpStats,
    icmp_dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    icmp_budget: (Instant, u32),
}

impl HomeAgent {
    pub fn new(
        config: &Config,
        scope: Scope,
        links: Vec<Served>,
        bindings: &Bindings,
        now: Instant,
    ) -> anyhow::Result<Self> {
        let ndisc = Ndisc::new()?;
        let mut registrations =
            Registrations::new(&config.home_agent, scope, bindings.capacity() as usize);
        for b in bindings.iter() {
            registrations.note_restored(&b.spec.hoa);
        }
        Ok(Self {
            registrations,
            dad: Dad::new(bindings.dataplane().dad_probes()?, ndisc.clone()),
            signalling: Signalling::new()?,
            ndisc,
            links,
            replies: HashMap::new(),
            next_id: 0,
            removal_cause: None,
            advertisements: advertise::Advertisements::default(),
            mobile_prefix_advertisements: config.home_agent.mobile_prefix_advertisements,
            home_agents: dhaad::HomeAgents::default(),
            icmp: None,
            icmp_stats: icmp::IcmpStats::default(),
            icmp_dropped: Default::default(),
            icmp_budget: (now, 0),
            shuffler: dhaad::Shuffler::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    ^ u64::from(std::process::id()),
            ),
            summary: Summary {
                next: now + SUMMARY_INTERVAL,
                last: Stats::default(),
                logged: 0,
                suppressed: 0,
            },
        })
    }

    /// A reloaded configuration (see [`Registrations::set_config`]).
    pub fn set_config(&mut self, config: &Config, bindings: &Bindings) {
        self.mobile_prefix_advertisements = config.home_agent.mobile_prefix_advertisements;
        self.registrations
            .set_config(&config.home_agent, |h| bindings.get(h).is_some());
    }

    /// The interfaces' addresses changed: new home prefixes, new sources for NAs.
    pub fn set_links(&mut self, links: Vec<Served>, scope: Scope) {
        self.links = links;
        self.registrations.set_scope(scope);
        self.update_home_agents();
    }

    /// Serves the home agent's ICMPv6 on `sock` from now on: joins each home link's
    /// home-agents anycast address and lists this node's addresses there (DHAAD), and sends
    /// prefix advertisements and relayed tunnel errors through it.
    pub fn serve_icmp(
        &mut self,
        sock: std::sync::Arc<icmp::Icmpv6Socket>,
        dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) {
        self.icmp = Some(sock);
        self.icmp_dropped = dropped;
        self.update_home_agents();
    }

    fn update_home_agents(&mut self) {
        let mut own: HashMap<u32, Vec<Ipv6Addr>> = HashMap::new();
        for h in &self.registrations.scope().home_prefixes {
            own.entry(h.ifindex).or_default().push(h.ha_address);
            if let (Some(sock), Some(any)) = (&self.icmp, dhaad::anycast_address(h.prefix, h.len))
                && let Err(e) = sock.join(h.ifindex, any)
            {
                tracing::warn!(error = %format!("{e:#}"), "DHAAD will not be answered on this home link");
            }
        }
        for (ifindex, mut addresses) in own {
            addresses.sort();
            addresses.dedup();
            self.home_agents.set_own(ifindex, &addresses, 0);
        }
    }

    /// The data plane dropped a packet with a Home Address option and no binding from its
    /// source (RFC 6275 §9.3.1): a Binding Error with status 1, rate-limited per destination
    /// (§9.3.3), from the address the packet was sent to.
    pub fn on_hao_without_binding(&mut self, h: crate::punt::HaoWithoutBinding, now: Instant) {
        if !crate::config::is_global_unicast(&h.src) {
            return;
        }
        self.signalling.send_be(
            h.dst,
            h.src,
            mh::BE_STATUS_UNKNOWN_BINDING_FOR_HAO,
            h.hoa,
            now,
        );
    }

    /// An ICMPv6 error about a packet this node tunnelled to a bound care-of address: the
    /// error RFC 2473 §8.1 says goes to the inner packet's source, from the tunnel's entry
    /// address, within the same budget as DHAAD replies.
    fn relay_tunnel_error(&mut self, rx: &Received, bindings: &Bindings, now: Instant) {
        let Some(e) = tunnel_icmp::relay(&rx.data) else {
            self.icmp_stats.tunnel_errors_ignored += 1;
            return;
        };
        let ours = self.registrations.scope().is_local(&e.entry)
            || self
                .registrations
                .scope()
                .home_prefixes
                .iter()
                .any(|h| h.ha_address == e.entry);
        let bound = bindings
            .get(&e.inner_dst)
            .is_some_and(|b| b.spec.coa == e.exit && b.spec.ha_address == e.entry);
        if !ours || !bound || !self.spend_icmp_budget(now) {
            self.icmp_stats.tunnel_errors_ignored += 1;
            return;
        }
        let Some(sock) = &self.icmp else { return };
        match sock.send(&e.message, e.inner_src, e.entry) {
            Ok(_) => self.icmp_stats.tunnel_errors_relayed += 1,
            Err(err) => {
                self.signalling.stats.send_errors += 1;
                tracing::debug!(error = %err, to = %e.inner_src, "relaying a tunnel error failed");
            }
        }
    }

    /// A Mobile Prefix Solicitation (RFC 6275 §10.6.2): answered only for a bound home
    /// address and sent to one of our home agent addresses, with the prefixes of its home
    /// link, from the address it was sent to.
    fn advertise_prefixes(&mut self, rx: &Received, bindings: &Bindings, now: Instant) {
        let Some(id) = mpd::parse_solicitation(&rx.data) else {
            self.icmp_stats.invalid += 1;
            return;
        };
        if !self.mobile_prefix_advertisements {
            self.icmp_stats.prefix_solicitations_ignored += 1;
            return;
        }
        let scope = self.registrations.scope();
        let bound = bindings.get(&rx.src).is_some();
        let home = scope.home_prefix_of(&rx.src).copied();
        let to_us = scope.home_prefixes.iter().any(|h| h.ha_address == rx.dst);
        let Some(home) = home.filter(|_| bound && to_us) else {
            self.icmp_stats.prefix_solicitations_ignored += 1;
            return;
        };
        let prefixes: Vec<(Ipv6Addr, u8)> = scope
            .home_prefixes
            .iter()
            .filter(|h| h.ifindex == home.ifindex)
            .map(|h| (h.prefix, h.len))
            .collect();
        if !self.spend_icmp_budget(now) {
            self.icmp_stats.prefix_solicitations_ignored += 1;
            return;
        }
        let m = mpd::advertisement(id, &prefixes, rx.dst);
        let Some(sock) = &self.icmp else { return };
        match sock.send(&m, rx.src, rx.dst) {
            Ok(_) => self.icmp_stats.prefix_advertisements += 1,
            Err(e) => {
                self.signalling.stats.send_errors += 1;
                tracing::debug!(error = %e, to = %rx.src, "sending a mobile prefix advertisement failed");
            }
        }
    }

    /// One ICMPv6 message of this second's budget ([`icmp::MAX_REPLIES_PER_SECOND`]).
    fn spend_icmp_budget(&mut self, now: Instant) -> bool {
        if now.duration_since(self.icmp_budget.0) >= Duration::from_secs(1) {
            self.icmp_budget = (now, 0);
        }
        if self.icmp_budget.1 >= icmp::MAX_REPLIES_PER_SECOND {
            return false;
        }
        self.icmp_budget.1 += 1;
        true
    }

    /// ICMPv6 for DHAAD: a Router Advertisement (another home agent on a home link,
    /// RFC 6275 §10.5.1) or a DHAAD Request to a home-agents anycast address (§10.5).
    pub fn on_icmp(&mut self, rx: Received, bindings: &Bindings, now: Instant) {
        match rx.data.first() {
            Some(
                &(tunnel_icmp::DEST_UNREACHABLE
                | tunnel_icmp::PACKET_TOO_BIG
                | tunnel_icmp::TIME_EXCEEDED
                | tunnel_icmp::PARAMETER_PROBLEM),
            ) => self.relay_tunnel_error(&rx, bindings, now),
            Some(&mpd::MOBILE_PREFIX_SOLICITATION) => self.advertise_prefixes(&rx, bindings, now),
            Some(&dhaad::ROUTER_ADVERTISEMENT) => {
                // RFC 4861 §6.1.2: from the link (hop limit 255), from a link-local address.
                if rx.hop_limit != Some(255) || rx.src.segments()[0] & 0xffc0 != 0xfe80 {
                    self.icmp_stats.invalid += 1;
                    return;
                }
                if let Some(ad) = dhaad::parse_ra(&rx.data) {
                    self.icmp_stats.advertisements_learned += 1;
                    self.home_agents.learn(rx.ifindex, &ad, now);
                }
            }
            Some(&dhaad::DHAAD_REQUEST) => {
                let Some(id) = dhaad::parse_request(&rx.data) else {
                    self.icmp_stats.invalid += 1;
                    return;
                };
                self.icmp_stats.requests += 1;
                // The request names the home link by the anycast address it was sent to.
                let Some(home) = self
                    .registrations
                    .scope()
                    .home_prefixes
                    .iter()
                    .find(|h| dhaad::anycast_address(h.prefix, h.len) == Some(rx.dst))
                    .cloned()
                else {
                    self.icmp_stats.not_for_a_home_link += 1;
                    return;
                };
                if !crate::config::is_global_unicast(&rx.src) {
                    self.icmp_stats.invalid += 1;
                    return;
                }
                if !self.spend_icmp_budget(now) {
                    self.icmp_stats.rate_limited += 1;
                    return;
                }
                let shuffler = &mut self.shuffler;
                let list = self
                    .home_agents
                    .reply_addresses(home.ifindex, now, |g| shuffler.shuffle(g));
                let reply = dhaad::reply(id, &list);
                let Some(sock) = &self.icmp else { return };
                match sock.send(&reply, rx.src, home.ha_address) {
                    Ok(_) => self.icmp_stats.replies += 1,
                    Err(e) => {
                        self.signalling.stats.send_errors += 1;
                        tracing::debug!(error = %e, to = %rx.src, "sending a DHAAD reply failed");
                    }
                }
            }
            _ => self.icmp_stats.invalid += 1,
        }
    }

    /// A Mobility Header arrived (RFC 6275 §9.2, §9.5.1, §10.3).
    pub async fn on_mh(&mut self, rx: Received, bindings: &mut Bindings, now: Instant) {
        let s = &mut self.signalling.stats;
        let bu = match mobility::parse_bu(&rx) {
            Ok(bu) => bu,
            Err(Rejected::BadChecksum) => return s.dropped_bad_checksum += 1,
            Err(Rejected::Malformed(_)) => return s.dropped_malformed += 1,
            Err(Rejected::NotBindingUpdate) => return s.dropped_not_bu += 1,
            Err(Rejected::UnknownType {
                mh_type,
                reply_to,
                hoa,
            }) => {
                tracing::debug!(%reply_to, mh_type, "unknown MH type: Binding Error status 2");
                self.signalling.send_be(
                    rx.dst,
                    reply_to,
                    mh::BE_STATUS_UNRECOGNIZED_MH_TYPE,
                    hoa,
                    now,
                );
                return;
            }
        };
        s.bu_received += 1;
        let existing = bindings.get(&bu.hoa);
        self.registrations
            .handle_bu(bu, existing, bindings.len(), now);
        self.drive(bindings, now).await;
    }

    /// The binding of `hoa` expired.
    pub async fn on_expired(&mut self, hoa: Ipv6Addr, bindings: &mut Bindings, now: Instant) {
        self.registrations.handle_expired(hoa);
        self.removal_cause = Some((hoa, crate::events::Kind::Expired));
        self.drive(bindings, now).await;
        self.removal_cause = None;
    }

    /// `hagent binding add`: answered when DAD and the binding layer are done.
    #[allow(clippy::too_many_arguments)]
    pub async fn binding_add(
        &mut self,
        hoa: Ipv6Addr,
        coa: Ipv6Addr,
        lifetime: Option<Duration>,
        prefixes: Vec<(Ipv6Addr, u8)>,
        reply: ReplyTo,
        bindings: &mut Bindings,
        now: Instant,
    ) {
        let id = self.request(Pending::Add(reply));
        let existing = bindings.get(&hoa);
        self.registrations.handle_static_add(
            id,
            hoa,
            coa,
            lifetime,
            prefixes,
            existing,
            bindings.len(),
        );
        self.drive(bindings, now).await;
    }

    /// `hagent binding del`.
    pub async fn binding_del(
        &mut self,
        hoa: Ipv6Addr,
        reply: ReplyTo,
        bindings: &mut Bindings,
        now: Instant,
    ) {
        let id = self.request(Pending::Del(reply));
        let bound = bindings.get(&hoa).is_some();
        self.registrations.handle_static_remove(id, hoa, bound);
        self.removal_cause = Some((hoa, crate::events::Kind::Removed));
        self.drive(bindings, now).await;
        self.removal_cause = None;
    }

    fn request(&mut self, p: Pending) -> u64 {
        self.next_id += 1;
        self.replies.insert(self.next_id, p);
        self.next_id
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to do.
    pub fn poll_timeout(&self) -> Instant {
        [
            self.dad.poll_timeout(),
            self.signalling.poll_timeout(),
            self.advertisements.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .fold(self.summary.next, Instant::min)
    }

    pub async fn handle_timeout(&mut self, bindings: &mut Bindings, now: Instant) {
        for (hoa, result) in self.dad.handle_timeout(now) {
            self.registrations.handle_dad(hoa, result);
        }
        self.signalling.handle_timeout(bindings, now);
        let due = self.advertisements.handle_timeout(now, |hoa, ifindex| {
            bindings
                .get(hoa)
                .is_some_and(|b| b.spec.home_ifindex == ifindex)
        });
        for (ifindex, hoa) in due {
            self.advertise(ifindex, hoa);
        }
        if now >= self.summary.next {
            self.log_summary(now);
        }
        self.drive(bindings, now).await;
    }

    /// Carries out what the registrations ask, feeding outcomes back, until nothing is left.
    async fn drive(&mut self, bindings: &mut Bindings, now: Instant) {
        while let Some(effect) = self.registrations.poll_effect() {
            match effect {
                Effect::Ba {
                    bu,
                    fields,
                    refresh_units,
                } => {
                    let home = self
                        .registrations
                        .scope()
                        .home_prefix_of(&bu.hoa)
                        .map(|h| h.ifindex);
                    self.signalling
                        .send_ba(bindings, &bu, fields, refresh_units, home, now)
                        .await;
                }
                Effect::StartDad { hoa, ifindex } => {
                    if let Err(e) = self.dad.start(hoa, ifindex, now) {
                        self.registrations.handle_dad(hoa, Err(format!("{e:#}")));
                    }
                }
                Effect::CancelDad { hoa } => self.dad.cancel(hoa),
                Effect::Apply(op) => {
                    let hoa = op.hoa();
                    let result = bindings.apply(op, now).await;
                    self.log_change(hoa, &result, bindings);
                    self.registrations.handle_applied(hoa, &result);
                }
                Effect::Advertise { hoa, ifindex } => {
                    self.advertise(ifindex, hoa);
                    self.advertisements.start(hoa, ifindex, now);
                }
                Effect::Reply { id, result } => self.reply(id, result, bindings, now),
            }
        }
    }

    fn log_change(
        &mut self,
        hoa: Ipv6Addr,
        result: &Result<Applied, crate::bindings::ApplyError>,
        bindings: &Bindings,
    ) {
        use crate::events::{Event, Kind};
        let origin = |o: &crate::bindings::Origin| match o {
            crate::bindings::Origin::Static => "static",
            crate::bindings::Origin::Registered => "registered",
        };
        let event = match result {
            Ok(Applied::Created { .. }) => {
                bindings.get(&hoa).map(|b| (Kind::Created, &b.spec, None))
            }
            Ok(Applied::Updated { previous, .. }) => bindings
                .get(&hoa)
                .filter(|b| b.spec.coa != previous.coa)
                .map(|b| (Kind::Moved, &b.spec, Some(previous.coa))),
            Ok(Applied::Removed(b)) => {
                let kind = match self.removal_cause {
                    Some((h, k)) if h == hoa => k,
                    _ => Kind::Deregistered,
                };
                Some((kind, &b.spec, None))
            }
            // A refresh (same CoA) is no event; refusals are summed up in the summary.
            Err(_) => None,
        };
        let Some((kind, spec, previous_coa)) = event else {
            return;
        };
        let e = Event {
            event: kind,
            hoa,
            coa: spec.coa,
            previous_coa,
            sequence: spec.sequence,
            lifetime_s: spec.lifetime.map(|l| l.as_secs()),
            origin: origin(&spec.origin),
            time_ms: crate::events::now_ms(),
        };
        // Monitors get every event; the log at most LOGGED_CHANGES per summary interval, the
        // rest counted in the summary line.
        let log = self.summary.logged < LOGGED_CHANGES;
        if log {
            self.summary.logged += 1;
        } else {
            self.summary.suppressed += 1;
        }
        crate::events::emit(e, log);
    }

    fn log_summary(&mut self, now: Instant) {
        let s = self.registrations.stats().clone();
        let l = &self.summary.last;
        let turned_away = s.turned_away() - l.turned_away();
        let (created, removed, updated) = (
            s.created - l.created,
            s.removed - l.removed,
            s.updated - l.updated,
        );
        if turned_away > 0 || self.summary.suppressed > 0 {
            let refused: Vec<String> = s
                .refused
                .iter()
                .map(|(st, n)| (st, n - l.refused.get(st).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .map(|(st, n)| format!("{n}×{st}"))
                .collect();
            tracing::warn!(
                created,
                updated,
                removed,
                not_logged = self.summary.suppressed,
                turned_away,
                refused = %refused.join(" "),
                discarded_home_address = s.discarded_home_address - l.discarded_home_address,
                discarded_care_of_address = s.discarded_care_of_address - l.discarded_care_of_address,
                dropped_rate_limited = s.dropped_rate_limited - l.dropped_rate_limited,
                dropped_dad_full = s.dropped_dad_full - l.dropped_dad_full,
                dropped_busy = s.dropped_busy - l.dropped_busy,
                "binding updates in the last {} s",
                SUMMARY_INTERVAL.as_secs()
            );
        }
        self.summary = Summary {
            next: now + SUMMARY_INTERVAL,
            last: s,
            logged: 0,
            suppressed: 0,
        };
    }

    fn reply(
        &mut self,
        id: u64,
        result: Result<Ipv6Addr, String>,
        bindings: &Bindings,
        now: Instant,
    ) {
        let Some(pending) = self.replies.remove(&id) else {
            return;
        };
        let (tx, value) = match pending {
            Pending::Add(tx) => (
                tx,
                result.map_err(|e| anyhow!(e)).and_then(|hoa| {
                    let v = bindings
                        .view(&hoa, now)?
                        .ok_or_else(|| anyhow!("the binding of {hoa} is gone"))?;
                    Ok(serde_json::to_value(v)?)
                }),
            ),
            Pending::Del(tx) => (
                tx,
                result
                    .map(|hoa| json!({ "removed": hoa }))
                    .map_err(|e| anyhow!(e)),
            ),
        };
        let _ = tx.send(value);
    }

    /// The unsolicited NA after a new binding (RFC 6275 §10.4.1).
    fn advertise(&self, ifindex: u32, hoa: Ipv6Addr) {
        let Some(link) = self.links.iter().find(|l| l.ifindex == ifindex) else {
            return;
        };
        let Some(src) = link.nd_source() else {
            return;
        };
        if let Err(e) = self.ndisc.advertise(ifindex, src, hoa, link.mac) {
            tracing::warn!(%hoa, error = %format!("{e:#}"), "unsolicited neighbour advertisement failed");
        }
    }

    /// The home agent's part of a metrics scrape.
    pub fn fill_metrics(&self, s: &mut crate::metrics::Snapshot) {
        s.signalling = self.signalling.stats;
        s.acks_by_status = self
            .signalling
            .acks_by_status
            .iter()
            .map(|(&k, &v)| (k, v))
            .collect();
        s.registrations = Some(self.registrations.stats().clone());
        s.registrations_in_progress = self.registrations.in_progress() as u64;
        s.dad_in_flight = self.dad.running() as u64;
        s.dhaad = Some(self.icmp_stats);
        s.na_repeats = (
            self.advertisements.pending() as u64,
            self.advertisements.dropped,
        );
    }

    /// What `hagent stats` shows of the home agent.
    pub fn stats(&self, dropped_queue_full: u64) -> serde_json::Value {
        json!({
            "signalling": self.signalling.stats,
            "registrations": self.registrations.stats(),
            "in_progress": self.registrations.in_progress(),
            "dad_probes": self.dad.running(),
            "dropped_queue_full": dropped_queue_full,
            "dhaad": self.icmp_stats,
            "dhaad_queue_full": self.icmp_dropped.load(std::sync::atomic::Ordering::Relaxed),
        })
    }
}
