//! `cargo xtask bench signalling`: Binding Updates processed per second end to end.
//!
//! Two namespaces on one veth: `ha` runs the daemon (TOML config, DAD on, as in production),
//! `gen` is a load generator that sends BUs for N home addresses from one care-of address
//! (IPPROTO_RAW, each BU with its Home Address option and checksum) keeping a bounded window
//! outstanding, and counts the BAs on an AF_PACKET socket (its kernel cannot take a type 2
//! routing header). Phase 1 registers N new mobile nodes; phase 2 refreshes them all.

use std::{
    collections::HashSet,
    net::Ipv6Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::bail;
use ha_common::mh::{self, BuFields};
use hagent::mobility::ipv6_header;
use tests::{Netns, step, topology::Hagent};

const HA: &str = "2001:db8:bee5::c001:babe";
const COA: &str = "2001:db8:f00d::1";
/// Unanswered BUs the generator keeps in flight.
const WINDOW: usize = 4096;

fn hoa(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from("2001:db8:bee5::1:0:0".parse::<Ipv6Addr>().unwrap()) + i as u128)
}

fn bu_packet(hoa: Ipv6Addr, seq: u16) -> Vec<u8> {
    let (ha, coa): (Ipv6Addr, Ipv6Addr) = (HA.parse().unwrap(), COA.parse().unwrap());
    let mut mhbuf = [0u8; 16];
    let n = mh::build_binding_update(
        &mut mhbuf,
        &hoa.octets(),
        &ha.octets(),
        &BuFields {
            sequence: seq,
            flags: mh::BU_FLAG_A | mh::BU_FLAG_H,
            lifetime_units: 1000,
        },
        &[],
    )
    .expect("BU");
    let mut d = [0u8; 24];
    mh::build_hao_dest_opts(&mut d, mh::IPPROTO_MH, &hoa.octets()).expect("HAO");
    let mut p = ipv6_header(mh::IPPROTO_DSTOPTS, 64, coa, ha, 24 + n).to_vec();
    p.extend_from_slice(&d);
    p.extend_from_slice(&mhbuf[..n]);
    p
}

struct Gen {
    tx: OwnedFd,
    rx: OwnedFd,
}

impl Gen {
    fn new(ifindex: u32) -> anyhow::Result<Self> {
        // SAFETY: plain socket calls; fds owned immediately.
        unsafe {
            let tx = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_RAW);
            let rx = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
                (libc::ETH_P_IPV6 as u16).to_be() as i32,
            );
            if tx < 0 || rx < 0 {
                bail!("sockets: {}", std::io::Error::last_os_error());
            }
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_IPV6 as u16).to_be();
            sll.sll_ifindex = ifindex as i32;
            if libc::bind(
                rx,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            ) < 0
            {
                bail!("bind AF_PACKET: {}", std::io::Error::last_os_error());
            }
            let big: i32 = 64 << 20;
            libc::setsockopt(
                rx,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &big as *const i32 as *const libc::c_void,
                4,
            );
            Ok(Self {
                tx: OwnedFd::from_raw_fd(tx),
                rx: OwnedFd::from_raw_fd(rx),
            })
        }
    }

    fn send(&self, p: &[u8]) -> bool {
        let ha: Ipv6Addr = HA.parse().unwrap();
        // SAFETY: a valid sockaddr_in6 and buffer for the call.
        unsafe {
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_addr.s6_addr = ha.octets();
            libc::sendto(
                self.tx.as_raw_fd(),
                p.as_ptr() as *const libc::c_void,
                p.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in6>() as u32,
            ) >= 0
        }
    }

    /// Drains received BAs: (HoA from the RH2, status).
    fn drain(&self, out: &mut Vec<(Ipv6Addr, u8)>) {
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: buffer valid for its length.
            let n = unsafe {
                libc::recv(
                    self.rx.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n <= 0 {
                return;
            }
            let p = &buf[..n as usize];
            // IPv6 → RH2 (43) → MH BA.
            if p.len() >= 40 + 24 + 12
                && p[6] == 43
                && p[40 + 2] == 2
                && p[64 + 2] == mh::MH_TYPE_BA
            {
                let hoa: [u8; 16] = p[48..64].try_into().unwrap();
                out.push((Ipv6Addr::from(hoa), p[64 + 6]));
            }
        }
    }
}

/// Sends one BU per HoA with `seq`, keeping at most WINDOW unanswered; returns the elapsed
/// time until every HoA got a BA with status 0.
fn phase(g: &Gen, first: u32, n: u32, seq: u16, timeout: Duration) -> anyhow::Result<Duration> {
    let packets: Vec<Vec<u8>> = (first..first + n).map(|i| bu_packet(hoa(i), seq)).collect();
    let mut acked: HashSet<Ipv6Addr> = HashSet::with_capacity(n as usize);
    let mut got = Vec::new();
    let start = Instant::now();
    let mut next = 0usize;
    let mut last_progress = Instant::now();
    while acked.len() < n as usize {
        while next < packets.len() && next - acked.len().min(next) < WINDOW {
            if !g.send(&packets[next]) {
                break;
            }
            next += 1;
        }
        got.clear();
        g.drain(&mut got);
        for (h, status) in &got {
            if *status != 0 {
                bail!("BA status {status} for {h}");
            }
            if acked.insert(*h) {
                last_progress = Instant::now();
            }
        }
        if got.is_empty() {
            std::thread::sleep(Duration::from_micros(200));
        }
        // Resend what has gone unanswered for a while (the daemon may have dropped BUs under
        // load, as a real MN's retransmission would recover).
        if last_progress.elapsed() > Duration::from_secs(3) && next == packets.len() {
            for (i, p) in packets.iter().enumerate() {
                if !acked.contains(&hoa(first + i as u32)) {
                    g.send(p);
                }
            }
            last_progress = Instant::now();
        }
        if start.elapsed() > timeout {
            bail!("only {} of {n} BAs after {timeout:?}", acked.len());
        }
    }
    Ok(start.elapsed())
}

pub fn run() -> anyhow::Result<()> {
    let n: u32 = std::env::var("HAGENT_BENCH_MNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    // HAGENT_BENCH_DAD=0 measures without Duplicate Address Detection.
    let dad = std::env::var("HAGENT_BENCH_DAD")
        .map(|v| v != "0")
        .unwrap_or(true);
    step(&format!(
        "two namespaces on a veth; the daemon with DAD on; {n} mobile nodes"
    ));
    let ha = Netns::new("sig-ha")?;
    let gen_ns = Netns::new("sig-gen")?;
    tests::topology::veth(&ha, "eth0", &gen_ns, "eth0")?;
    ha.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    tests::topology::addr(&ha, "eth0", &format!("{HA}/64"))?;
    tests::topology::addr(&ha, "eth0", "2001:db8:f00d::ffff/64")?;
    tests::topology::addr(&gen_ns, "eth0", &format!("{COA}/64"))?;
    gen_ns.ip(&["-6", "route", "add", "2001:db8:bee5::/64", "dev", "eth0"])?;
    let config = format!(
        "role = \"home_agent\"\n[home_agent]\ndad = {dad}\naddresses = [\"{HA}\"]\n[dataplane]\ninterfaces = [\"eth0\"]\nmax_bindings = {}\n",
        (n + 1024).next_power_of_two()
    );
    let daemon = Hagent::start(&ha, &config)?;
    let ifindex = gen_ns.ifindex("eth0")?;
    let (t_new, t_refresh) =
        gen_ns.run_in(move || -> anyhow::Result<(Duration, Duration)> {
            let g = Gen::new(ifindex)?;
            // Resolve the HA's MAC first.
            let _ = phase(&g, n + 100, 1, 1, Duration::from_secs(10));
            step(&format!(
                "phase 1: {n} new registrations (each after a 1 s DAD)"
            ));
            let t1 = phase(&g, 0, n, 1, Duration::from_secs(600))?;
            step(&format!("phase 2: {n} refreshes"));
            let t2 = phase(&g, 0, n, 2, Duration::from_secs(600))?;
            Ok((t1, t2))
        })??;
    let b: serde_json::Value = serde_json::from_str(&daemon.cli(&["stats", "--json"])?)?;
    println!();
    println!(
        "Binding Updates end to end (generator → XDP → daemon → BA), one daemon event loop, 2-core VM"
    );
    println!(
        "  {n} new mobile nodes registered in {:.2} s: {:.0} BU/s (includes one 1 s DAD, run concurrently)",
        t_new.as_secs_f64(),
        n as f64 / t_new.as_secs_f64()
    );
    println!(
        "  {n} refreshes in {:.2} s: {:.0} BU/s",
        t_refresh.as_secs_f64(),
        n as f64 / t_refresh.as_secs_f64()
    );
    println!("  daemon signalling counters: {}", b["signalling"]);
    drop(daemon);
    Ok(())
}
