//! The eBPF data plane: loads the object embedded in this binary, attaches the XDP program to
//! the home agent's interfaces and reads its maps.
//!
//! Attachments are BPF links owned by this process: they are detached when [`Dataplane`] is
//! dropped, and by the kernel when the process dies, so nothing stays attached after hagent
//! exits, however it exits.

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::PerCpuArray,
    programs::{ProgramError, Xdp, XdpMode as AyaXdpMode},
};
use ha_common::stats::{Counter, CounterValue};
use serde::Serialize;

use crate::config::XdpMode;

/// The eBPF object built from `ha-ebpf` by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha-ebpf"));

/// One interface the XDP program is attached to.
#[derive(Clone, Debug, Serialize)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    /// The mode the kernel accepted ("native" or "generic").
    pub mode: XdpMode,
}

/// A global counter summed over all CPUs.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CounterReading {
    pub name: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// The loaded programs and maps.
pub struct Dataplane {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
}

impl Dataplane {
    /// Loads the embedded object and verifies the programs (nothing is attached yet).
    pub fn load() -> anyhow::Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .load(EBPF_OBJECT)
            .context("loading the embedded eBPF object failed")?;
        let program = xdp_program(&mut ebpf)?;
        program
            .load()
            .map_err(verifier_error)
            .context("the kernel refused the XDP program")?;
        Ok(Self {
            ebpf,
            attachments: Vec::new(),
        })
    }

    /// Attaches the XDP program to `interface`. In native mode, a driver without native XDP
    /// support makes us fall back to generic mode, with a warning in the log.
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> anyhow::Result<&Attachment> {
        let ifindex = crate::system::ifindex(interface)?;
        let program = xdp_program(&mut self.ebpf)?;
        let accepted = match mode {
            XdpMode::Generic => {
                program
                    .attach_to_if_index(ifindex, AyaXdpMode::Skb)
                    .with_context(|| format!("attaching XDP (generic) to {interface} failed"))?;
                XdpMode::Generic
            }
            XdpMode::Native => match program.attach_to_if_index(ifindex, AyaXdpMode::Driver) {
                Ok(_) => XdpMode::Native,
                Err(e) if driver_lacks_native_xdp(&e) => {
                    tracing::warn!(
                        interface,
                        error = %e,
                        "the driver has no native XDP; falling back to generic (skb) mode, which is slower"
                    );
                    program
                        .attach_to_if_index(ifindex, AyaXdpMode::Skb)
                        .with_context(|| {
                            format!(
                                "attaching XDP (generic, after native failed) to {interface} failed"
                            )
                        })?;
                    XdpMode::Generic
                }
                Err(e) => {
                    return Err(anyhow!(e))
                        .with_context(|| format!("attaching XDP (native) to {interface} failed"));
                }
            },
        };
        tracing::info!(
            interface,
            ifindex,
            mode = accepted.as_str(),
            "XDP program attached"
        );
        self.attachments.push(Attachment {
            interface: interface.to_string(),
            ifindex,
            mode: accepted,
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// Where the program is attached.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Reads every global counter, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Vec<CounterReading>> {
        let map = self
            .ebpf
            .map(ha_common::maps::GLOBAL_COUNTERS)
            .ok_or_else(|| {
                anyhow!(
                    "map {} missing from the object",
                    ha_common::maps::GLOBAL_COUNTERS
                )
            })?;
        let array = PerCpuArray::<_, CounterValue>::try_from(map)?;
        Counter::ALL
            .iter()
            .map(|&c| {
                let per_cpu = array
                    .get(&c.index(), 0)
                    .with_context(|| format!("reading counter {}", c.name()))?;
                let (packets, bytes) = per_cpu
                    .iter()
                    .fold((0u64, 0u64), |(p, b), v| (p + v.packets, b + v.bytes));
                Ok(CounterReading {
                    name: c.name(),
                    packets,
                    bytes,
                })
            })
            .collect()
    }
}

fn xdp_program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    let name = ha_common::programs::XDP_INGRESS;
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the embedded object"))?;
    Ok(program.try_into()?)
}

/// A native attach fails with EOPNOTSUPP (from link_create, or from netlink on kernels without
/// XDP links) when the driver has no native XDP.
fn driver_lacks_native_xdp(e: &ProgramError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(libc::EOPNOTSUPP)
        {
            return true;
        }
        if let Some(nl) = err.downcast_ref::<aya::sys::NetlinkError>()
            && nl.raw_os_error() == Some(libc::EOPNOTSUPP)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Keeps the verifier log in the error, where an operator (or a bug report) can see it.
fn verifier_error(e: ProgramError) -> anyhow::Error {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            anyhow!("{io_error}; verifier log:\n{verifier_log}")
        }
        e => anyhow!(e),
    }
}
