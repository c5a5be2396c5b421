//! The mobile node's binding update list for its home registration (RFC 6275 §11): what to
//! send when it moves, how to retransmit, refresh and react to every BA status. Pure — time is
//! an argument — so each rule is unit-tested; the daemon carries out the [`Action`]s.

use std::{
    net::Ipv6Addr,
    time::{Duration, Instant},
};

use serde::Serialize;

/// RFC 6275 §12: MAX_BINDACK_TIMEOUT.
pub const MAX_BINDACK_TIMEOUT: Duration = Duration::from_secs(32);

/// Where the mobile node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "at", content = "coa")]
pub enum Location {
    /// On its home link.
    Home,
    /// On a foreign link with this care-of address.
    Away(Ipv6Addr),
    /// No usable link.
    Detached,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Home => f.write_str("home"),
            Location::Away(coa) => write!(f, "away coa={coa}"),
            Location::Detached => f.write_str("detached"),
        }
    }
}

/// Settings (UMIP: MnHomeLink, MnMaxHaBindingLife, InitialBindackTimeout*).
#[derive(Clone, Debug)]
pub struct MnSettings {
    pub hoa: Ipv6Addr,
    pub ha: Ipv6Addr,
    /// Requested lifetime in 4 s units.
    pub lifetime_units: u16,
    /// InitialBindackTimeoutFirstReg (default 1.5 s: room for the HA's DAD).
    pub first_timeout: Duration,
    /// INITIAL_BINDACK_TIMEOUT for re-registrations (1 s).
    pub retry_timeout: Duration,
}

/// The state of the home registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// At home, nothing registered.
    Home,
    /// A BU is out, waiting for the BA.
    Registering,
    Registered,
    /// Going home: a deregistration is out.
    Deregistering,
    /// The HA refused with this status; waiting for the next movement (§11.7.3).
    Refused(u8),
    Detached,
}

/// What the daemon must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Point the data plane at the HA from `coa` (reverse tunnel, decapsulation).
    InstallBinding { coa: Ipv6Addr },
    /// Stop tunnelling (home or detached).
    RemoveBinding,
    /// Send a BU from `coa` (with a Home Address option), or from the HoA at home when
    /// `coa == hoa` (a deregistration, §11.5.4).
    SendBu {
        coa: Ipv6Addr,
        sequence: u16,
        lifetime_units: u16,
    },
    /// Tell the home link the HoA is ours again (§11.5.4).
    AdvertiseHome,
    /// Ask for the HA's link-layer address from the unspecified address (§11.5.4): the HA
    /// still intercepts the HoA, so its answer to a solicitation from the HoA would not reach
    /// us; to one from `::` it answers all nodes.
    SolicitHomeAgent,
}

impl std::fmt::Display for Action {
    /// `key=value` words for the log (never a `Debug` dump).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::InstallBinding { coa } => write!(f, "install-binding coa={coa}"),
            Action::RemoveBinding => f.write_str("remove-binding"),
            Action::SendBu {
                coa,
                sequence,
                lifetime_units,
            } => write!(
                f,
                "send-bu coa={coa} seq={sequence} lifetime_units={lifetime_units}"
            ),
            Action::AdvertiseHome => f.write_str("advertise-home"),
            Action::SolicitHomeAgent => f.write_str("solicit-home-agent"),
        }
    }
}

/// The binding update list entry for the home agent.
#[derive(Clone, Debug, Serialize)]
pub struct MobileNode {
    #[serde(skip)]
    settings: MnSettings,
    pub location: Location,
    pub state: State,
    /// Sequence number of the last BU sent.
    pub sequence: u16,
    /// Sequence number of the first BU of the current attempt: a BA for any BU since answers
    /// it (a retransmission may cross the BA of the previous copy).
    #[serde(skip)]
    attempt_first: u16,
    /// Granted lifetime of the current registration.
    pub lifetime_s: u32,
    #[serde(skip)]
    timeout: Duration,
    #[serde(skip)]
    retransmit_at: Option<Instant>,
    #[serde(skip)]
    refresh_at: Option<Instant>,
    #[serde(skip)]
    sent_at: Option<Instant>,
    /// Time from the last BU to its BA.
    pub last_rtt_ms: Option<u64>,
    /// Whether the HA may hold a binding for us (registered, not yet deregistered): losing
    /// the link in between does not change that.
    pub bound: bool,
    pub bus_sent: u64,
    pub registrations: u64,
}

impl MobileNode {
    pub fn new(settings: MnSettings, initial_sequence: u16) -> Self {
        Self {
            settings,
            location: Location::Detached,
            state: State::Detached,
            sequence: initial_sequence,
            attempt_first: initial_sequence.wrapping_add(1),
            lifetime_s: 0,
            timeout: Duration::ZERO,
            retransmit_at: None,
            refresh_at: None,
            sent_at: None,
            last_rtt_ms: None,
            bound: false,
            bus_sent: 0,
            registrations: 0,
        }
    }

    pub fn settings(&self) -> &MnSettings {
        &self.settings
    }

    /// Starts a new attempt (a move, a refresh): BAs to earlier attempts no longer count.
    fn new_attempt(&mut self) {
        self.attempt_first = self.sequence.wrapping_add(1);
    }

    fn send(&mut self, coa: Ipv6Addr, lifetime_units: u16, now: Instant) -> Action {
        self.sequence = self.sequence.wrapping_add(1);
        self.retransmit_at = Some(now + self.timeout);
        self.sent_at = Some(now);
        self.bus_sent += 1;
        Action::SendBu {
            coa,
            sequence: self.sequence,
            lifetime_units,
        }
    }

    /// Movement detection says the node is now at `location`.
    pub fn moved(&mut self, location: Location, now: Instant) -> Vec<Action> {
        if location == self.location {
            return vec![];
        }
        let was_registered = self.bound
            || matches!(
                self.state,
                State::Registering | State::Registered | State::Deregistering
            );
        self.location = location;
        self.refresh_at = None;
        self.new_attempt();
        match location {
            Location::Away(coa) => {
                // §11.7.1: a new CoA → register it. The first registration waits for the
                // HA's DAD, hence the longer initial timeout.
                self.timeout = if was_registered {
                    self.settings.retry_timeout
                } else {
                    self.settings.first_timeout
                };
                self.state = State::Registering;
                vec![
                    Action::InstallBinding { coa },
                    self.send(coa, self.settings.lifetime_units, now),
                ]
            }
            Location::Home => {
                // §11.5.4: back home → deregister (from the HoA, lifetime 0) and reclaim the
                // HoA on the link.
                if was_registered {
                    self.timeout = self.settings.retry_timeout;
                    self.state = State::Deregistering;
                    let hoa = self.settings.hoa;
                    vec![
                        Action::RemoveBinding,
                        Action::AdvertiseHome,
                        Action::SolicitHomeAgent,
                        self.send(hoa, 0, now),
                    ]
                } else {
                    self.state = State::Home;
                    self.retransmit_at = None;
                    vec![Action::RemoveBinding, Action::AdvertiseHome]
                }
            }
            Location::Detached => {
                self.state = State::Detached;
                self.retransmit_at = None;
                vec![]
            }
        }
    }

    /// A Binding Acknowledgement from the HA (§11.7.3).
    pub fn on_ba(
        &mut self,
        status: u8,
        sequence: u16,
        lifetime_units: u16,
        refresh_units: Option<u16>,
        now: Instant,
    ) -> Vec<Action> {
        if status == 135 {
            // §11.7.3: out of window — the BA carries the last sequence the HA accepted;
            // continue from there.
            self.sequence = sequence;
            self.new_attempt();
            return self.resend(now);
        }
        let in_attempt = sequence.wrapping_sub(self.attempt_first)
            <= self.sequence.wrapping_sub(self.attempt_first);
        if !in_attempt || !matches!(self.state, State::Registering | State::Deregistering) {
            return vec![];
        }
        self.last_rtt_ms = self
            .sent_at
            .map(|t| now.saturating_duration_since(t).as_millis() as u64);
        self.retransmit_at = None;
        if status == 133 && self.state == State::Deregistering {
            // §10.3.2: the HA has no binding — which is what a deregistration wants.
            self.state = State::Home;
            self.bound = false;
            self.lifetime_s = 0;
            return vec![];
        }
        if status >= 128 {
            // 129 prohibited, 132 not home subnet, 133 not our HA, ...: retrying will not
            // help; stop until something changes.
            self.state = State::Refused(status);
            return vec![];
        }
        match self.state {
            State::Deregistering => {
                self.state = State::Home;
                self.bound = false;
                self.lifetime_s = 0;
                vec![]
            }
            _ => {
                self.state = State::Registered;
                self.bound = true;
                self.registrations += 1;
                self.lifetime_s = u32::from(lifetime_units) * 4;
                // Refresh before expiry: at the Binding Refresh Advice if the HA gave one
                // (§11.7.3), else at 80 % of the granted lifetime.
                let refresh = match refresh_units {
                    Some(r) if r > 0 => Duration::from_secs(u64::from(r) * 4),
                    _ => Duration::from_millis(u64::from(lifetime_units) * 4 * 800),
                };
                self.refresh_at = Some(now + refresh.max(Duration::from_secs(1)));
                vec![]
            }
        }
    }

    /// A Binding Refresh Request from the home agent (§11.7.4): refresh the registration now.
    /// Only a registered node away from home answers, once per attempt — a flood of requests
    /// (they are not authenticated without IPsec) costs one BU per BA.
    pub fn on_brr(&mut self, now: Instant) -> Vec<Action> {
        if self.state != State::Registered || !matches!(self.location, Location::Away(_)) {
            return vec![];
        }
        self.refresh_at = None;
        self.new_attempt();
        self.timeout = self.settings.retry_timeout;
        self.resend(now)
    }

    /// A Binding Error from the home agent (§11.3.6). Status 1 (no binding for the Home
    /// Address option) means the home agent lost our binding: register again, once per
    /// attempt. Status 2 (Mobility Header type not recognised) changes nothing: the BUs' own
    /// back-off bounds them, and a forged error must not end the registration.
    pub fn on_be(&mut self, status: u8, now: Instant) -> Vec<Action> {
        if status != 1 {
            return vec![];
        }
        self.on_brr(now)
    }

    fn resend(&mut self, now: Instant) -> Vec<Action> {
        match (self.state, self.location) {
            (State::Registering | State::Registered, Location::Away(coa)) => {
                self.state = State::Registering;
                vec![self.send(coa, self.settings.lifetime_units, now)]
            }
            (State::Deregistering, _) => {
                let hoa = self.settings.hoa;
                vec![Action::SolicitHomeAgent, self.send(hoa, 0, now)]
            }
            _ => vec![],
        }
    }

    /// The last BU could not be sent (no route yet): try again in 100 ms, same back-off.
    pub fn send_failed(&mut self, now: Instant) {
        if self.retransmit_at.is_some() {
            self.retransmit_at = Some(now + Duration::from_millis(100));
        }
    }

    /// Time passed: retransmit (§11.8, exponential backoff up to MAX_BINDACK_TIMEOUT) or
    /// refresh.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        if self.retransmit_at.is_some_and(|t| t <= now) {
            self.timeout = (self.timeout * 2).min(MAX_BINDACK_TIMEOUT);
            return self.resend(now);
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            self.new_attempt();
            self.timeout = self.settings.retry_timeout;
            return self.resend(now);
        }
        vec![]
    }

    /// When [`on_timer`](Self::on_timer) has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.retransmit_at, self.refresh_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn mn() -> MobileNode {
        MobileNode::new(
            MnSettings {
                hoa: a("2001:db8:bee5::dead:face"),
                ha: a("2001:db8:bee5::c001:babe"),
                lifetime_units: 150,
                first_timeout: Duration::from_millis(1500),
                retry_timeout: Duration::from_secs(1),
            },
            100,
        )
    }

    #[test]
    fn moving_away_registers_and_the_ba_completes_it_rfc6275_11_7_1() {
        let mut m = mn();
        let t = Instant::now();
        let coa = a("2001:db8:f00d::1");
        let acts = m.moved(Location::Away(coa), t);
        assert_eq!(
            acts,
            vec![
                Action::InstallBinding { coa },
                Action::SendBu {
                    coa,
                    sequence: 101,
                    lifetime_units: 150
                },
            ]
        );
        assert_eq!(
            m.next_deadline(),
            Some(t + Duration::from_millis(1500)),
            "InitialBindackTimeoutFirstReg"
        );
        assert!(
            m.on_ba(0, 100, 150, None, t).is_empty(),
            "a BA for an older sequence is ignored"
        );
        assert_eq!(m.state, State::Registering);
        m.on_ba(0, 101, 150, None, t + Duration::from_millis(20));
        assert_eq!(m.state, State::Registered);
        assert_eq!(m.last_rtt_ms, Some(20));
        // Refresh at 80 % of 600 s.
        assert_eq!(
            m.next_deadline(),
            Some(t + Duration::from_millis(20) + Duration::from_secs(480))
        );
    }

    #[test]
    fn retransmission_backs_off_to_32_s_rfc6275_11_8() {
        let mut m = mn();
        let mut t = Instant::now();
        let coa = a("2001:db8:f00d::1");
        m.moved(Location::Away(coa), t);
        let mut gaps = vec![];
        for _ in 0..7 {
            let next = m.next_deadline().unwrap();
            gaps.push(next - t);
            t = next;
            let acts = m.on_timer(t);
            assert!(matches!(acts[..], [Action::SendBu { .. }]), "{acts:?}");
        }
        let secs: Vec<f64> = gaps.iter().map(|d| d.as_secs_f64()).collect();
        assert_eq!(secs, vec![1.5, 3.0, 6.0, 12.0, 24.0, 32.0, 32.0]);
        assert_eq!(m.sequence, 108, "every BU has a new sequence number");
    }

    #[test]
    fn a_ba_to_an_earlier_copy_of_the_bu_counts() {
        let mut m = mn();
        let t = Instant::now();
        m.moved(Location::Away(a("2001:db8:f00d::1")), t);
        m.on_timer(t + Duration::from_secs(2));
        assert_eq!(m.sequence, 102);
        m.on_ba(0, 101, 150, None, t + Duration::from_secs(2));
        assert_eq!(m.state, State::Registered);
    }

    #[test]
    fn out_of_window_resynchronises_rfc6275_11_7_3() {
        let mut m = mn();
        let t = Instant::now();
        let coa = a("2001:db8:f00d::1");
        m.moved(Location::Away(coa), t);
        let acts = m.on_ba(135, 5000, 0, None, t);
        assert_eq!(
            acts,
            vec![Action::SendBu {
                coa,
                sequence: 5001,
                lifetime_units: 150
            }]
        );
    }

    #[test]
    fn refusals_stop_until_the_next_move_rfc6275_11_7_3() {
        for status in [129u8, 132, 133] {
            let mut m = mn();
            let t = Instant::now();
            m.moved(Location::Away(a("2001:db8:f00d::1")), t);
            assert!(m.on_ba(status, 101, 0, None, t).is_empty());
            assert_eq!(m.state, State::Refused(status));
            assert_eq!(m.next_deadline(), None, "no retransmission after {status}");
        }
    }

    #[test]
    fn refresh_follows_the_binding_refresh_advice() {
        let mut m = mn();
        let t = Instant::now();
        m.moved(Location::Away(a("2001:db8:f00d::1")), t);
        m.on_ba(0, 101, 150, Some(25), t);
        assert_eq!(m.next_deadline(), Some(t + Duration::from_secs(100)));
        let acts = m.on_timer(t + Duration::from_secs(100));
        assert!(matches!(acts[..], [Action::SendBu { sequence: 102, .. }]));
    }

    #[test]
    fn losing_the_link_on_the_way_home_still_deregisters() {
        let mut m = mn();
        let t = Instant::now();
        m.moved(Location::Away(a("2001:db8:f00d::1")), t);
        m.on_ba(0, 101, 150, None, t);
        assert!(m.moved(Location::Detached, t).is_empty());
        let acts = m.moved(Location::Home, t);
        assert!(
            acts.iter().any(|a| matches!(
                a,
                Action::SendBu {
                    lifetime_units: 0,
                    ..
                }
            )),
            "{acts:?}"
        );
    }

    #[test]
    fn handover_and_return_home_rfc6275_11_5_4() {
        let mut m = mn();
        let t = Instant::now();
        let (a1, b1) = (a("2001:db8:f00d::1"), a("2001:db8:f00e::1"));
        m.moved(Location::Away(a1), t);
        m.on_ba(0, 101, 150, None, t);
        let acts = m.moved(Location::Away(b1), t);
        assert_eq!(
            acts,
            vec![
                Action::InstallBinding { coa: b1 },
                Action::SendBu {
                    coa: b1,
                    sequence: 102,
                    lifetime_units: 150
                },
            ]
        );
        assert_eq!(
            m.next_deadline(),
            Some(t + Duration::from_secs(1)),
            "re-registration timeout"
        );
        m.on_ba(0, 102, 150, None, t);
        let hoa = m.settings().hoa;
        let acts = m.moved(Location::Home, t);
        assert_eq!(
            acts,
            vec![
                Action::RemoveBinding,
                Action::AdvertiseHome,
                Action::SolicitHomeAgent,
                Action::SendBu {
                    coa: hoa,
                    sequence: 103,
                    lifetime_units: 0
                },
            ]
        );
        m.on_ba(0, 103, 0, None, t);
        assert_eq!(m.state, State::Home);
        assert_eq!(m.next_deadline(), None);
    }

    /// Registered away from home with CoA `coa`.
    fn registered(coa: &str, now: Instant) -> MobileNode {
        let mut m = mn();
        let out = m.moved(Location::Away(a(coa)), now);
        let Some(Action::SendBu { sequence, .. }) = out.last().cloned() else {
            panic!("{out:?}");
        };
        assert!(m.on_ba(0, sequence, 150, None, now).is_empty());
        assert_eq!(m.state, State::Registered);
        m
    }

    #[test]
    fn a_binding_refresh_request_refreshes_at_once_rfc6275_11_7_4() {
        let t0 = Instant::now();
        let mut m = registered("2001:db8:f00d::1", t0);
        let seq = m.sequence;
        let out = m.on_brr(t0 + Duration::from_secs(5));
        assert_eq!(
            out,
            vec![Action::SendBu {
                coa: a("2001:db8:f00d::1"),
                sequence: seq.wrapping_add(1),
                lifetime_units: 150
            }]
        );
        assert_eq!(m.state, State::Registering);
        // More requests before the BA: nothing more (one BU per attempt).
        assert!(m.on_brr(t0 + Duration::from_secs(5)).is_empty());
        // At home, or not registered: ignored.
        let mut home = mn();
        home.moved(Location::Home, t0);
        assert!(home.on_brr(t0).is_empty());
    }

    #[test]
    fn binding_errors_from_the_home_agent_rfc6275_11_3_6() {
        let t0 = Instant::now();
        let mut m = registered("2001:db8:f00d::1", t0);
        // Status 2 (type not recognised): nothing changes.
        assert!(m.on_be(2, t0).is_empty());
        assert_eq!(m.state, State::Registered);
        // Status 1 (the HA has no binding for our HoA): register again.
        let out = m.on_be(1, t0);
        assert!(
            matches!(
                out.as_slice(),
                [Action::SendBu {
                    lifetime_units: 150,
                    ..
                }]
            ),
            "{out:?}"
        );
        assert_eq!(m.state, State::Registering);
    }
}
