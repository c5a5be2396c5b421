//! The home agent's answers on the wire: Binding Acknowledgements — built whole with their
//! type 2 routing header on a raw socket, or, for ESP-protected mobile nodes (RFC 3776),
//! through xfrm on a Mobility Header socket with the TC program adding the routing header —
//! and rate-limited Binding Errors.

use std::{
    collections::{HashMap, VecDeque},
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use ha_common::mh::BaFields;

use super::registrar::{BindingUpdate, status};
use crate::{
    bindings::Bindings,
    mobility::{self, MhSender, PacketSender, SignallingStats},
};

/// How long a refusal's CoA stays in `HA_SIGNAL_COA` when the kernel may still be resolving the
/// HoA's neighbour (the BA waits in the neighbour queue until then).
const SIGNAL_COA_HOLD: Duration = Duration::from_secs(3);
/// Destinations remembered for the Binding Error rate limit.
const MAX_BE_DESTINATIONS: usize = 65536;

pub struct Signalling {
    sender: PacketSender,
    /// Signalling that must pass xfrm (`UseMnHaIPsec`).
    mh_sender: MhSender,
    pub stats: SignallingStats,
    /// BAs sent, by status (at most 256 keys).
    pub acks_by_status: std::collections::BTreeMap<u8, u64>,
    /// Last Binding Error per destination (rate limit, RFC 6275 §9.3.3).
    last_be: HashMap<Ipv6Addr, Instant>,
    /// Refusal CoAs to forget from `HA_SIGNAL_COA`, by deadline.
    forget: VecDeque<(Instant, Ipv6Addr, Ipv6Addr)>,
}

impl Signalling {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            sender: PacketSender::new()?,
            mh_sender: MhSender::new()?,
            stats: SignallingStats::default(),
            acks_by_status: std::collections::BTreeMap::new(),
            last_be: HashMap::new(),
            forget: VecDeque::new(),
        })
    }

    /// Sends a BA for `bu` (RFC 6275 §10.3.1: regardless of the A bit). `home` is the HoA's
    /// home link, if it has one here.
    pub async fn send_ba(
        &mut self,
        bindings: &mut Bindings,
        bu: &BindingUpdate,
        fields: BaFields,
        refresh_units: Option<u16>,
        home: Option<u32>,
        now: Instant,
    ) {
        let away = bu.coa != bu.hoa;
        let protected = bindings.ipsec_signalling(&bu.hoa);
        if !protected || !away {
            if let Err(e) = self.transmit(bu, &fields, refresh_units, protected) {
                tracing::warn!(coa = %bu.coa, error = %format!("{e:#}"), "sending a BA failed");
            }
            return;
        }
        // With IPsec the BA goes through xfrm (ESP transport, RFC 3776 §3.2) and the TC
        // program adds the RH2 towards the CoA it finds in HA_SIGNAL_COA (which wins over the
        // binding, so a refusal to a new CoA does not go to the old one).
        if let Err(e) = bindings.set_signal_coa(bu.hoa, bu.coa) {
            tracing::warn!(hoa = %bu.hoa, error = %format!("{e:#}"), "writing the BA's CoA failed");
            return;
        }
        let bound = bindings.get(&bu.hoa).is_some();
        if bound {
            // The binding's route: the packet reaches TC at once.
            self.send_protected(bu, &fields, refresh_units);
            bindings.forget_signal_coa(bu.hoa, bu.coa);
            return;
        }
        if fields.status == status::DAD_FAILED {
            // Another node on the home link holds the HoA: the kernel resolves it to that
            // node (a neighbour entry of ours would hijack it) and may still be doing so.
            self.send_protected(bu, &fields, refresh_units);
            self.forget
                .push_back((now + SIGNAL_COA_HOLD, bu.hoa, bu.coa));
            return;
        }
        // No binding (a refusal, RFC 3776 §4.1): xfrm needs the packet routed out of the home
        // link, so for this one message a neighbour entry for the HoA points at us.
        let Some(ifindex) = home else {
            tracing::warn!(hoa = %bu.hoa, "no home link to route a protected BA through");
            bindings.forget_signal_coa(bu.hoa, bu.coa);
            return;
        };
        match bindings.route_refusal(bu.hoa, ifindex).await {
            Ok(()) => {
                self.send_protected(bu, &fields, refresh_units);
                bindings.unroute_refusal(bu.hoa, ifindex).await;
            }
            Err(e) => {
                self.stats.send_errors += 1;
                tracing::warn!(hoa = %bu.hoa, error = %format!("{e:#}"), "a protected BA cannot be routed");
            }
        }
        bindings.forget_signal_coa(bu.hoa, bu.coa);
    }

    fn send_protected(
        &mut self,
        bu: &BindingUpdate,
        fields: &BaFields,
        refresh_units: Option<u16>,
    ) {
        if let Err(e) = self.transmit(bu, fields, refresh_units, true) {
            tracing::warn!(hoa = %bu.hoa, coa = %bu.coa, status = fields.status, error = %format!("{e:#}"), "sending a protected BA failed");
        }
    }

    /// Puts a BA on the wire and counts it: through xfrm (`protected`: the MH socket, marked
    /// for the TC program's RH2 when the MN is away), or built whole on the raw socket.
    fn transmit(
        &mut self,
        bu: &BindingUpdate,
        fields: &BaFields,
        refresh_units: Option<u16>,
        protected: bool,
    ) -> anyhow::Result<()> {
        let away = bu.coa != bu.hoa;
        let result = if protected {
            mobility::ba_message(bu.ha_address, bu.hoa, fields, refresh_units)
                .and_then(|m| self.mh_sender.send(&m, bu.ha_address, bu.hoa, away))
        } else {
            mobility::ba_packet(bu.ha_address, bu.hoa, bu.coa, fields, refresh_units)
                .and_then(|p| Ok(self.sender.send(&p, bu.coa, 0)?))
        };
        match result {
            Ok(()) => {
                self.stats.ba_sent += 1;
                *self.acks_by_status.entry(fields.status).or_default() += 1;
            }
            Err(_) => self.stats.send_errors += 1,
        }
        result
    }

    /// Sends a Binding Error, at most one per destination per second (RFC 6275 §9.3.3).
    pub fn send_be(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        status: u8,
        hoa: Ipv6Addr,
        now: Instant,
    ) {
        if self
            .last_be
            .get(&dst)
            .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1))
        {
            return;
        }
        if self.last_be.len() >= MAX_BE_DESTINATIONS {
            self.last_be
                .retain(|_, t| now.duration_since(*t) < Duration::from_secs(1));
            if self.last_be.len() >= MAX_BE_DESTINATIONS {
                // A second's worth of destinations: the rest wait.
                return;
            }
        }
        self.last_be.insert(dst, now);
        let result = mobility::be_packet(src, dst, status, hoa)
            .and_then(|p| Ok(self.sender.send(&p, dst, 0)?));
        match result {
            Ok(()) => self.stats.be_sent += 1,
            Err(e) => {
                self.stats.send_errors += 1;
                tracing::debug!(%dst, error = %format!("{e:#}"), "sending a BE failed");
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.forget.front().map(|(t, _, _)| *t)
    }

    pub fn handle_timeout(&mut self, bindings: &mut Bindings, now: Instant) {
        while let Some(&(t, hoa, coa)) = self.forget.front() {
            if t > now {
                break;
            }
            self.forget.pop_front();
            bindings.forget_signal_coa(hoa, coa);
        }
    }
}
