//! Duplicate Address Detection for new bindings (RFC 6275 §10.3.1, RFC 4862 §5.4), any number
//! at once without a thread, task, socket option or multicast group per probe: a probe is an
//! entry in the data plane's `HA_DAD` map plus one Neighbor Solicitation; the XDP program marks
//! the entry when another node answers or probes the same address; at the deadline the entry
//! says whether the address is free. Deadlines are all one timeout apart from their start, so
//! a FIFO queue orders them.

use std::{
    collections::{HashMap, VecDeque},
    net::Ipv6Addr,
    time::Instant,
};

use crate::{
    config::HomeAgentConfig,
    dataplane::DadProbes,
    ndisc::{DAD_TIMEOUT, Ndisc},
};

/// Probes for static bindings the operator may have in flight beyond the configured bound
/// (one `hagent binding add` each; a full map answers the operator with an error).
const OPERATOR_PROBES: u32 = 64;

/// The size of the data plane's `HA_DAD` map: the probes `limits.max_pending_dad` allows, one
/// per HoA an ACL rule allows (exempt from that bound) and the operator's.
pub fn map_size(config: &HomeAgentConfig) -> u32 {
    config.limits.max_pending_dad + config.allowed_hoas().count() as u32 + OPERATOR_PROBES
}

/// The probes in flight.
pub struct Dad {
    probes: DadProbes,
    ndisc: Ndisc,
    /// Deadlines in start order, with the generation of the probe they end.
    queue: VecDeque<(Instant, Ipv6Addr, u64)>,
    /// The generation of each running probe (a cancelled and restarted probe must not end at
    /// the old deadline).
    running: HashMap<Ipv6Addr, u64>,
    generation: u64,
}

impl Dad {
    pub fn new(probes: DadProbes, ndisc: Ndisc) -> Self {
        Self {
            probes,
            ndisc,
            queue: VecDeque::new(),
            running: HashMap::new(),
            generation: 0,
        }
    }

    /// Starts probing `hoa` on `ifindex`.
    pub fn start(&mut self, hoa: Ipv6Addr, ifindex: u32, now: Instant) -> anyhow::Result<()> {
        self.probes.start(hoa)?;
        if let Err(e) = self.ndisc.probe(ifindex, hoa) {
            let _ = self.probes.finish(hoa);
            return Err(e);
        }
        self.generation += 1;
        self.running.insert(hoa, self.generation);
        self.queue
            .push_back((now + DAD_TIMEOUT, hoa, self.generation));
        Ok(())
    }

    /// Stops probing `hoa` (no outcome reported).
    pub fn cancel(&mut self, hoa: Ipv6Addr) {
        if self.running.remove(&hoa).is_some() {
            let _ = self.probes.finish(hoa);
        }
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// When the next probe ends.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.front().map(|(t, _, _)| *t)
    }

    /// The probes that ended by `now`: (HoA, `Ok(true)` if another node claimed it).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(Ipv6Addr, Result<bool, String>)> {
        let mut out = Vec::new();
        while let Some(&(t, hoa, generation)) = self.queue.front() {
            if t > now {
                break;
            }
            self.queue.pop_front();
            if self.running.get(&hoa) != Some(&generation) {
                continue;
            }
            self.running.remove(&hoa);
            let result = match self.probes.finish(hoa) {
                Ok(Some(conflict)) => Ok(conflict),
                Ok(None) => Err("the probe's map entry vanished".to_string()),
                Err(e) => Err(format!("{e:#}")),
            };
            out.push((hoa, result));
        }
        out
    }
}
