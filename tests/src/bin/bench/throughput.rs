//! `cargo xtask bench throughput`: packets per second through the home agent, generator → DUT →
//! sink over veth, against what an operator would run instead, side by side in one run.
//!
//! Three namespaces: the generator's (`g0`), the device under test (`d0` towards the
//! generator, `d1` towards the sink) and the sink's (`s1`). The generator is
//! BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (`bench_gen`, which rewrites the headers
//! of every frame: the kernel recycles frame pages with the receivers' changes), pinned to
//! CPU 0; the generator's XDP_TX into `g0` runs the DUT's receive and the sink in series on
//! that core (the least noisy placement, so the ratios are the figure). The sink
//! (`bench_sink`) counts frames and checks that each is the frame the DUT must produce:
//! length, next headers, outer and inner addresses, hop limits. Throughput is the sink's
//! count of correct frames over the generator's run time.
//!
//! Devices under test, one after another on the same namespaces:
//! - generator alone: the sink on `d0` (the generator must outrun every DUT);
//! - (0) the ceiling: `bench_redirect` on `d0`, every frame redirected to `d1` unparsed;
//! - hagent (the daemon, native XDP, a static binding), with and without the next-hop cache;
//! - (a) kernel IPv6 forwarding, no tunnel;
//! - (b) the kernel's own tunnel: a `seg6` encap route (`ip sr tunsrc`), `seg6local End.DX6`
//!   to decapsulate (this kernel has no ip6tnl);
//! - (c) a userspace TUN tunnel: one thread on the other core reading the TUN device and a
//!   raw IPPROTO_IPV6 socket, what a naive implementation does.
//!
//! The kernel baselines run `bench_pass` on `d0`: a veth delivers frames another program
//! transmitted only to a peer that runs XDP (the kernel path then builds an skb as usual).

use std::{
    net::Ipv6Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use aya::{
    Ebpf,
    maps::{Array, DevMap, MapData, PerCpuArray},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use ha_common::bench::{
    BenchExpect, BenchTemplate, BenchWindow, SINK_EXPECTED, SINK_FRAMES, SINK_OTHER,
    TEMPLATE_CHUNKS,
};
use serde_json::json;
use tests::{
    Netns,
    packet::{Mac, addr, eth, ipv6, pattern, udp},
    step,
    topology::{Hagent, addr as add_addr, veth},
};

use crate::quick;

const HA: &str = "2001:db8:a::1";
const GEN: &str = "2001:db8:a::2";
const HOA: &str = "2001:db8:a::100";
const D1: &str = "2001:db8:b::1";
const SINK: &str = "2001:db8:b::2";
const COA: &str = "2001:db8:c::7";
const CN: &str = "2001:db8:d::9";
/// The seg6local End.DX6 segment the kernel-tunnel baseline decapsulates at.
const SID: &str = "2001:db8:e::5";
const TUN_IF: &str = "hbtun0";
/// The handover measurement's mobile node (registered by BUs, so it can move) and its two
/// care-of addresses.
const HOA2: &str = "2001:db8:a::200";
const COA_A: &str = "2001:db8:c::8";
const COA_B: &str = "2001:db8:c::9";

/// Inner IPv6 packet sizes (bytes, IPv6 header included).
fn sizes() -> Vec<usize> {
    if quick() {
        vec![64, 1400]
    } else {
        vec![64, 256, 512, 1024, 1400]
    }
}

fn rounds() -> usize {
    if quick() { 1 } else { 5 }
}

/// Seconds each measured run should take (the packet count comes from a calibration run).
fn run_seconds() -> f64 {
    if quick() { 0.0 } else { 0.3 }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dir {
    Down,
    Up,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Down => "downlink (encap)",
            Dir::Up => "uplink (decap)",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Dir::Down => "down",
            Dir::Up => "up",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dut {
    Gen,
    Ceiling,
    Hagent,
    HagentNoCache,
    Forward,
    Seg6,
    Tun,
}

impl Dut {
    pub const ALL: [Dut; 7] = [
        Dut::Gen,
        Dut::Ceiling,
        Dut::Hagent,
        Dut::HagentNoCache,
        Dut::Forward,
        Dut::Seg6,
        Dut::Tun,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Dut::Gen => "generator alone (sink on d0)",
            Dut::Ceiling => "(0) redirect-only XDP (ceiling)",
            Dut::Hagent => "hagent",
            Dut::HagentNoCache => "hagent, nexthop_cache = false",
            Dut::Forward => "(a) kernel forwarding, no tunnel",
            Dut::Seg6 => "(b) kernel seg6 tunnel",
            Dut::Tun => "(c) userspace TUN tunnel",
        }
    }
    pub fn key(self) -> &'static str {
        match self {
            Dut::Gen => "gen",
            Dut::Ceiling => "ceiling",
            Dut::Hagent => "hagent",
            Dut::HagentNoCache => "hagent_nocache",
            Dut::Forward => "forward",
            Dut::Seg6 => "seg6",
            Dut::Tun => "tun",
        }
    }
}

struct Lab {
    generator: Netns,
    dut: Netns,
    sink: Netns,
    g0: u32,
    d0: u32,
    d1: u32,
    s1: u32,
    d0_mac: Mac,
    g0_mac: Mac,
}

fn mac_of(ns: &Netns, ifname: &str) -> anyhow::Result<Mac> {
    let s = tests::scapy::mac(ns, ifname)?;
    let mut m = [0u8; 6];
    for (i, part) in s.split(':').enumerate() {
        ensure!(i < 6, "odd MAC {s}");
        m[i] = u8::from_str_radix(part, 16)?;
    }
    Ok(m)
}

fn lab() -> anyhow::Result<Lab> {
    let generator = Netns::new("tp-gen")?;
    let dut = Netns::new("tp-dut")?;
    let sink = Netns::new("tp-sink")?;
    veth(&generator, "g0", &dut, "d0")?;
    veth(&dut, "d1", &sink, "s1")?;
    dut.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    add_addr(&generator, "g0", &format!("{GEN}/64"))?;
    add_addr(&dut, "d0", &format!("{HA}/64"))?;
    add_addr(&dut, "d1", &format!("{D1}/64"))?;
    add_addr(&sink, "s1", &format!("{SINK}/64"))?;
    let s1_mac = tests::scapy::mac(&sink, "s1")?;
    dut.ip(&[
        "-6",
        "neigh",
        "replace",
        SINK,
        "lladdr",
        &s1_mac,
        "nud",
        "permanent",
        "dev",
        "d1",
    ])?;
    for prefix in ["2001:db8:c::/64", "2001:db8:d::/64"] {
        dut.ip(&["-6", "route", "add", prefix, "via", SINK, "dev", "d1"])?;
    }
    // The handover's BUs leave from the sink (the care-of side) towards the HA; its XDP sink
    // drops everything it receives, neighbour advertisements too.
    let d1_mac = tests::scapy::mac(&dut, "d1")?;
    sink.ip(&[
        "-6",
        "neigh",
        "replace",
        D1,
        "lladdr",
        &d1_mac,
        "nud",
        "permanent",
        "dev",
        "s1",
    ])?;
    sink.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:a::/64",
        "via",
        D1,
        "dev",
        "s1",
    ])?;
    // Traffic-generating ends carry no checksum offload state across XDP (see the reference).
    for (ns, i) in [
        (&generator, "g0"),
        (&dut, "d0"),
        (&dut, "d1"),
        (&sink, "s1"),
    ] {
        let _ = ns.exec("ethtool", &["-K", i, "tx", "off"]);
    }
    Ok(Lab {
        g0: generator.ifindex("g0")?,
        d0: dut.ifindex("d0")?,
        d1: dut.ifindex("d1")?,
        s1: sink.ifindex("s1")?,
        d0_mac: mac_of(&dut, "d0")?,
        g0_mac: mac_of(&generator, "g0")?,
        generator,
        dut,
        sink,
    })
}

/// A UDP packet of `size` bytes (IPv6 header included) from `src` to `dst`.
fn inner(size: usize, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    ipv6(
        0,
        0,
        17,
        64,
        src,
        dst,
        &udp(src, dst, 4000, 5000, &pattern(size - 48)),
    )
}

/// The frame the generator sends to `dut` in `dir` with an inner packet of `size` bytes.
fn frame(lab: &Lab, dut: Dut, dir: Dir, size: usize) -> Vec<u8> {
    let mut f = eth(lab.d0_mac, lab.g0_mac);
    match dir {
        Dir::Down => f.extend(inner(size, addr(CN), addr(HOA))),
        Dir::Up => {
            let outer_dst = match dut {
                Dut::Hagent | Dut::HagentNoCache | Dut::Tun => HA,
                Dut::Seg6 => SID,
                // Plain forwarding of the same (tunnelled) packet.
                Dut::Gen | Dut::Ceiling | Dut::Forward => CN,
            };
            f.extend(ipv6(
                0,
                0,
                41,
                64,
                addr(COA),
                addr(outer_dst),
                &inner(size, addr(HOA), addr(CN)),
            ));
        }
    }
    f
}

/// `value` at `offset`, compared where `mask` is 0xff.
fn window(offset: usize, value: [u8; 16], mask: [u8; 16]) -> BenchWindow {
    let word = |b: &[u8; 16], i: usize| u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    BenchWindow {
        offset: offset as u32,
        _pad: 0,
        value: [word(&value, 0), word(&value, 1)],
        mask: [word(&mask, 0), word(&mask, 1)],
    }
}

/// The 16 bytes from byte 4 of an IPv6 header at `offset`: payload length, next header and
/// (when given) hop limit; the source's first bytes are not compared here (see
/// [`address_window`]).
fn header_window(
    offset: usize,
    payload_len: usize,
    next: u8,
    hop_limit: Option<u8>,
) -> BenchWindow {
    let mut v = [0u8; 16];
    let mut m = [0u8; 16];
    v[0..2].copy_from_slice(&(payload_len as u16).to_be_bytes());
    v[2] = next;
    m[0..3].fill(0xff);
    if let Some(h) = hop_limit {
        v[3] = h;
        m[3] = 0xff;
    }
    window(offset + 4, v, m)
}

/// A whole address at `offset`.
fn address_window(offset: usize, a: &str) -> BenchWindow {
    window(offset, addr(a).octets(), [0xff; 16])
}

/// Outer header fields the sink compares: payload length, next header, hop limit, source and
/// destination of the IPv6 header at `offset`.
fn ipv6_windows(
    offset: usize,
    payload_len: usize,
    next: u8,
    hop_limit: Option<u8>,
    src: &str,
    dst: &str,
) -> [BenchWindow; 3] {
    [
        header_window(offset, payload_len, next, hop_limit),
        address_window(offset + 8, src),
        address_window(offset + 24, dst),
    ]
}

/// What the sink must receive from `dut` in `dir` for an inner packet of `size` bytes.
fn expect(dut: Dut, dir: Dir, size: usize) -> BenchExpect {
    const E: usize = 14;
    let none = BenchWindow::default();
    let cat = |a: [BenchWindow; 3], b: [BenchWindow; 3]| -> [BenchWindow; 6] {
        [a[0], a[1], a[2], b[0], b[1], b[2]]
    };
    let (frame_len, windows) = match (dir, dut) {
        (Dir::Down, Dut::Gen | Dut::Ceiling | Dut::Forward) => {
            let hl = if dut == Dut::Forward { 63 } else { 64 };
            (
                E + size,
                cat(ipv6_windows(E, size - 40, 17, Some(hl), CN, HOA), [none; 3]),
            )
        }
        (Dir::Down, Dut::Hagent | Dut::HagentNoCache | Dut::Tun) => (
            E + 40 + size,
            // Outer hop limit 64 (hagent's default; the TUN baseline's raw socket uses the
            // kernel's default, 64 too). The HA decrements the inner hop limit (it is a
            // router); so does the kernel on the way into the TUN device.
            cat(
                ipv6_windows(E, size, 41, Some(64), HA, COA),
                ipv6_windows(E + 40, size - 40, 17, Some(63), CN, HOA),
            ),
        ),
        (Dir::Down, Dut::Seg6) => {
            // Outer header, a segment routing header with one segment, the packet.
            let o = ipv6_windows(E, 24 + size, 43, None, HA, COA);
            (
                E + 40 + 24 + size,
                [
                    o[0],
                    o[1],
                    o[2],
                    // SRH: next header 41, length 2 (units of 8 bytes), type 4, segments left 0.
                    window(
                        E + 40,
                        [41, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                    ),
                    header_window(E + 64, size - 40, 17, None),
                    address_window(E + 64 + 24, HOA),
                ],
            )
        }
        (Dir::Up, Dut::Gen | Dut::Ceiling | Dut::Forward) => {
            let hl = if dut == Dut::Forward { 63 } else { 64 };
            let i = ipv6_windows(E + 40, size - 40, 17, Some(64), HOA, CN);
            (
                E + 40 + size,
                [
                    ipv6_windows(E, size, 41, Some(hl), COA, CN)[0],
                    address_window(E + 8, COA),
                    address_window(E + 24, CN),
                    i[0],
                    i[1],
                    i[2],
                ],
            )
        }
        (Dir::Up, Dut::Hagent | Dut::HagentNoCache | Dut::Tun | Dut::Seg6) => (
            E + size,
            cat(
                ipv6_windows(
                    E,
                    size - 40,
                    17,
                    // The HA forwards the inner packet as a router does.
                    matches!(dut, Dut::Hagent | Dut::HagentNoCache).then_some(63),
                    HOA,
                    CN,
                ),
                [none; 3],
            ),
        ),
    };
    BenchExpect {
        frame_len: frame_len as u32,
        _pad: 0,
        windows,
    }
}

/// The benchmark's own eBPF object and the links it made.
struct Bench {
    ebpf: Ebpf,
    links: Vec<(&'static str, XdpLinkId)>,
    template: Array<MapData, BenchTemplate>,
    expect: Array<MapData, BenchExpect>,
    sink: PerCpuArray<MapData, u64>,
    first: Array<MapData, u64>,
    devmap: DevMap<MapData>,
}

impl Bench {
    fn load() -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(hagent::dataplane::BENCH_OBJECT)?;
        for name in ["bench_gen", "bench_sink", "bench_redirect", "bench_pass"] {
            let p: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("{name} missing"))?
                .try_into()?;
            p.load()
                .with_context(|| format!("the kernel refused {name}"))?;
        }
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("{name} missing"))
        };
        Ok(Self {
            template: Array::try_from(take("BENCH_TEMPLATE")?)?,
            expect: Array::try_from(take("BENCH_EXPECT")?)?,
            sink: PerCpuArray::try_from(take("BENCH_SINK")?)?,
            first: Array::try_from(take("BENCH_FIRST")?)?,
            devmap: DevMap::try_from(take("BENCH_DEVMAP")?)?,
            ebpf,
            links: Vec::new(),
        })
    }

    fn program(&mut self, name: &str) -> anyhow::Result<&mut Xdp> {
        Ok(self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("{name} missing"))?
            .try_into()?)
    }

    /// Attaches `name` in native mode to `ifindex` of `ns`.
    fn attach(&mut self, name: &'static str, ns: &Netns, ifindex: u32) -> anyhow::Result<()> {
        let _in = ns.enter()?;
        let id = self
            .program(name)?
            .attach_to_if_index(ifindex, XdpMode::Driver)
            .with_context(|| format!("attaching {name} to ifindex {ifindex} in {}", ns.name()))?;
        self.links.push((name, id));
        Ok(())
    }

    /// Detaches every program attached to the DUT's interfaces (all but the sink's).
    fn detach_dut(&mut self) -> anyhow::Result<()> {
        let keep_first = self.links.first().is_some_and(|(n, _)| *n == "bench_sink");
        let start = usize::from(keep_first);
        for (name, id) in self.links.drain(start..).collect::<Vec<_>>() {
            self.program(name)?.detach(id)?;
        }
        Ok(())
    }

    fn set_template(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let chunks = (frame.len().min(TEMPLATE_CHUNKS * 8)) / 8;
        let mut t = BenchTemplate {
            chunks: chunks as u32,
            ..Default::default()
        };
        for (i, w) in t.words.iter_mut().take(chunks).enumerate() {
            *w = u64::from_ne_bytes(frame[i * 8..i * 8 + 8].try_into()?);
        }
        self.template.set(0, t, 0)?;
        Ok(())
    }

    fn set_expect(&mut self, e: BenchExpect) -> anyhow::Result<()> {
        self.expect.set(0, e, 0)?;
        Ok(())
    }

    fn set_redirect(&mut self, ifindex: u32) -> anyhow::Result<()> {
        self.devmap.set(0, ifindex, None, 0)?;
        Ok(())
    }

    /// The sink's counters summed over CPUs: frames, expected, other.
    fn sink(&self) -> anyhow::Result<[u64; 3]> {
        let mut out = [0u64; 3];
        for (slot, i) in [SINK_FRAMES, SINK_EXPECTED, SINK_OTHER]
            .into_iter()
            .enumerate()
        {
            out[slot] = self.sink.get(&i, 0)?.iter().sum();
        }
        Ok(out)
    }
}

/// The generator: `count` copies of `frame` out of `g0`, pinned to CPU 0; returns the time.
fn generate(
    ebpf: &Ebpf,
    generator: &Netns,
    g0: u32,
    frame: &[u8],
    count: u32,
) -> anyhow::Result<Duration> {
    let mut ctx = Vec::with_capacity(24);
    for v in [0u32, frame.len() as u32, 0, g0, 0, 0] {
        ctx.extend_from_slice(&v.to_ne_bytes());
    }
    let program: &Xdp = ebpf
        .program("bench_gen")
        .context("bench_gen missing")?
        .try_into()?;
    let _in = generator.enter()?;
    let _cpu = Pinned::to(0)?;
    let t = Instant::now();
    program.test_run(TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx),
        repeat: count,
        attrs: TestRunAttrs::new().xdp_live_frames(64),
        ..Default::default()
    })?;
    Ok(t.elapsed())
}

/// Pins thread `tid` (0: the calling thread) to `cpu`.
fn pin_to(tid: i32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: plain syscall on a zeroed cpu_set_t of the right size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins the calling thread to one CPU until dropped.
struct Pinned(libc::cpu_set_t);

impl Pinned {
    fn to(cpu: usize) -> anyhow::Result<Self> {
        // SAFETY: plain syscall on a zeroed cpu_set_t of the right size.
        let old = unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of_val(&old), &mut old) != 0 {
                bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
            }
            old
        };
        pin_to(0, cpu).context("sched_setaffinity")?;
        Ok(Self(old))
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: restores the mask read in `to`.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&self.0), &self.0) };
    }
}

/// The naive userspace tunnel: TUN device in, raw IPPROTO_IPV6 socket out, and back.
struct TunForwarder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl TunForwarder {
    fn start(dut: &Netns) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let s = stop.clone();
        let thread = dut.spawn_thread(move || tun_loop(&s, tx))?;
        // From here on, dropping `me` stops the thread, whatever fails.
        let me = Self {
            stop,
            thread: Some(thread),
        };
        rx.recv_timeout(Duration::from_secs(5))
            .context("the TUN forwarder did not start")??;
        dut.ip(&["link", "set", TUN_IF, "up"])?;
        dut.ip(&["-6", "route", "add", &format!("{HOA}/128"), "dev", TUN_IF])?;
        Ok(me)
    }
}

impl Drop for TunForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Err(e)) => eprintln!("TUN forwarder: {e:#}"),
                Err(_) => eprintln!("TUN forwarder panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

fn tun_loop(
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let setup = || -> anyhow::Result<(OwnedFd, OwnedFd, Option<Pinned>)> {
        // The other core: the generous placement for this baseline.
        let pinned = Some(Pinned::to(1).context("pinning the TUN forwarder to CPU 1")?);
        // SAFETY: plain syscalls; every fd is wrapped in an OwnedFd at once.
        unsafe {
            let tun = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK);
            ensure!(
                tun >= 0,
                "opening /dev/net/tun: {}",
                std::io::Error::last_os_error()
            );
            let tun = OwnedFd::from_raw_fd(tun);
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, s) in ifr.ifr_name.iter_mut().zip(TUN_IF.bytes()) {
                *d = s as libc::c_char;
            }
            ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
            ensure!(
                libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &ifr) == 0,
                "TUNSETIFF: {}",
                std::io::Error::last_os_error()
            );
            let raw = libc::socket(
                libc::AF_INET6,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK,
                libc::IPPROTO_IPV6,
            );
            ensure!(raw >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let raw = OwnedFd::from_raw_fd(raw);
            let sa = sockaddr(addr(HA));
            ensure!(
                libc::bind(
                    raw.as_raw_fd(),
                    (&sa as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of_val(&sa) as u32
                ) == 0,
                "bind {HA}: {}",
                std::io::Error::last_os_error()
            );
            Ok((tun, raw, pinned))
        }
    };
    let (tun, raw, _pinned) = match setup() {
        Ok(v) => {
            let _ = ready.send(Ok(()));
            v
        }
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("{e:#}")));
            return Ok(());
        }
    };
    let coa = sockaddr(addr(COA));
    let mut buf = vec![0u8; 65536];
    // Bounded: the benchmark stops it; an hour is the backstop.
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut fds = [
            libc::pollfd {
                fd: tun.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: raw.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, 50) } <= 0 {
            continue;
        }
        // One packet per system call each way, as a naive tunnel does.
        if fds[0].revents & libc::POLLIN != 0 {
            loop {
                // SAFETY: reads into our buffer.
                let n = unsafe { libc::read(tun.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                // SAFETY: sends n bytes of our buffer to a valid sockaddr_in6.
                let r = unsafe {
                    libc::sendto(
                        raw.as_raw_fd(),
                        buf.as_ptr().cast(),
                        n as usize,
                        0,
                        (&coa as *const libc::sockaddr_in6).cast(),
                        std::mem::size_of_val(&coa) as u32,
                    )
                };
                let _ = r;
            }
        }
        if fds[1].revents & libc::POLLIN != 0 {
            loop {
                // SAFETY: receives into our buffer; IPv6 raw sockets give the payload (the
                // inner packet).
                let n =
                    unsafe { libc::recv(raw.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    break;
                }
                // SAFETY: writes n bytes of our buffer.
                unsafe { libc::write(tun.as_raw_fd(), buf.as_ptr().cast(), n as usize) };
            }
        }
    }
    Ok(())
}

fn sockaddr(a: Ipv6Addr) -> libc::sockaddr_in6 {
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = a.octets();
    sa
}

/// What a device under test needs while it is measured.
enum Setup {
    Nothing,
    Daemon(Box<Hagent>),
    Tun(TunForwarder),
}

fn setup(lab: &Lab, bench: &mut Bench, dut: Dut) -> anyhow::Result<Setup> {
    let ha = |cache: bool| -> anyhow::Result<Setup> {
        let config = format!(
            "role = \"home_agent\"\n\n[home_agent]\naddresses = [\"{HA}\"]\ndad = false\ndefault_acl = \"allow\"\n\n[dataplane]\ninterfaces = [\"d0\", \"d1\"]\nxdp_mode = \"native\"\nnexthop_cache = {cache}\nmax_bindings = 1024\nmax_prefixes = 64\n"
        );
        let d = Hagent::start(&lab.dut, &config)?;
        d.cli(&["binding", "add", HOA, COA])?;
        Ok(Setup::Daemon(Box::new(d)))
    };
    Ok(match dut {
        Dut::Gen => {
            bench.attach("bench_sink", &lab.dut, lab.d0)?;
            Setup::Nothing
        }
        Dut::Ceiling => {
            {
                let _in = lab.dut.enter()?;
                bench.set_redirect(lab.d1)?;
            }
            bench.attach("bench_redirect", &lab.dut, lab.d0)?;
            Setup::Nothing
        }
        Dut::Hagent => ha(true)?,
        Dut::HagentNoCache => ha(false)?,
        Dut::Forward => {
            bench.attach("bench_pass", &lab.dut, lab.d0)?;
            lab.dut.ip(&[
                "-6",
                "route",
                "add",
                &format!("{HOA}/128"),
                "via",
                SINK,
                "dev",
                "d1",
            ])?;
            Setup::Nothing
        }
        Dut::Seg6 => {
            bench.attach("bench_pass", &lab.dut, lab.d0)?;
            lab.dut.ip(&["sr", "tunsrc", "set", HA])?;
            lab.dut.ip(&[
                "-6",
                "route",
                "add",
                &format!("{HOA}/128"),
                "encap",
                "seg6",
                "mode",
                "encap",
                "segs",
                COA,
                "dev",
                "d1",
            ])?;
            lab.dut.ip(&[
                "-6",
                "route",
                "add",
                &format!("{SID}/128"),
                "encap",
                "seg6local",
                "action",
                "End.DX6",
                "nh6",
                SINK,
                "dev",
                "d1",
            ])?;
            Setup::Nothing
        }
        Dut::Tun => {
            bench.attach("bench_pass", &lab.dut, lab.d0)?;
            Setup::Tun(TunForwarder::start(&lab.dut)?)
        }
    })
}

fn teardown(lab: &Lab, bench: &mut Bench, dut: Dut, s: Setup) -> anyhow::Result<()> {
    match s {
        Setup::Daemon(d) => {
            d.stop()?;
        }
        Setup::Tun(t) => drop(t),
        Setup::Nothing => {}
    }
    bench.detach_dut()?;
    match dut {
        Dut::Forward => {
            lab.dut.ip(&["-6", "route", "del", &format!("{HOA}/128")])?;
        }
        Dut::Seg6 => {
            lab.dut.ip(&["-6", "route", "del", &format!("{HOA}/128")])?;
            lab.dut.ip(&["-6", "route", "del", &format!("{SID}/128")])?;
        }
        _ => {}
    }
    Ok(())
}

/// One measurement: packets per second the sink received as expected, and the share of the
/// generated packets that arrived.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub pps: f64,
    pub delivered: f64,
}

fn measure(
    lab: &Lab,
    bench: &mut Bench,
    dut: Dut,
    dir: Dir,
    size: usize,
) -> anyhow::Result<Sample> {
    let f = frame(lab, dut, dir, size);
    bench.set_template(&f)?;
    bench.set_expect(expect(dut, dir, size))?;
    // Later frames of a slow DUT (the TUN thread) arrive after the generator stops.
    let settle = if dut == Dut::Tun {
        Duration::from_millis(200)
    } else {
        Duration::from_millis(20)
    };
    let once = |bench: &mut Bench, count: u32| -> anyhow::Result<(Sample, Duration)> {
        let before = bench.sink()?;
        let took = generate(&bench.ebpf, &lab.generator, lab.g0, &f, count)?;
        std::thread::sleep(settle);
        let after = bench.sink()?;
        let good = after[1] - before[1];
        let other = after[2] - before[2];
        ensure!(
            good > 0,
            "{} {} {size} B: the sink saw no correct frame ({other} others)",
            dut.name(),
            dir.name()
        );
        // Stray frames (router solicitations, MLD) are few; many wrong ones mean a wrong DUT.
        ensure!(
            other * 100 <= good,
            "{} {} {size} B: {other} wrong frames for {good} correct",
            dut.name(),
            dir.name()
        );
        let sample = Sample {
            pps: good as f64 / took.as_secs_f64(),
            delivered: good as f64 / count as f64,
        };
        Ok((sample, took))
    };
    // Warm up: page pool, next-hop cache, the daemon's start-up work.
    once(bench, 20_000)?;
    let first = if quick() { 50_000 } else { 100_000 };
    let (calibration, took) = once(bench, first)?;
    if quick() {
        return Ok(calibration);
    }
    // Each measured run takes about run_seconds(), however fast the chain is.
    let count =
        (first as f64 * run_seconds() / took.as_secs_f64()).clamp(50_000.0, 20_000_000.0) as u32;
    Ok(once(bench, count)?.0)
}

/// Handover latency at the HA: a BU moving HOA2 to another care-of address is sent from the
/// care-of side while the generator floods HOA2; the time from sending it to the sink's first
/// frame tunnelled to the new address (both CLOCK_MONOTONIC: the sink stamps with
/// `bpf_ktime_get_ns`). It includes the two veth crossings, so it bounds the HA's part from
/// above. Returns the latencies in µs.
fn handover(lab: &Lab, bench: &mut Bench, d: &Hagent) -> anyhow::Result<Vec<f64>> {
    use tests::flood::{Gen, bu_packet};
    let moves = if quick() { 3 } else { 10 };
    let send_bu = |coa: &str, seq: u16| -> anyhow::Result<Instant> {
        let (coa, ha, hoa) = (addr(coa), addr(HA), addr(HOA2));
        lab.sink.run_in(move || -> anyhow::Result<Instant> {
            let g = Gen::new(ha, None)?;
            let p = bu_packet(coa, ha, hoa, seq, 1000);
            let t = Instant::now();
            ensure!(g.send(&p), "the BU was not sent");
            Ok(t)
        })?
    };
    // The daemon on the other core: the generator's syscall keeps CPU 0 busy, and a daemon
    // woken there would wait for it (on a router the control plane has cores of its own).
    pin_process(d.process.pid(), 1)?;
    // Register from COA_A first and wait for the binding.
    send_bu(COA_A, 1)?;
    tests::wait_for("HOA2's binding", Duration::from_secs(10), || {
        Ok(d.cli(&["bindings", "--json"])?.contains(HOA2).then_some(()))
    })?;
    let mut f = eth(lab.d0_mac, lab.g0_mac);
    f.extend(inner(64, addr(CN), addr(HOA2)));
    bench.set_template(&f)?;
    let expect_to = |coa: &str| {
        let mut e = expect(Dut::Hagent, Dir::Down, 64);
        e.windows[2] = address_window(14 + 24, coa);
        e.windows[5] = address_window(14 + 40 + 24, HOA2);
        e
    };
    bench.set_expect(expect_to(COA_A))?;
    let stop = AtomicBool::new(false);
    let mut latencies = Vec::new();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let ebpf = &bench.ebpf;
        let (f, stop) = (&f, &stop);
        let gen_thread = scope.spawn(move || -> anyhow::Result<()> {
            // Bounded: one call of about 0.4 s at a time, until told to stop (at most 60).
            for _ in 0..60 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                generate(ebpf, &lab.generator, lab.g0, f, 400_000)?;
            }
            Ok(())
        });
        let result = (|| -> anyhow::Result<()> {
            // Let the flood start.
            std::thread::sleep(Duration::from_millis(200));
            for i in 0..moves {
                let to = if i % 2 == 0 { COA_B } else { COA_A };
                bench.expect.set(0, expect_to(to), 0)?;
                bench.first.set(0, 0, 0)?;
                let sent = send_bu(to, 2 + i as u16)?;
                // CLOCK_MONOTONIC of the send, as the kernel's bpf_ktime_get_ns counts.
                let sent_ns = monotonic_ns() - sent.elapsed().as_nanos() as u64;
                let first = tests::wait_for(
                    "the first frame to the new CoA",
                    Duration::from_secs(5),
                    || {
                        let v = bench.first.get(&0, 0)?;
                        Ok((v != 0).then_some(v))
                    },
                )?;
                latencies.push(first.saturating_sub(sent_ns) as f64 / 1e3);
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        gen_thread
            .join()
            .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
        result
    })?;
    Ok(latencies)
}

/// Pins every thread of process `pid` to `cpu`.
fn pin_process(pid: u32, cpu: usize) -> anyhow::Result<()> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A thread that ended meanwhile needs no pinning.
        let _ = pin_to(tid, cpu);
    }
    Ok(())
}

/// The median of sorted `v` (the mean of the middle two for an even count).
pub(crate) fn median(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn monotonic_ns() -> u64 {
    // SAFETY: a valid timespec for the call.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel threads whose name starts with `prefix`.
fn threads_named(prefix: &str) -> anyhow::Result<std::collections::BTreeSet<i32>> {
    let mut out = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim().starts_with(prefix) {
            out.insert(pid);
        }
    }
    Ok(out)
}

/// Sets threaded NAPI on `ifname` in `ns` (`on`) and pins the kernel threads that switching
/// it on created to `cpu`. Names are not unique across namespaces (another lab may have a
/// `d0`), so the threads are told apart as the ones that were not there before.
fn threaded_napi(ns: &Netns, ifname: &str, on: bool, cpu: usize) -> anyhow::Result<()> {
    let prefix = format!("napi/{ifname}-");
    let before = threads_named(&prefix)?;
    ns.exec(
        "sh",
        &[
            "-c",
            &format!("echo {} > /sys/class/net/{ifname}/threaded", u8::from(on)),
        ],
    )?;
    if !on {
        return Ok(());
    }
    // The threads appear when threading is switched on; bounded wait.
    for _ in 0..50 {
        let new: Vec<i32> = threads_named(&prefix)?
            .difference(&before)
            .copied()
            .collect();
        if !new.is_empty() {
            for pid in new {
                pin_to(pid, cpu).with_context(|| format!("pinning NAPI thread {pid}"))?;
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("no new NAPI thread for {ifname} to pin")
}

/// DUT-only capacity: the DUT's receive (`d0`) in a NAPI thread of its own on CPU 1, the
/// generator and the sink (`s1`, threaded too) on CPU 0 — the DUT's core does nothing else.
/// Noisier than the one-core chain (two cores, a scheduler between them).
fn dut_only(lab: &Lab, bench: &mut Bench, dut: Dut) -> anyhow::Result<Sample> {
    let r = threaded_napi(&lab.dut, "d0", true, 1)
        .and_then(|()| threaded_napi(&lab.sink, "s1", true, 0))
        .and_then(|()| measure(lab, bench, dut, Dir::Down, 64));
    // Back to NAPI in softirq context whatever happened.
    let off = threaded_napi(&lab.dut, "d0", false, 1).and(threaded_napi(&lab.sink, "s1", false, 0));
    let r = r?;
    off?;
    Ok(r)
}

/// Run time and run count of the programs with these ids, from the kernel's BPF statistics.
fn program_stats(ids: &[u32]) -> anyhow::Result<Vec<(u64, u64)>> {
    let mut out = vec![(0u64, 0u64); ids.len()];
    for p in aya::programs::loaded_programs() {
        let p = p?;
        if let Some(i) = ids.iter().position(|id| *id == p.id()) {
            out[i] = (p.run_time().as_nanos() as u64, p.run_count());
        }
    }
    Ok(out)
}

/// The id of the XDP program the daemon `d` attached to `ifindex` (from its pinned link).
pub fn daemon_xdp_program(d: &Hagent, ifindex: u32) -> anyhow::Result<u32> {
    let pin = d.pin_dir()?.join(format!("xdp-{ifindex}"));
    let out = tests::run(std::process::Command::new("bpftool").args([
        "-j",
        "link",
        "show",
        "pinned",
        pin.to_str().context("path")?,
    ]))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["prog_id"]
        .as_u64()
        .map(|id| id as u32)
        .with_context(|| format!("no prog_id for the link pinned at {}", pin.display()))
}

/// Where the time of one packet goes (ns), downlink at 64 bytes: one more run with the
/// kernel's BPF run-time statistics on (for as long as this function holds their fd). They cost
/// a little per program run, so this run is not a throughput figure; the caller sets the
/// per-packet programs' times against the uninstrumented rate.
fn breakdown(
    lab: &Lab,
    bench: &mut Bench,
    dut: Dut,
    dut_program: u32,
) -> anyhow::Result<serde_json::Value> {
    let ids = [
        bench.program("bench_gen")?.info()?.id(),
        dut_program,
        bench.program("bench_sink")?.info()?.id(),
    ];
    let f = frame(lab, dut, Dir::Down, 64);
    bench.set_template(&f)?;
    bench.set_expect(expect(dut, Dir::Down, 64))?;
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time statistics")?;
    let count = if quick() { 100_000 } else { 2_000_000 };
    let before = program_stats(&ids)?;
    let before_sink = bench.sink()?;
    let took = generate(&bench.ebpf, &lab.generator, lab.g0, &f, count)?;
    std::thread::sleep(Duration::from_millis(20));
    let after = program_stats(&ids)?;
    let good = bench.sink()?[1].saturating_sub(before_sink[1]);
    ensure!(good > 0, "no packet arrived during the breakdown run");
    let per = |i: usize| {
        let t = after[i].0.saturating_sub(before[i].0);
        let n = after[i].1.saturating_sub(before[i].1);
        if n == 0 { 0.0 } else { t as f64 / n as f64 }
    };
    Ok(json!({
        "instrumented_total_ns": took.as_nanos() as f64 / good as f64,
        "gen_ns": per(0), "dut_ns": per(1), "sink_ns": per(2),
    }))
}

/// A CPU profile of core 0 while hagent encapsulates 64-byte packets (`perf`, where it
/// works): the kernel functions that take the time, with their share.
fn profile(lab: &Lab, bench: &mut Bench) -> anyhow::Result<Vec<(f64, String)>> {
    let dir = tests::TempDir::new("perf")?;
    let data = dir.join("perf.data");
    let data_s = data.to_str().context("path")?.to_string();
    let f = frame(lab, Dut::Hagent, Dir::Down, 64);
    bench.set_template(&f)?;
    bench.set_expect(expect(Dut::Hagent, Dir::Down, 64))?;
    let mut perf = std::process::Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-C",
            "0",
            "-o",
            &data_s,
            "--",
            "sleep",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("perf")?;
    std::thread::sleep(Duration::from_millis(200));
    // Longer than perf records; bounded by the count.
    let generated = generate(
        &bench.ebpf,
        &lab.generator,
        lab.g0,
        &f,
        if quick() { 3_000_000 } else { 8_000_000 },
    );
    // perf ends by itself (sleep 2); wait for it even when the generator failed.
    let status = perf.wait()?;
    generated?;
    ensure!(status.success(), "perf record failed ({status})");
    let out = std::process::Command::new("perf")
        .args([
            "report",
            "-i",
            &data_s,
            "--no-children",
            "--sort",
            "sym",
            "--stdio",
            "-q",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(pct), Some(_kind)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(pct) = pct.trim_end_matches('%').parse::<f64>() else {
            continue;
        };
        rows.push((pct, words.collect::<Vec<_>>().join(" ")));
        if rows.len() == 15 {
            break;
        }
    }
    Ok(rows)
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    step("throughput: generator → DUT → sink over veth, live frames, one core");
    let lab = lab()?;
    let mut bench = Bench::load()?;
    bench.attach("bench_sink", &lab.sink, lab.s1)?;
    let sizes = sizes();
    let mut results = serde_json::Map::new();
    let mut table: Vec<(Dut, Dir, usize, Sample)> = Vec::new();
    let mut breakdowns = serde_json::Map::new();
    let mut profile_rows = Vec::new();
    let mut handover_us: Vec<f64> = Vec::new();
    let mut dut_only_rows: Vec<(Dut, Sample)> = Vec::new();
    // Passes over every DUT, each measuring every direction and size once; the median of the
    // passes is reported. Drift during the run (a shared, noisy machine) so falls on all DUTs
    // alike instead of on whichever came last.
    let mut all_samples: Vec<(Dut, Dir, usize, Sample)> = Vec::new();
    for pass in 0..rounds() {
        for dut in Dut::ALL {
            step(&format!(
                "throughput, pass {} of {}: {}",
                pass + 1,
                rounds(),
                dut.name()
            ));
            let s = setup(&lab, &mut bench, dut)?;
            let measured = (|| -> anyhow::Result<()> {
                for dir in [Dir::Down, Dir::Up] {
                    for &size in &sizes {
                        let sample = measure(&lab, &mut bench, dut, dir, size)?;
                        all_samples.push((dut, dir, size, sample));
                    }
                }
                if matches!(dut, Dut::Ceiling | Dut::Hagent | Dut::Forward | Dut::Seg6) {
                    dut_only_rows.push((dut, dut_only(&lab, &mut bench, dut)?));
                }
                if pass > 0 {
                    return Ok(());
                }
                if let (Dut::Hagent, Setup::Daemon(d)) = (dut, &s) {
                    let mut l = handover(&lab, &mut bench, d)?;
                    l.sort_by(f64::total_cmp);
                    handover_us = l;
                }
                let program = match (dut, &s) {
                    (Dut::Ceiling, _) => Some(bench.program("bench_redirect")?.info()?.id()),
                    (Dut::Hagent, Setup::Daemon(d)) => Some(daemon_xdp_program(d, lab.d0)?),
                    _ => None,
                };
                if let Some(program) = program {
                    breakdowns.insert(dut.key().into(), breakdown(&lab, &mut bench, dut, program)?);
                }
                if dut == Dut::Hagent && !quick() {
                    match profile(&lab, &mut bench) {
                        Ok(rows) => profile_rows = rows,
                        Err(e) => eprintln!("no profile: {e:#}"),
                    }
                }
                Ok(())
            })();
            teardown(&lab, &mut bench, dut, s)?;
            measured?;
        }
    }
    for dut in Dut::ALL {
        for dir in [Dir::Down, Dir::Up] {
            for &size in &sizes {
                let v: Vec<Sample> = all_samples
                    .iter()
                    .filter(|t| t.0 == dut && t.1 == dir && t.2 == size)
                    .map(|t| t.3)
                    .collect();
                let m = crate::middle(v, |x| x.pps).context("no pass measured it")?;
                table.push((dut, dir, size, m));
            }
        }
    }
    let get = |dut: Dut, dir: Dir, size: usize| {
        table
            .iter()
            .find(|(d, r, s, _)| *d == dut && *r == dir && *s == size)
            .map(|t| t.3)
            .unwrap_or_default()
    };
    println!();
    println!(
        "packets/s through the DUT (median of {}), generator → DUT → sink, one core{}",
        rounds(),
        if quick() {
            " — QUICK MODE: not the figures"
        } else {
            ""
        }
    );
    for dir in [Dir::Down, Dir::Up] {
        println!("\n{}, inner packet size:", dir.name());
        print!("{:<34}", "");
        for s in &sizes {
            print!(" {:>12}", format!("{s} B"));
        }
        println!("   hagent ÷ it at 64 B");
        for dut in Dut::ALL {
            print!("{:<34}", dut.name());
            let mut series = Vec::new();
            for &s in &sizes {
                let x = get(dut, dir, s);
                print!(" {:>8.3} Mpps", x.pps / 1e6);
                series.push(json!({"size": s, "pps": x.pps, "delivered": x.delivered}));
            }
            let h = get(Dut::Hagent, dir, 64).pps;
            let mine = get(dut, dir, 64).pps;
            println!("   {:>6.2}x", h / mine);
            results.insert(format!("{}_{}", dut.key(), dir.key()), json!(series));
        }
    }
    println!();
    let targets = [
        (Dut::Ceiling, 0.7),
        (Dut::Forward, 2.5),
        (Dut::Seg6, 4.0),
        (Dut::Tun, 10.0),
    ];
    let mut ratios = serde_json::Map::new();
    for dir in [Dir::Down, Dir::Up] {
        for &size in [64usize, 1400].iter().filter(|s| sizes.contains(s)) {
            for (base, target) in targets {
                let r = get(Dut::Hagent, dir, size).pps / get(base, dir, size).pps;
                println!(
                    "{} {size} B: hagent ÷ {} = {r:.2}x (target ≥ {target}x{})",
                    dir.name(),
                    base.name(),
                    if r >= target { ", met" } else { ", NOT met" }
                );
                ratios.insert(
                    format!("{}_{size}_{}", dir.key(), base.key()),
                    json!({"ratio": r, "target": target}),
                );
            }
        }
        let g = get(Dut::Gen, dir, 64).pps / get(Dut::Ceiling, dir, 64).pps;
        println!(
            "{} 64 B: the generator alone ÷ the ceiling = {g:.2}x (must be > 1)",
            dir.name()
        );
    }
    // The DUT's own cost: what a packet costs the chain beyond the generator and the sink
    // (1/rate − 1/rate of the generator alone), the "subtracting generator and sink".
    let mut own = serde_json::Map::new();
    for dir in [Dir::Down, Dir::Up] {
        let g = get(Dut::Gen, dir, 64).pps;
        let cost = |d: Dut| 1e9 / get(d, dir, 64).pps - 1e9 / g;
        let h = cost(Dut::Hagent);
        print!(
            "{} 64 B, the DUT's own ns per packet (generator and sink subtracted): hagent {h:.0}",
            dir.name()
        );
        for base in [
            Dut::Ceiling,
            Dut::HagentNoCache,
            Dut::Forward,
            Dut::Seg6,
            Dut::Tun,
        ] {
            print!(
                "; {} {:.0} (×{:.2})",
                base.key(),
                cost(base),
                cost(base) / h
            );
            own.insert(format!("{}_{}", dir.key(), base.key()), json!(cost(base)));
        }
        own.insert(format!("{}_hagent", dir.key()), json!(h));
        println!();
    }
    // DUT-only capacity: the median of the passes, with the share of generated frames that
    // arrived (the rest overflowed the DUT's ring).
    let dut_only_rows: Vec<(Dut, Sample)> = [Dut::Ceiling, Dut::Hagent, Dut::Forward, Dut::Seg6]
        .into_iter()
        .filter_map(|d| {
            let v: Vec<Sample> = dut_only_rows
                .iter()
                .filter(|r| r.0 == d)
                .map(|r| r.1)
                .collect();
            crate::middle(v, |x| x.pps).map(|m| (d, m))
        })
        .collect();
    if let Some(h) = dut_only_rows
        .iter()
        .find(|r| r.0 == Dut::Hagent)
        .map(|r| r.1.pps)
    {
        print!(
            "DUT-only capacity, downlink 64 B (DUT on a core of its own): hagent {:.3} Mpps",
            h / 1e6
        );
        for (d, x) in &dut_only_rows {
            if *d != Dut::Hagent {
                print!(
                    "; {} {:.3} Mpps (hagent ×{:.2}, {:.0} % delivered)",
                    d.key(),
                    x.pps / 1e6,
                    h / x.pps,
                    x.delivered * 100.0
                );
            }
        }
        println!();
    }
    for dut in [Dut::Ceiling, Dut::Hagent] {
        let Some(b) = breakdowns.get_mut(dut.key()) else {
            continue;
        };
        let f = |k: &str| b[k].as_f64().unwrap_or(0.0);
        // The packet's time without the statistics, from the throughput run.
        let total = 1e9 / get(dut, Dir::Down, 64).pps;
        let rest = total - f("gen_ns") - f("dut_ns") - f("sink_ns");
        println!(
            "per packet, downlink 64 B, {}: {total:.0} ns (1/rate) = generator {:.0} + DUT program {:.0} + sink {:.0} (programs timed by bpf_stats) + the rest (veth, redirect, page pool) {rest:.0}; with the statistics on the packet took {:.0} ns",
            dut.key(),
            f("gen_ns"),
            f("dut_ns"),
            f("sink_ns"),
            f("instrumented_total_ns"),
        );
        b["total_ns"] = json!(total);
        b["rest_ns"] = json!(rest);
    }
    if let (Some(min), Some(max)) = (handover_us.first(), handover_us.last()) {
        println!(
            "handover at the HA (BU sent → first frame tunnelled to the new CoA, {} moves under a flood): median {:.0} µs, min {min:.0}, max {max:.0} (target < 1000)",
            handover_us.len(),
            median(&handover_us)
        );
    }
    if !profile_rows.is_empty() {
        println!("\nperf, CPU 0 while hagent encapsulates 64-byte packets (top symbols):");
        for (pct, sym) in &profile_rows {
            println!("  {pct:>6.2}%  {sym}");
        }
    }
    Ok(json!({
        "series": results,
        "ratios": ratios,
        "breakdown": breakdowns,
        "handover_us": handover_us,
        "own_ns": own,
        "dut_only": dut_only_rows.iter().map(|(d, x)| json!({"dut": d.key(), "pps": x.pps, "delivered": x.delivered})).collect::<Vec<_>>(),
        "profile": profile_rows.iter().map(|(p, s)| json!({"pct": p, "symbol": s})).collect::<Vec<_>>(),
    }))
}
