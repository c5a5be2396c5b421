//! Binding events: created, moved, deregistered, removed, expired. Each is one log line at the
//! default level (`key=value` fields) and one message to every `hagent monitor`.
//!
//! The stream is a bounded broadcast: a monitor that reads too slowly loses the oldest events
//! and is told how many (`{"event":"lost","count":N}`) — it never holds up the daemon.

use std::{net::Ipv6Addr, sync::OnceLock};

use serde::Serialize;
use tokio::sync::broadcast;

/// Events buffered for each monitor before the oldest are dropped.
pub const MONITOR_BACKLOG: usize = 4096;

/// What happened to a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A new binding (a registration, or `hagent binding add`).
    Created,
    /// An existing binding's care-of address changed (a handover).
    Moved,
    /// The mobile node deregistered (lifetime 0, or back home).
    Deregistered,
    /// The operator removed it (`hagent binding del`), or its home link went away.
    Removed,
    /// Its lifetime ran out.
    Expired,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Created => "created",
            Kind::Moved => "moved",
            Kind::Deregistered => "deregistered",
            Kind::Removed => "removed",
            Kind::Expired => "expired",
        }
    }
}

/// One binding event, as `hagent monitor --json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub event: Kind,
    pub hoa: Ipv6Addr,
    pub coa: Ipv6Addr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_coa: Option<Ipv6Addr>,
    pub sequence: u16,
    /// Seconds granted; absent: never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_s: Option<u64>,
    /// `registered` (by a Binding Update) or `static` (by the operator).
    pub origin: &'static str,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
}

fn channel() -> &'static broadcast::Sender<Event> {
    static TX: OnceLock<broadcast::Sender<Event>> = OnceLock::new();
    TX.get_or_init(|| broadcast::channel(MONITOR_BACKLOG).0)
}

/// A new monitor's receiver (events from now on).
pub fn subscribe() -> broadcast::Receiver<Event> {
    channel().subscribe()
}

/// Logs `e` when `log` (one info line, `key=value`) and hands it to the monitors.
pub fn emit(e: Event, log: bool) {
    if log {
        log_line(&e);
    }
    // No monitor: nothing to do (the error only says so).
    let _ = channel().send(e);
}

fn log_line(e: &Event) {
    let prev = e.previous_coa.map(|p| p.to_string());
    let lifetime = e
        .lifetime_s
        .map_or_else(|| "static".to_string(), |s| s.to_string());
    tracing::info!(
        event = %e.event.as_str(),
        hoa = %e.hoa,
        coa = %e.coa,
        previous_coa = %prev.as_deref().unwrap_or("-"),
        seq = e.sequence,
        lifetime = %lifetime,
        origin = %e.origin,
        "binding {}",
        e.event.as_str()
    );
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: Kind) -> Event {
        Event {
            event: kind,
            hoa: "2001:db8::1".parse().unwrap(),
            coa: "2001:db8:1::1".parse().unwrap(),
            previous_coa: None,
            sequence: 7,
            lifetime_s: Some(600),
            origin: "registered",
            time_ms: 1,
        }
    }

    #[test]
    fn a_monitor_gets_events_as_ndjson_fields_and_a_slow_one_learns_what_it_lost() {
        let mut rx = subscribe();
        emit(event(Kind::Created), true);
        let got = rx.try_recv().unwrap();
        let v = serde_json::to_value(&got).unwrap();
        assert_eq!(v["event"], "created");
        assert_eq!(v["hoa"], "2001:db8::1");
        assert_eq!(v["lifetime_s"], 600);
        assert!(v.get("previous_coa").is_none());
        for _ in 0..MONITOR_BACKLOG + 10 {
            emit(event(Kind::Moved), false);
        }
        match rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert!(n >= 10, "{n}"),
            other => panic!("expected a lag, got {other:?}"),
        }
    }
}
