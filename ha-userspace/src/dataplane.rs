//! The eBPF data plane: loads the object embedded in this binary, attaches its programs to the
//! node's interfaces and keeps its maps — a projection of the daemon's binding cache.
//!
//! Volatile (no pin directory): attachments are BPF links owned by this process, detached when
//! [`Dataplane`] is dropped and by the kernel when the process dies.
//!
//! Persistent (a pin directory, `crate::instance`): every map and every program link is pinned
//! there, so the programs keep forwarding while the daemon is dead or being replaced. The next
//! daemon loads its own programs against the pinned maps (after checking their layout
//! version and shapes) and swaps them into the pinned links atomically (`bpf_link_update`):
//! no packet sees a gap. Only [`Dataplane::unpin`] detaches a persistent data plane.

use std::{
    net::Ipv6Addr,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader, VerifierLogLevel,
    maps::{
        Array, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuValues, RingBuf, lpm_trie::Key,
        xdp::DevMapHash,
    },
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode as AyaXdpMode,
        links::{FdLink, PinnedLink},
        tc::SchedClassifierLink,
        xdp::XdpLink,
    },
};
use ha_common::{
    abi::{
        BindingCounters, BindingEntry, BindingRecord, DAD_CONFLICT, DAD_PROBING, Iface,
        LAYOUT_VERSION, ROLE_HOME_AGENT, ROLE_MOBILE_NODE, XDP_MODE_AUTO, XDP_MODE_GENERIC,
        XDP_MODE_NATIVE,
    },
    globals, maps, programs,
    stats::{Counter, CounterValue},
};
use serde::Serialize;

use crate::config::XdpMode;

/// The eBPF object built from `ha-ebpf` by `build.rs`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha-ebpf"));

/// The throughput benchmark's generator, sink and ceiling programs (`ha-ebpf/src/bench.rs`).
/// The daemon never references it, so the linker leaves it out of `hagent`.
pub static BENCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ha-bench"));

/// Which side of the tunnel this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    HomeAgent,
    MobileNode,
}

/// Load-time settings of the data plane.
#[derive(Clone, Debug)]
pub struct DataplaneOptions {
    pub role: Role,
    /// Size of the binding cache map (and of the per-binding counters).
    pub max_bindings: u32,
    /// Size of the mobile network prefix trie.
    pub max_prefixes: u32,
    /// Hop limit of outer headers.
    pub outer_hop_limit: u8,
    /// Cache next hops per tunnel destination instead of a FIB lookup per packet.
    pub nexthop_cache: bool,
    /// ICMPv6 errors (Packet Too Big) per second per CPU.
    pub icmp_rate: u32,
    /// Duplicate Address Detection probes that can be in flight at once (size of `HA_DAD`).
    pub max_dad: u32,
    /// Benchmarks only: programs undo their packet changes (see `ha_common::globals`).
    pub bench_restore: bool,
    /// Pin maps and links here (a persistent data plane); None: volatile.
    pub pin_dir: Option<PathBuf>,
}

/// The maps of the object pinned under their names in a persistent data plane: all but
/// `HA_DAD`, whose size follows the ACL (a reload may change it) and whose probes die with
/// the daemon that started them anyway.
pub const PINNED_MAPS: &[&str] = &[
    maps::LAYOUT,
    maps::GLOBAL_COUNTERS,
    maps::BINDINGS,
    maps::PREFIXES,
    maps::LOCAL_ADDRS,
    maps::DEVMAP,
    maps::BINDING_COUNTERS,
    maps::NEXTHOPS,
    maps::STATE,
    maps::ICMP_RATELIMIT,
    maps::PUNT,
    maps::SIGNAL_COA,
    maps::IFACES,
    maps::ND_SEEN,
    maps::RECORDS,
    maps::SCRATCH,
];

/// Why a pinned data plane cannot be adopted.
#[derive(Debug)]
pub enum AdoptError {
    /// Pinned by a build with another map layout.
    Layout { found: u32 },
    /// A pinned map has another size or shape than this configuration and build ask for.
    Shape { map: &'static str, problem: String },
}

impl std::fmt::Display for AdoptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdoptError::Layout { found } => write!(
                f,
                "the pinned data plane has map layout {found}, this hagent uses layout \
                 {LAYOUT_VERSION}: it cannot be read. Run the build that pinned it, or start \
                 over with `hagent run --fresh` (bindings are dropped; mobile nodes re-register)"
            ),
            AdoptError::Shape { map, problem } => write!(
                f,
                "the pinned map {map} does not fit: {problem}. Restore the setting it was \
                 created with, or start over with `hagent run --fresh` (bindings are dropped)"
            ),
        }
    }
}

impl std::error::Error for AdoptError {}

impl Default for DataplaneOptions {
    fn default() -> Self {
        Self {
            role: Role::HomeAgent,
            // Sized for an ISP: a million bindings.
            max_bindings: 1 << 20,
            max_prefixes: 1 << 16,
            outer_hop_limit: 64,
            nexthop_cache: true,
            icmp_rate: 100,
            max_dad: 1024,
            bench_restore: false,
            pin_dir: None,
        }
    }
}

/// One interface the programs are attached to.
#[derive(Clone, Debug, Serialize)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    /// The XDP mode the kernel accepted (`native` or `generic`).
    pub mode: XdpMode,
    /// Whether the programs replaced those of an earlier daemon in its pinned links.
    pub adopted: bool,
}

/// A global counter summed over all CPUs.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CounterReading {
    pub name: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// The Duplicate Address Detection probes in flight (`HA_DAD`), on a map handle of its own so
/// the home agent's DAD engine owns it apart from the binding maps.
pub struct DadProbes {
    map: HashMap<MapData, [u8; 16], u32>,
}

impl DadProbes {
    /// Starts watching the home link for `addr`: from now on the XDP program marks the probe
    /// when it sees another node claim or probe the address.
    pub fn start(&mut self, addr: Ipv6Addr) -> anyhow::Result<()> {
        self.map
            .insert(addr.octets(), DAD_PROBING, 0)
            .with_context(|| format!("starting the DAD probe for {addr}"))
    }

    /// Ends the probe of `addr`: `Some(true)` when another node claimed it meanwhile,
    /// `Some(false)` when nobody did, `None` when no probe was running.
    pub fn finish(&mut self, addr: Ipv6Addr) -> anyhow::Result<Option<bool>> {
        let key = addr.octets();
        let state = match self.map.get(&key, 0) {
            Ok(v) => v,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        ignore_missing(self.map.remove(&key))?;
        Ok(Some(state == DAD_CONFLICT))
    }
}

/// The loaded programs and maps.
pub struct Dataplane {
    ebpf: Ebpf,
    options: DataplaneOptions,
    attachments: Vec<Attachment>,
    /// The maps were pinned by an earlier daemon (and hold its state).
    adopted: bool,
    /// The prefixes in the trie, exactly (for the programs' prefix count).
    prefix_set: std::collections::HashSet<(Ipv6Addr, u8)>,
}

impl Dataplane {
    /// Loads the embedded object and verifies the programs (nothing is attached yet).
    pub fn load(options: &DataplaneOptions) -> anyhow::Result<Self> {
        if options.max_bindings == 0 || options.max_prefixes == 0 || options.max_dad == 0 {
            bail!("max_bindings, max_prefixes and max_dad must be at least 1");
        }
        let role = match options.role {
            Role::HomeAgent => ROLE_HOME_AGENT,
            Role::MobileNode => ROLE_MOBILE_NODE,
        };
        let cache = u8::from(options.nexthop_cache);
        let restore = u8::from(options.bench_restore);
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(maps::BINDINGS, options.max_bindings)
            .map_max_entries(maps::BINDING_COUNTERS, options.max_bindings)
            .map_max_entries(maps::RECORDS, options.max_bindings)
            .map_max_entries(maps::NEXTHOPS, options.max_bindings.clamp(1024, 1 << 20))
            .map_max_entries(maps::PREFIXES, options.max_prefixes)
            .map_max_entries(maps::DAD, options.max_dad)
            .map_max_entries(maps::ND_SEEN, options.max_bindings.clamp(1024, 1 << 16))
            .override_global(globals::ROLE, &role, true)
            .override_global(globals::OUTER_HOP_LIMIT, &options.outer_hop_limit, true)
            .override_global(globals::NEXTHOP_CACHE, &cache, true)
            .override_global(globals::ICMP_RATE, &options.icmp_rate, true)
            .override_global(globals::BENCH_RESTORE, &restore, true);
        if std::env::var_os("HAGENT_VERIFIER_LOG").is_some() {
            loader.verifier_log_level(VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS);
        }
        let mut adopted = false;
        if let Some(dir) = &options.pin_dir {
            adopted = check_layout(dir)?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the pin directory {}", dir.display()))?;
            for name in PINNED_MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .context("loading the embedded eBPF object failed")?;
        if adopted {
            check_shapes(&ebpf, options)?;
        } else if options.pin_dir.is_some() {
            let mut m = Array::<_, u32>::try_from(
                ebpf.map_mut(maps::LAYOUT)
                    .ok_or_else(|| anyhow!("map {} missing from the object", maps::LAYOUT))?,
            )?;
            m.set(0, LAYOUT_VERSION, 0)?;
        }
        xdp_program(&mut ebpf)?
            .load()
            .map_err(verifier_error)
            .context("the kernel refused the XDP program")?;
        tc_program(&mut ebpf)?
            .load()
            .map_err(verifier_error)
            .context("the kernel refused the TC program")?;
        let mut me = Self {
            ebpf,
            options: options.clone(),
            attachments: Vec::new(),
            adopted,
            prefix_set: Default::default(),
        };
        if adopted {
            me.prefix_set = me.prefixes()?.into_iter().map(|(p, _)| p).collect();
            me.write_prefix_count()?;
        }
        Ok(me)
    }

    /// Whether the maps and links are pinned (they outlive this process).
    pub fn persistent(&self) -> bool {
        self.options.pin_dir.is_some()
    }

    /// Whether the maps (and the state in them) were pinned by an earlier daemon.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Removes the pins: the programs detach when this is dropped, the maps go with it.
    pub fn unpin(&mut self) -> anyhow::Result<usize> {
        let Some(dir) = self.options.pin_dir.take() else {
            return Ok(0);
        };
        remove_pins(&dir)
    }

    pub fn options(&self) -> &DataplaneOptions {
        &self.options
    }

    /// Attaches the XDP program (ingress) and the TC program (egress) to `interface` and lets
    /// the programs redirect to it. `auto` is generic on veth and native elsewhere; native on a
    /// driver without native XDP falls back to generic, with a warning in the log. With a pin
    /// directory, links an earlier daemon pinned for the interface get this daemon's programs
    /// atomically (if their mode is the one asked for), and new links are pinned.
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> anyhow::Result<&Attachment> {
        let ifindex = crate::system::ifindex(interface)?;
        let requested = mode;
        let mode = match mode {
            XdpMode::Auto if crate::system::driver(interface).as_deref() == Some("veth") => {
                tracing::info!(
                    interface,
                    "veth: generic XDP (native veth drops what XDP transmits unless the peer \
                     runs XDP; choose xdp_mode = \"native\" when it does)"
                );
                XdpMode::Generic
            }
            XdpMode::Auto => XdpMode::Native,
            m => m,
        };
        let pins = self.options.pin_dir.clone();
        let xdp_pin = pins.as_ref().map(|d| d.join(format!("xdp-{ifindex}")));
        let tc_pin = pins.as_ref().map(|d| d.join(format!("tc-{ifindex}")));
        let mut adopted = false;
        let pinned = self.iface_modes(ifindex);
        let accepted = match xdp_pin.as_deref().map(open_pinned_link).transpose()? {
            // Asked for what it was asked for before (a native request may have fallen back
            // to generic then, and would again): the new program goes into the same link.
            Some(Some(link)) if pinned.is_none_or(|(_, r)| r == requested) => {
                let link = XdpLink::try_from(link)
                    .with_context(|| format!("the pinned XDP link of {interface}"))?;
                xdp_program(&mut self.ebpf)?
                    .attach_to_link(link)
                    .with_context(|| format!("replacing the XDP program on {interface}"))?;
                adopted = true;
                pinned.map_or(mode, |(a, _)| a)
            }
            Some(Some(old)) => {
                // Another mode cannot be had in place: detach (the old link must be gone
                // before the kernel takes another mode), attach anew.
                tracing::warn!(
                    interface,
                    from = pinned.map_or("?", |(a, _)| a.as_str()),
                    to = mode.as_str(),
                    "XDP mode changed: re-attaching (packets arriving meanwhile on this interface are lost)"
                );
                let path = xdp_pin.as_deref().expect("pinned");
                std::fs::remove_file(path)
                    .with_context(|| format!("unpinning {}", path.display()))?;
                drop(old);
                self.attach_xdp(interface, ifindex, mode, xdp_pin.as_deref())?
            }
            _ => self.attach_xdp(interface, ifindex, mode, xdp_pin.as_deref())?,
        };
        // Before 6.6 (no tcx) the TC program hangs off a clsact qdisc, which must exist.
        let tcx = kernel_at_least(6, 6);
        if !tcx && let Err(e) = aya::programs::tc::qdisc_add_clsact(interface) {
            let exists = match &e {
                aya::programs::tc::TcError::AlreadyAttached => true,
                aya::programs::tc::TcError::NetlinkError(n) => {
                    n.raw_os_error() == Some(libc::EEXIST)
                }
                _ => false,
            };
            if !exists {
                return Err(anyhow!(e))
                    .with_context(|| format!("adding the clsact qdisc to {interface}"));
            }
        }
        if !tcx {
            // A netlink filter outlives the process that made it: one a dead daemon left is
            // removed (by the program's name) before ours goes in.
            match aya::programs::tc::qdisc_detach_program(
                interface,
                TcAttachType::Egress,
                programs::TC_EGRESS,
            ) {
                Ok(()) => tracing::info!(interface, "removed the TC filter an earlier hagent left"),
                Err(e) => tracing::debug!(interface, error = %e, "no earlier TC filter"),
            }
        }
        match tc_pin.as_deref().map(open_pinned_link).transpose()? {
            Some(Some(link)) => {
                let link = SchedClassifierLink::try_from(link)
                    .with_context(|| format!("the pinned TC link of {interface}"))?;
                tc_program(&mut self.ebpf)?
                    .attach_to_link(link)
                    .with_context(|| format!("replacing the TC program on {interface}"))?;
            }
            _ => {
                let program = tc_program(&mut self.ebpf)?;
                let id = program
                    .attach(interface, TcAttachType::Egress)
                    .with_context(|| {
                        format!("attaching the TC egress program to {interface} failed")
                    })?;
                match &tc_pin {
                    Some(path) if tcx => {
                        let link = program.take_link(id)?;
                        let fd = FdLink::try_from(link)
                            .map_err(|e| anyhow!("the tcx attachment of {interface}: {e}"))?;
                        fd.pin(path)
                            .with_context(|| format!("pinning {}", path.display()))?;
                    }
                    Some(_) => tracing::warn!(
                        interface,
                        "the TC program is attached without a BPF link (kernel before 6.6, no \
                         tcx): it does not outlive the daemon; what the node itself sends to a \
                         HoA is not tunnelled while no daemon runs"
                    ),
                    None => {}
                }
            }
        }
        let mut devmap = DevMapHash::try_from(self.map_mut(maps::DEVMAP)?)?;
        devmap
            .insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("adding {interface} to the devmap"))?;
        self.write_iface(
            ifindex,
            crate::system::mac_address(interface)?,
            accepted,
            requested,
        )?;
        tracing::info!(
            interface,
            ifindex,
            mode = accepted.as_str(),
            "data plane attached"
        );
        self.attachments.push(Attachment {
            interface: interface.to_string(),
            ifindex,
            mode: accepted,
            adopted,
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// A new XDP attachment in `mode` (native falls back to generic), pinned at `pin`.
    fn attach_xdp(
        &mut self,
        interface: &str,
        ifindex: u32,
        mode: XdpMode,
        pin: Option<&Path>,
    ) -> anyhow::Result<XdpMode> {
        let program = xdp_program(&mut self.ebpf)?;
        let (id, accepted) = match mode {
            XdpMode::Generic | XdpMode::Auto => (
                program
                    .attach_to_if_index(ifindex, AyaXdpMode::Skb)
                    .with_context(|| format!("attaching XDP (generic) to {interface} failed"))?,
                XdpMode::Generic,
            ),
            XdpMode::Native => match program.attach_to_if_index(ifindex, AyaXdpMode::Driver) {
                Ok(id) => (id, XdpMode::Native),
                Err(e) if driver_lacks_native_xdp(&e) => {
                    tracing::warn!(
                        interface,
                        error = %e,
                        "the driver has no native XDP; falling back to generic (skb) mode, which is slower"
                    );
                    let id = program
                        .attach_to_if_index(ifindex, AyaXdpMode::Skb)
                        .with_context(|| {
                            format!(
                                "attaching XDP (generic, after native failed) to {interface} failed"
                            )
                        })?;
                    (id, XdpMode::Generic)
                }
                Err(e) => {
                    return Err(anyhow!(e))
                        .with_context(|| format!("attaching XDP (native) to {interface} failed"));
                }
            },
        };
        if let Some(path) = pin {
            if !kernel_at_least(5, 9) {
                tracing::warn!(
                    interface,
                    "XDP is attached without a BPF link (kernel before 5.9): it does not outlive the daemon"
                );
                return Ok(accepted);
            }
            let link = program.take_link(id)?;
            let fd = FdLink::try_from(link).map_err(|e| {
                anyhow!("the XDP attachment of {interface} is not a BPF link, so it cannot be pinned: {e}")
            })?;
            fd.pin(path)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        Ok(accepted)
    }

    /// Tells the programs the MAC of interface `ifindex` (their Neighbor Advertisements on it
    /// carry it), and the next daemon the XDP mode it is attached in (a link does not say).
    pub fn set_iface(&mut self, ifindex: u32, mac: [u8; 6], mode: XdpMode) -> anyhow::Result<()> {
        self.write_iface(ifindex, mac, mode, mode)
    }

    fn write_iface(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        accepted: XdpMode,
        requested: XdpMode,
    ) -> anyhow::Result<()> {
        let mut m = HashMap::<_, u32, Iface>::try_from(self.map_mut(maps::IFACES)?)?;
        let iface = Iface {
            mac,
            xdp_mode: mode_code(accepted),
            xdp_requested: mode_code(requested),
        };
        m.insert(ifindex, iface, 0)
            .with_context(|| format!("writing interface {ifindex} to the data plane"))
    }

    /// The XDP modes (accepted, requested) an earlier daemon recorded for `ifindex`.
    fn iface_modes(&self, ifindex: u32) -> Option<(XdpMode, XdpMode)> {
        let m = HashMap::<_, u32, Iface>::try_from(self.map(maps::IFACES).ok()?).ok()?;
        let i = m.get(&ifindex, 0).ok()?;
        Some((mode_of(i.xdp_mode)?, mode_of(i.xdp_requested)?))
    }

    /// A handle of its own on one of the maps (for a task that reads or writes it apart from
    /// the event loop that owns this data plane).
    pub fn map_handle(&self, name: &str) -> anyhow::Result<MapData> {
        use aya::maps::Map;
        let data = match self.map(name)? {
            Map::HashMap(m) | Map::LruHashMap(m) | Map::Array(m) | Map::PerCpuArray(m) => m,
            _ => bail!("map {name} cannot be shared"),
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .with_context(|| format!("duplicating the descriptor of map {name}"))?;
        MapData::from_fd(fd).with_context(|| format!("opening map {name}"))
    }

    /// The DAD probe map, on a handle of its own.
    pub fn dad_probes(&self) -> anyhow::Result<DadProbes> {
        Ok(DadProbes {
            map: HashMap::try_from(aya::maps::Map::HashMap(self.map_handle(maps::DAD)?))?,
        })
    }

    /// Whether the TC program answered one of the kernel's own Neighbor Solicitations for
    /// `hoa` (the kernel then holds a neighbour entry for it pointing at this node); forgets it.
    pub fn take_nd_seen(&mut self, hoa: Ipv6Addr) -> anyhow::Result<bool> {
        let mut m = HashMap::<_, [u8; 16], u32>::try_from(self.map_mut(maps::ND_SEEN)?)?;
        match m.remove(&hoa.octets()) {
            Ok(()) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Where the programs are attached.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Declares `addr` one of this node's tunnel endpoints (an HA address, or a CoA).
    pub fn add_local_address(&mut self, addr: Ipv6Addr) -> anyhow::Result<()> {
        let mut m = HashMap::<_, [u8; 16], u32>::try_from(self.map_mut(maps::LOCAL_ADDRS)?)?;
        m.insert(addr.octets(), 1, 0)
            .with_context(|| format!("adding local tunnel endpoint {addr}"))
    }

    /// Removes a tunnel endpoint address.
    pub fn remove_local_address(&mut self, addr: Ipv6Addr) -> anyhow::Result<()> {
        let mut m = HashMap::<_, [u8; 16], u32>::try_from(self.map_mut(maps::LOCAL_ADDRS)?)?;
        ignore_missing(m.remove(&addr.octets()))
    }

    /// Creates or replaces (in place: packets never see a gap) the binding for `hoa`.
    pub fn set_binding(&mut self, hoa: Ipv6Addr, entry: &BindingEntry) -> anyhow::Result<()> {
        let mut m = HashMap::<_, [u8; 16], BindingEntry>::try_from(self.map_mut(maps::BINDINGS)?)?;
        m.insert(hoa.octets(), entry, 0)
            .with_context(|| format!("writing the binding for {hoa} to the data plane"))
    }

    pub fn remove_binding(&mut self, hoa: Ipv6Addr) -> anyhow::Result<()> {
        let mut m = HashMap::<_, [u8; 16], BindingEntry>::try_from(self.map_mut(maps::BINDINGS)?)?;
        ignore_missing(m.remove(&hoa.octets()))
    }

    /// Writes the record of a binding (what a restarted daemon needs of it).
    pub fn put_record(&mut self, record: &BindingRecord) -> anyhow::Result<()> {
        let mut m = HashMap::<_, [u8; 16], BindingRecord>::try_from(self.map_mut(maps::RECORDS)?)?;
        m.insert(record.hoa, record, 0).with_context(|| {
            format!(
                "writing the binding record of {}",
                Ipv6Addr::from(record.hoa)
            )
        })
    }

    pub fn remove_record(&mut self, hoa: Ipv6Addr) -> anyhow::Result<()> {
        let mut m = HashMap::<_, [u8; 16], BindingRecord>::try_from(self.map_mut(maps::RECORDS)?)?;
        ignore_missing(m.remove(&hoa.octets()))
    }

    /// Every binding record (an earlier daemon's, when adopted).
    pub fn records(&self) -> anyhow::Result<Vec<BindingRecord>> {
        let m = HashMap::<_, [u8; 16], BindingRecord>::try_from(self.map(maps::RECORDS)?)?;
        let mut out = Vec::new();
        for r in m.iter() {
            out.push(r.context("reading the binding records")?.1);
        }
        Ok(out)
    }

    /// The home addresses in the binding map.
    pub fn binding_keys(&self) -> anyhow::Result<Vec<Ipv6Addr>> {
        let m = HashMap::<_, [u8; 16], BindingEntry>::try_from(self.map(maps::BINDINGS)?)?;
        let mut out = Vec::new();
        for k in m.keys() {
            out.push(Ipv6Addr::from(k.context("reading the binding map")?));
        }
        Ok(out)
    }

    /// The mobile network prefixes in the trie, with their entries.
    pub fn prefixes(&self) -> anyhow::Result<Vec<((Ipv6Addr, u8), BindingEntry)>> {
        let m = LpmTrie::<_, [u8; 16], BindingEntry>::try_from(self.map(maps::PREFIXES)?)?;
        let mut out = Vec::new();
        for kv in m.iter() {
            let (k, v) = kv.context("reading the prefix trie")?;
            out.push(((Ipv6Addr::from(k.data()), k.prefix_len() as u8), v));
        }
        Ok(out)
    }

    /// The tunnel endpoint addresses the programs know.
    pub fn local_addresses(&self) -> anyhow::Result<Vec<Ipv6Addr>> {
        let m = HashMap::<_, [u8; 16], u32>::try_from(self.map(maps::LOCAL_ADDRS)?)?;
        let mut out = Vec::new();
        for k in m.keys() {
            out.push(Ipv6Addr::from(k?));
        }
        Ok(out)
    }

    /// Forgets interfaces an earlier daemon served and this one does not.
    pub fn forget_interfaces_except(&mut self, keep: &[u32]) -> anyhow::Result<()> {
        let stale: Vec<u32> = {
            let m = HashMap::<_, u32, Iface>::try_from(self.map(maps::IFACES)?)?;
            m.keys()
                .filter_map(Result::ok)
                .filter(|i| !keep.contains(i))
                .collect()
        };
        for ifindex in stale {
            let mut m = HashMap::<_, u32, Iface>::try_from(self.map_mut(maps::IFACES)?)?;
            ignore_missing(m.remove(&ifindex))?;
            let mut d = DevMapHash::try_from(self.map_mut(maps::DEVMAP)?)?;
            ignore_missing(d.remove(ifindex))?;
            if let Some(dir) = &self.options.pin_dir {
                for kind in ["xdp", "tc"] {
                    let _ = std::fs::remove_file(dir.join(format!("{kind}-{ifindex}")));
                }
            }
        }
        Ok(())
    }

    /// Ends the DAD probes an earlier daemon left (nobody waits for them any more).
    pub fn clear_dad(&mut self) -> anyhow::Result<usize> {
        let keys: Vec<[u8; 16]> = {
            let m = HashMap::<_, [u8; 16], u32>::try_from(self.map(maps::DAD)?)?;
            m.keys().filter_map(Result::ok).collect()
        };
        let mut m = HashMap::<_, [u8; 16], u32>::try_from(self.map_mut(maps::DAD)?)?;
        for k in &keys {
            ignore_missing(m.remove(k))?;
        }
        Ok(keys.len())
    }

    /// Home agent: where the TC program sends an ESP-protected BA for `hoa` when it has no
    /// binding (see `Daemon::send_ba`).
    pub fn set_signal_coa(&mut self, hoa: Ipv6Addr, coa: Ipv6Addr) -> anyhow::Result<()> {
        let mut m = HashMap::<_, [u8; 16], [u8; 16]>::try_from(self.map_mut(maps::SIGNAL_COA)?)?;
        m.insert(hoa.octets(), coa.octets(), 0)
            .with_context(|| format!("writing the signalling CoA for {hoa}"))
    }

    pub fn remove_signal_coa(&mut self, hoa: Ipv6Addr) -> anyhow::Result<()> {
        let mut m = HashMap::<_, [u8; 16], [u8; 16]>::try_from(self.map_mut(maps::SIGNAL_COA)?)?;
        ignore_missing(m.remove(&hoa.octets()))
    }

    /// Creates or replaces the binding for a mobile network prefix.
    pub fn set_prefix(
        &mut self,
        prefix: Ipv6Addr,
        len: u8,
        entry: &BindingEntry,
    ) -> anyhow::Result<()> {
        let key = Key::new(u32::from(len), prefix.octets());
        let mut m = LpmTrie::<_, [u8; 16], BindingEntry>::try_from(self.map_mut(maps::PREFIXES)?)?;
        m.insert(&key, entry, 0)
            .with_context(|| format!("writing the binding for {prefix}/{len} to the data plane"))?;
        if self.prefix_set.insert((prefix, len)) {
            self.write_prefix_count()?;
        }
        Ok(())
    }

    pub fn remove_prefix(&mut self, prefix: Ipv6Addr, len: u8) -> anyhow::Result<()> {
        let mut m = LpmTrie::<_, [u8; 16], BindingEntry>::try_from(self.map_mut(maps::PREFIXES)?)?;
        match m.remove(&Key::new(u32::from(len), prefix.octets())) {
            Ok(()) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(e.into()),
        }
        if self.prefix_set.remove(&(prefix, len)) {
            self.write_prefix_count()?;
        }
        Ok(())
    }

    /// Tells the programs how many prefixes the trie holds (they skip it while there are
    /// none). Counted from the set of exact keys: the trie's own lookup is a longest-prefix
    /// match and cannot tell a new prefix from one nested in another.
    fn write_prefix_count(&mut self) -> anyhow::Result<()> {
        let n = self.prefix_set.len() as u64;
        let mut m = Array::<_, u64>::try_from(self.map_mut(maps::STATE)?)?;
        m.set(maps::STATE_PREFIX_COUNT, n, 0)?;
        Ok(())
    }

    /// A binding's counters summed over CPUs.
    pub fn binding_counters(&self, binding_id: u32) -> anyhow::Result<BindingCounters> {
        let m = PerCpuArray::<_, BindingCounters>::try_from(self.map(maps::BINDING_COUNTERS)?)?;
        let per_cpu = m.get(&binding_id, 0)?;
        Ok(per_cpu
            .iter()
            .fold(BindingCounters::default(), |a, c| BindingCounters {
                tunnelled_packets: a.tunnelled_packets + c.tunnelled_packets,
                tunnelled_bytes: a.tunnelled_bytes + c.tunnelled_bytes,
                reverse_packets: a.reverse_packets + c.reverse_packets,
                reverse_bytes: a.reverse_bytes + c.reverse_bytes,
            }))
    }

    /// Zeroes a binding's counters (when its id is given to a new binding).
    pub fn reset_binding_counters(&mut self, binding_id: u32) -> anyhow::Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        let mut m =
            PerCpuArray::<_, BindingCounters>::try_from(self.map_mut(maps::BINDING_COUNTERS)?)?;
        let zero = PerCpuValues::try_from(vec![BindingCounters::default(); cpus])?;
        m.set(binding_id, zero, 0)?;
        Ok(())
    }

    /// Invalidates every cached next hop: the next packet to each destination asks the FIB.
    pub fn bump_nexthop_epoch(&mut self) -> anyhow::Result<u64> {
        let mut m = Array::<_, u64>::try_from(self.map_mut(maps::STATE)?)?;
        let next = m.get(&maps::STATE_NEXTHOP_EPOCH, 0)?.wrapping_add(1);
        m.set(maps::STATE_NEXTHOP_EPOCH, next, 0)?;
        Ok(next)
    }

    /// Every global counter, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Vec<CounterReading>> {
        let array = PerCpuArray::<_, CounterValue>::try_from(self.map(maps::GLOBAL_COUNTERS)?)?;
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

    /// Takes the punt ring buffer (the daemon's slow path reads it).
    pub fn take_punt_ring(&mut self) -> anyhow::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(maps::PUNT)
            .ok_or_else(|| anyhow!("map {} missing from the object", maps::PUNT))?;
        Ok(RingBuf::try_from(map)?)
    }

    /// The XDP program, e.g. for BPF_PROG_TEST_RUN.
    pub fn xdp(&mut self) -> anyhow::Result<&mut Xdp> {
        xdp_program(&mut self.ebpf)
    }

    /// One of the reference XDP programs (`ha_common::programs::XDP_PASS`, `XDP_ROUTER`),
    /// loaded on first use: benchmarks compare against them, and labs attach the pass program
    /// to veth ends that receive XDP_TX frames.
    pub fn reference(&mut self, name: &str) -> anyhow::Result<&mut Xdp> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing from the embedded object"))?
            .try_into()?;
        if program.fd().is_err() {
            program
                .load()
                .map_err(verifier_error)
                .with_context(|| format!("the kernel refused {name}"))?;
        }
        Ok(program)
    }

    /// Attaches a reference program to the interface `ifindex` (resolved in the calling
    /// thread's network namespace) in native mode; detached when the data plane is dropped.
    pub fn attach_reference(&mut self, name: &str, ifindex: u32) -> anyhow::Result<()> {
        self.reference(name)?
            .attach_to_if_index(ifindex, AyaXdpMode::Driver)
            .with_context(|| format!("attaching {name} to ifindex {ifindex}"))?;
        Ok(())
    }

    /// Like [`attach_reference`](Self::attach_reference), with the link pinned at `pin`: it
    /// outlives this process until the pin is removed (the interactive lab's router).
    pub fn attach_reference_pinned(
        &mut self,
        name: &str,
        ifindex: u32,
        pin: &std::path::Path,
    ) -> anyhow::Result<()> {
        let program = self.reference(name)?;
        let id = program
            .attach_to_if_index(ifindex, AyaXdpMode::Driver)
            .with_context(|| format!("attaching {name} to ifindex {ifindex}"))?;
        let link = program.take_link(id)?;
        let fd_link = aya::programs::links::FdLink::try_from(link)
            .map_err(|e| anyhow!("{name} on ifindex {ifindex} is not a bpf_link: {e}"))?;
        fd_link
            .pin(pin)
            .with_context(|| format!("pinning the XDP link at {}", pin.display()))?;
        Ok(())
    }

    /// Lets the programs redirect to `ifindex` without attaching to it (benchmarks).
    pub fn allow_redirect(&mut self, ifindex: u32) -> anyhow::Result<()> {
        let mut devmap = DevMapHash::try_from(self.map_mut(maps::DEVMAP)?)?;
        devmap.insert(ifindex, ifindex, None, 0)?;
        Ok(())
    }

    /// The TC program, e.g. for BPF_PROG_TEST_RUN.
    pub fn tc(&mut self) -> anyhow::Result<&mut SchedClassifier> {
        tc_program(&mut self.ebpf)
    }

    fn map(&self, name: &str) -> anyhow::Result<&aya::maps::Map> {
        self.ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing from the object"))
    }

    fn map_mut(&mut self, name: &str) -> anyhow::Result<&mut aya::maps::Map> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| anyhow!("map {name} missing from the object"))
    }
}

/// Whether the running kernel is at least `major.minor` (false when it cannot tell).
fn kernel_at_least(major: u8, minor: u8) -> bool {
    aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(major, minor, 0))
}

fn mode_code(m: XdpMode) -> u8 {
    match m {
        XdpMode::Auto => XDP_MODE_AUTO,
        XdpMode::Native => XDP_MODE_NATIVE,
        XdpMode::Generic => XDP_MODE_GENERIC,
    }
}

fn mode_of(code: u8) -> Option<XdpMode> {
    match code {
        XDP_MODE_AUTO => Some(XdpMode::Auto),
        XDP_MODE_NATIVE => Some(XdpMode::Native),
        XDP_MODE_GENERIC => Some(XdpMode::Generic),
        _ => None,
    }
}

/// Whether `dir` holds a pinned data plane this build can adopt (Ok(true)), none (Ok(false)),
/// or one of another layout (an [`AdoptError`]).
fn check_layout(dir: &Path) -> anyhow::Result<bool> {
    let path = dir.join(maps::LAYOUT);
    if !path.exists() {
        if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
            // Pins without a layout map: an older build, or a half-written directory.
            return Err(AdoptError::Layout { found: 0 }.into());
        }
        return Ok(false);
    }
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let m = Array::<_, u32>::try_from(aya::maps::Map::Array(data))?;
    let found = m.get(&0, 0)?;
    if found != LAYOUT_VERSION {
        return Err(AdoptError::Layout { found }.into());
    }
    Ok(true)
}

/// Checks that the pinned maps have the sizes this configuration asks for and the key and
/// value sizes of this build (the layout version says they should; this makes sure).
fn check_shapes(ebpf: &Ebpf, o: &DataplaneOptions) -> anyhow::Result<()> {
    use std::mem::size_of;
    let expect: &[(&'static str, u32, u32, Option<u32>)] = &[
        (
            maps::BINDINGS,
            16,
            size_of::<BindingEntry>() as u32,
            Some(o.max_bindings),
        ),
        (
            maps::RECORDS,
            16,
            size_of::<BindingRecord>() as u32,
            Some(o.max_bindings),
        ),
        (
            maps::BINDING_COUNTERS,
            4,
            size_of::<BindingCounters>() as u32,
            Some(o.max_bindings),
        ),
        (
            maps::PREFIXES,
            20,
            size_of::<BindingEntry>() as u32,
            Some(o.max_prefixes),
        ),
        (maps::DAD, 16, 4, Some(o.max_dad)),
    ];
    for &(map, key, value, entries) in expect {
        let data = match ebpf.map(map) {
            Some(
                aya::maps::Map::HashMap(d)
                | aya::maps::Map::PerCpuArray(d)
                | aya::maps::Map::LpmTrie(d),
            ) => d,
            _ => {
                return Err(AdoptError::Shape {
                    map,
                    problem: "missing or of another type".into(),
                }
                .into());
            }
        };
        let info = data.info()?;
        if info.key_size() != key || info.value_size() != value {
            return Err(AdoptError::Shape {
                map,
                problem: format!(
                    "key/value sizes {}/{}, this build uses {key}/{value}",
                    info.key_size(),
                    info.value_size()
                ),
            }
            .into());
        }
        if let Some(n) = entries
            && info.max_entries() != n
        {
            return Err(AdoptError::Shape {
                map,
                problem: format!(
                    "it holds {} entries, the configuration asks for {n}",
                    info.max_entries()
                ),
            }
            .into());
        }
    }
    Ok(())
}

/// The link pinned at `path` (the pin stays); None when nothing is pinned there.
fn open_pinned_link(path: &Path) -> anyhow::Result<Option<FdLink>> {
    match PinnedLink::from_pin(path) {
        Ok(p) => Ok(Some(FdLink::from(p))),
        Err(aya::programs::links::LinkError::SyscallError(e))
            if e.io_error.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => {
            Err(anyhow!(e)).with_context(|| format!("opening the pinned link {}", path.display()))
        }
    }
}

/// Removes every pin in `dir`, then `dir`.
pub fn remove_pins(dir: &Path) -> anyhow::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut n = 0;
    for e in entries {
        let path = e?.path();
        std::fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
        n += 1;
    }
    std::fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(n)
}

fn ignore_missing(r: Result<(), aya::maps::MapError>) -> anyhow::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A lookup or delete of a key that is not in the map (aya reports a delete's ENOENT as a
/// failed syscall).
fn is_missing(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn xdp_program(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    let name = programs::XDP_INGRESS;
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the embedded object"))?;
    Ok(program.try_into()?)
}

fn tc_program(ebpf: &mut Ebpf) -> anyhow::Result<&mut SchedClassifier> {
    let name = programs::TC_EGRESS;
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
        } => anyhow!(
            "{io_error}; verifier log (set HAGENT_VERIFIER_LOG=1 for the full log):\n{verifier_log}"
        ),
        e => anyhow!(e),
    }
}
