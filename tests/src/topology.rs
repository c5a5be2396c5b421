//! Building blocks for labs: veth links between namespaces and a running `hagent`.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context as _, bail};

use crate::{Background, Netns, TempDir, hagent_bin, run, wait_for};

/// Connects `a:a_if` and `b:b_if` with a veth pair and brings both ends up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> anyhow::Result<()> {
    run(Command::new("ip").args([
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]))?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Adds an address without duplicate address detection (the lab has no duplicates).
pub fn addr(ns: &Netns, ifname: &str, cidr: &str) -> anyhow::Result<()> {
    ns.ip(&["-6", "addr", "add", cidr, "dev", ifname, "nodad"])?;
    Ok(())
}

/// A `hagent run` inside a namespace, with its own control socket, instance name and run
/// directory; stopped (SIGTERM) when dropped, and whatever it left pinned removed.
pub struct Hagent {
    pub process: Background,
    pub socket: PathBuf,
    dir: TempDir,
    ns: String,
    args: Vec<String>,
    instance: String,
    run_dir: PathBuf,
    starts: u32,
    /// Whether dropping this removes the instance's pins.
    owns_pins: bool,
}

/// The bpffs the tests pin to: `ip netns exec` remounts /sys, hiding /sys/fs/bpf, so the
/// daemons get one mounted outside /sys (one per machine, kept).
pub fn test_bpffs() -> anyhow::Result<PathBuf> {
    static DIR: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from("/run/hagent-tests/bpffs");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if !hagent::instance::is_bpffs(&dir).unwrap_or(false) {
            run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&dir))
                .map_err(|e| format!("{e:#}"))?;
        }
        Ok(dir)
    })
    .clone()
    .map_err(|e| anyhow::anyhow!("mounting the tests' bpffs: {e}"))
}

/// A unique instance name (the process id and a counter).
fn instance_name() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

impl Hagent {
    /// Writes `config` (TOML) to a file and starts `hagent run` in `ns`, waiting until its
    /// control socket answers.
    pub fn start(ns: &Netns, config: &str) -> anyhow::Result<Self> {
        Self::start_with(ns, "hagent.toml", config)
    }

    /// Like [`start`](Self::start) with the configuration in a file called `file_name`
    /// (`.toml` is read as TOML, anything else as mip6d.conf).
    pub fn start_with(ns: &Netns, file_name: &str, config: &str) -> anyhow::Result<Self> {
        Self::start_args(ns, file_name, config, &[], None)
    }

    /// Like [`start_with`](Self::start_with), sharing `run_dir` (locks, ownership records)
    /// with another daemon, as instances on one machine do.
    pub fn start_shared(
        ns: &Netns,
        file_name: &str,
        config: &str,
        run_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let name = instance_name();
        Self::start_args(ns, file_name, config, &[], Some((&name, run_dir)))
    }

    /// Tries to start a second daemon as this one's instance (its lock must refuse it).
    pub fn start_same_instance(&self) -> anyhow::Result<Self> {
        let ns = Netns::attach(&self.ns);
        let config = std::fs::read_to_string(&self.args[2])?;
        let file = std::path::Path::new(&self.args[2])
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("hagent.toml")
            .to_string();
        Self::start_args(
            &ns,
            &file,
            &config,
            &[],
            Some((&self.instance, &self.run_dir())),
        )
    }

    /// Like [`start_with`](Self::start_with) with more `hagent run` arguments, and — when
    /// given — an instance name and run directory (another daemon's, to take over its state).
    pub fn start_args(
        ns: &Netns,
        file_name: &str,
        config: &str,
        extra: &[&str],
        shared: Option<(&str, &std::path::Path)>,
    ) -> anyhow::Result<Self> {
        let dir = TempDir::new("hagent")?;
        let config_path = dir.join(file_name);
        std::fs::write(&config_path, config)?;
        let socket = dir.join("hagent.sock");
        let (instance, run_dir) = match shared {
            Some((i, r)) => (i.to_string(), r.to_path_buf()),
            None => (instance_name(), dir.join("run")),
        };
        let mut args: Vec<String> = vec![
            "run".into(),
            "-c".into(),
            config_path.to_str().context("non-UTF-8 path")?.into(),
            "--socket".into(),
            socket.to_str().context("non-UTF-8 path")?.into(),
            "--instance".into(),
            instance.clone(),
            "--bpffs".into(),
            test_bpffs()?.to_str().context("non-UTF-8 path")?.into(),
            "--run-dir".into(),
            run_dir.to_str().context("non-UTF-8 path")?.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let bin = hagent_bin()?;
        let process = ns.spawn(
            bin.to_str().context("non-UTF-8 binary path")?,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &dir.join("hagent.log"),
        )?;
        let mut me = Self {
            process,
            socket,
            dir,
            ns: ns.name().to_string(),
            args,
            instance,
            run_dir,
            starts: 1,
            owns_pins: shared.is_none(),
        };
        if let Err(e) = me.wait_ready() {
            // Refused (or failed): it must not remove the pins of the instance it tried.
            me.owns_pins = false;
            return Err(e);
        }
        me.owns_pins = true;
        Ok(me)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let socket = self.socket.clone();
        let process = &mut self.process;
        // A daemon that exits (refusing to start) ends the wait at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            process.check_running()?;
            if std::time::Instant::now() > deadline {
                bail!("timed out after 20 s waiting for hagent's control socket");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_for("hagent to answer", Duration::from_secs(10), || {
            Ok(self.cli(&["stats", "--json"]).ok())
        })
        .map_err(|e| anyhow::anyhow!("{e:#}; log:\n{}", self.log()))?;
        Ok(())
    }

    /// Starts the daemon again (after [`kill`](Background::kill) or a hand-off) with the same
    /// configuration, instance and directories — `bin` instead of the tests' build when given
    /// (an upgrade) — and waits until it answers. Its log goes to `hagent.<n>.log`.
    pub fn restart(&mut self, bin: Option<&std::path::Path>) -> anyhow::Result<()> {
        self.starts += 1;
        let default = hagent_bin()?;
        let bin = bin.unwrap_or(&default);
        let ns = Netns::attach(&self.ns);
        self.process = ns.spawn(
            bin.to_str().context("non-UTF-8 binary path")?,
            &self.args.iter().map(String::as_str).collect::<Vec<_>>(),
            &self.dir.join(&format!("hagent.{}.log", self.starts)),
        )?;
        self.wait_ready()
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Where this instance pins its data plane.
    pub fn pin_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(test_bpffs()?.join("hagent").join(&self.instance))
    }

    /// The run directory (locks, ownership record).
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir.clone()
    }

    /// Runs a `hagent` client command against this daemon's socket; returns stdout.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = run(Command::new(hagent_bin()?)
            .args(args)
            .arg("--socket")
            .arg(&self.socket))?;
        Ok(String::from_utf8(out.stdout)?)
    }

    /// `hagent stats --json`, parsed.
    pub fn stats(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.cli(&["stats", "--json"])?)?)
    }

    /// The packet count of the named global counter.
    pub fn counter(&self, name: &str) -> anyhow::Result<u64> {
        let stats = self.stats()?;
        let Some(counters) = stats["counters"].as_array() else {
            bail!("no counters in {stats}");
        };
        counters
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["packets"].as_u64())
            .with_context(|| format!("no counter {name} in {stats}"))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Leaves the daemon running after this handle is dropped (the interactive lab); returns
    /// its pid. Its directory (config, socket, log) stays too.
    pub fn detach(mut self) -> u32 {
        let process = std::mem::replace(&mut self.process, Background::none());
        let dir = std::mem::replace(&mut self.dir, TempDir::none());
        std::mem::forget(dir);
        self.instance.clear();
        process.detach()
    }

    /// The daemon's directory (configuration, socket, log).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the daemon with SIGTERM and returns its exit status.
    pub fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.process.terminate(Duration::from_secs(10))
    }
}

impl Drop for Hagent {
    fn drop(&mut self) {
        if self.instance.is_empty() {
            return; // detached: the lab keeps it
        }
        let _ = self.process.terminate(Duration::from_secs(10));
        if !self.owns_pins {
            return;
        }
        // A test that killed the daemon leaves its pins: remove them (maps are large).
        if let Ok(dir) = self.pin_dir() {
            let _ = hagent::dataplane::remove_pins(&dir);
        }
    }
}

/// The HA's configuration for the seed lab (TOML).
pub fn ha_config(xdp_mode: &str) -> String {
    format!(
        "role = \"home_agent\"\n\n[home_agent]\naddresses = [\"{}\"]\n\n[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"{xdp_mode}\"\nmax_bindings = 1024\nmax_prefixes = 64\n",
        seed::HA
    )
}

/// The MN's configuration for the seed lab (TOML).
pub fn mn_config(xdp_mode: &str) -> String {
    format!(
        "role = \"mobile_node\"\n\n[mobile_node]\nhome_address = \"{}\"\nhome_agent = \"{}\"\n\n[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"{xdp_mode}\"\nmax_bindings = 16\nmax_prefixes = 16\n",
        seed::HOA,
        seed::HA
    )
}

/// The seed talk's HA mip6d.conf, as printed (see `tests/fixtures/README.md`), with the typo
/// fixed and IPsec off — the only changes this kernel (no ESP) needs.
pub fn seed_ha_mip6d_conf() -> String {
    include_str!("../fixtures/seed-ha-mip6d.conf")
        .replace("coo1", "c001")
        .replace("UseMnHaIPsec\u{a0}enabled", "UseMnHaIPsec\u{a0}disabled")
}

/// Addresses of the seed talk's lab.
pub mod seed {
    pub const HOME_PREFIX: &str = "2001:db8:bee5::/64";
    pub const FOREIGN_PREFIX: &str = "2001:db8:f00d::/64";
    pub const CN_PREFIX: &str = "2001:db8:cafe::/64";
    pub const HA: &str = "2001:db8:bee5::c001:babe";
    pub const HOA: &str = "2001:db8:bee5::dead:face";
    pub const COA: &str = "2001:db8:f00d::dead:face";
    pub const CN: &str = "2001:db8:cafe::c0de:f001";
    pub const ROUTER_HOME: &str = "2001:db8:bee5::1";
    pub const ROUTER_FOREIGN: &str = "2001:db8:f00d::1";
    pub const ROUTER_CN: &str = "2001:db8:cafe::1";
}

/// The seed's topology: a router joining the home link, a foreign link and the
/// correspondent's link; the HA on the home link, the MN on the foreign link (at its CoA), the
/// CN on its link. Every host's interface is `eth0`; the router's are `home0`, `foreign0`,
/// `cafe0`.
pub struct SeedLab {
    pub router: Netns,
    pub ha: Netns,
    pub mn: Netns,
    pub cn: Netns,
    /// XDP_PASS programs on the router's interfaces: a veth end receives frames that the
    /// other end's XDP program transmits (XDP_TX) only when it runs XDP itself; otherwise they
    /// wait until unrelated traffic wakes it. Real NICs need no such thing.
    _router_xdp: Option<hagent::dataplane::Dataplane>,
}

impl SeedLab {
    /// The seed lab as the tests use it: XDP_PASS on the router's veth ends.
    pub fn new() -> anyhow::Result<Self> {
        Self::build(true)
    }

    /// The seed lab as a user builds it: plain veth pairs, no XDP on the router.
    pub fn plain() -> anyhow::Result<Self> {
        Self::build(false)
    }

    /// The MN as a static binding's end: its HoA on loopback (applications bind to it), its
    /// packets sized for the tunnel.
    pub fn mn_keeps_hoa_on_lo(&self) -> anyhow::Result<()> {
        self.mn.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/128", seed::HOA),
            "dev",
            "lo",
        ])?;
        self.mn.ip(&[
            "-6",
            "route",
            "replace",
            "default",
            "via",
            seed::ROUTER_FOREIGN,
            "dev",
            "eth0",
            "mtu",
            "1460",
        ])?;
        Ok(())
    }

    fn build(router_xdp: bool) -> anyhow::Result<Self> {
        let mut lab = Self {
            router: Netns::new("router")?,
            ha: Netns::new("ha")?,
            mn: Netns::new("mn")?,
            cn: Netns::new("cn")?,
            _router_xdp: None,
        };
        lab.router.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        lab.ha.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        for (host, router_if, router_addr, host_addr) in [
            (&lab.ha, "home0", seed::ROUTER_HOME, seed::HA),
            (&lab.mn, "foreign0", seed::ROUTER_FOREIGN, seed::COA),
            (&lab.cn, "cafe0", seed::ROUTER_CN, seed::CN),
        ] {
            veth(&lab.router, router_if, host, "eth0")?;
            addr(&lab.router, router_if, &format!("{router_addr}/64"))?;
            addr(host, "eth0", &format!("{host_addr}/64"))?;
            host.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                router_addr,
                "dev",
                "eth0",
            ])?;
            // Frames that XDP transmits lose CHECKSUM_PARTIAL: generate full checksums. No
            // software GSO/GRO, so (generic) XDP and TC see wire-sized packets, and the tests
            // can count what the router forwards.
            host.exec(
                "ethtool",
                &["-K", "eth0", "tx", "off", "gso", "off", "gro", "off"],
            )?;
            lab.router.exec(
                "ethtool",
                &["-K", router_if, "tx", "off", "gso", "off", "gro", "off"],
            )?;
        }
        if !router_xdp {
            return Ok(lab);
        }
        let ifindexes = ["home0", "foreign0", "cafe0"]
            .iter()
            .map(|i| lab.router.ifindex(i))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dp = lab.router.run_in(move || -> anyhow::Result<_> {
            let mut dp =
                hagent::dataplane::Dataplane::load(&hagent::dataplane::DataplaneOptions {
                    max_bindings: 1,
                    max_prefixes: 1,
                    ..Default::default()
                })?;
            for i in ifindexes {
                dp.attach_reference(ha_common::programs::XDP_PASS, i)?;
            }
            Ok(dp)
        })??;
        lab._router_xdp = Some(dp);
        Ok(lab)
    }
}

/// Addresses of the roaming lab (the seed's, plus a second foreign link).
pub mod roaming {
    pub const FOREIGN_B_PREFIX: &str = "2001:db8:f00e::/64";
    pub const ROUTER_B: &str = "2001:db8:f00e::1";
    pub const COA_B: &str = "2001:db8:f00e::dead:face";
}

/// Where the mobile node of a [`RoamingLab`] is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Home,
    ForeignA,
    ForeignB,
}

impl Link {
    pub fn name(self) -> &'static str {
        match self {
            Link::Home => "home link",
            Link::ForeignA => "foreign link A",
            Link::ForeignB => "foreign link B",
        }
    }
}

/// The seed's story with a mobile node that moves: the home link is a bridge in the router
/// namespace joining the router, the HA and the MN's `home0`; the MN also has `fa0` (foreign
/// link A, 2001:db8:f00d::/64) and `fb0` (foreign link B, 2001:db8:f00e::/64). One of its three
/// interfaces is up at a time; its addresses stay configured (`keep_addr_on_down`), so moving
/// is a link change plus the default route an RA would give, which is what the MN's movement
/// detection watches.
pub struct RoamingLab {
    pub router: Netns,
    pub ha: Netns,
    pub mn: Netns,
    pub cn: Netns,
    _router_xdp: Option<hagent::dataplane::Dataplane>,
    _pins: Option<PinDir>,
}

/// Where a named lab pins its router's XDP links, so they outlive the process that made the
/// lab (`cargo xtask run --interactive`); removed on drop unless the lab is kept.
pub const LAB_PIN_DIR: &str = "/sys/fs/bpf/hagent-lab";

/// A bpffs directory of pinned links, removed (links detached) when dropped.
pub struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl RoamingLab {
    pub fn new() -> anyhow::Result<Self> {
        Self::build(
            Netns::new("router")?,
            Netns::new("ha")?,
            Netns::new("mn")?,
            Netns::new("cn")?,
        )
    }

    /// The lab in namespaces `<prefix>-router`, `-ha`, `-mn`, `-cn` (for `cargo xtask run`).
    /// The lab under fixed names, its router's XDP links pinned under [`LAB_PIN_DIR`].
    pub fn named(prefix: &str) -> anyhow::Result<Self> {
        let pins = PathBuf::from(LAB_PIN_DIR);
        let _ = std::fs::remove_dir_all(&pins);
        std::fs::create_dir_all(&pins)
            .with_context(|| format!("creating {} (is bpffs mounted?)", pins.display()))?;
        let pins = PinDir(pins);
        Self::build_pinned(
            Netns::named(&format!("{prefix}-router"))?,
            Netns::named(&format!("{prefix}-ha"))?,
            Netns::named(&format!("{prefix}-mn"))?,
            Netns::named(&format!("{prefix}-cn"))?,
            Some(pins),
        )
    }

    /// Keeps the namespaces after this value is dropped (the interactive lab).
    pub fn keep(self) {
        for ns in [self.router, self.ha, self.mn, self.cn] {
            std::mem::forget(ns);
        }
        std::mem::forget(self._router_xdp);
        std::mem::forget(self._pins);
    }

    fn build(router: Netns, ha: Netns, mn: Netns, cn: Netns) -> anyhow::Result<Self> {
        Self::build_pinned(router, ha, mn, cn, None)
    }

    fn build_pinned(
        router: Netns,
        ha: Netns,
        mn: Netns,
        cn: Netns,
        pins: Option<PinDir>,
    ) -> anyhow::Result<Self> {
        let pin_dir = pins.as_ref().map(|p| p.0.clone());
        let mut lab = Self {
            router,
            ha,
            mn,
            cn,
            _router_xdp: None,
            _pins: pins,
        };
        let r = &lab.router;
        r.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        lab.ha.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        // Home link: a bridge in the router's namespace.
        r.ip(&["link", "add", "br-home", "type", "bridge"])?;
        r.ip(&["link", "set", "br-home", "up"])?;
        addr(r, "br-home", &format!("{}/64", seed::ROUTER_HOME))?;
        veth(r, "p-ha", &lab.ha, "eth0")?;
        veth(r, "p-mn", &lab.mn, "home0")?;
        for p in ["p-ha", "p-mn"] {
            r.ip(&["link", "set", p, "master", "br-home"])?;
        }
        addr(&lab.ha, "eth0", &format!("{}/64", seed::HA))?;
        lab.ha.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            seed::ROUTER_HOME,
            "dev",
            "eth0",
        ])?;
        // Foreign links and the correspondent's.
        veth(r, "fa", &lab.mn, "fa0")?;
        veth(r, "fb", &lab.mn, "fb0")?;
        veth(r, "cafe0", &lab.cn, "eth0")?;
        addr(r, "fa", &format!("{}/64", seed::ROUTER_FOREIGN))?;
        addr(r, "fb", &format!("{}/64", roaming::ROUTER_B))?;
        addr(r, "cafe0", &format!("{}/64", seed::ROUTER_CN))?;
        addr(&lab.cn, "eth0", &format!("{}/64", seed::CN))?;
        lab.cn.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            seed::ROUTER_CN,
            "dev",
            "eth0",
        ])?;
        // The MN: every address configured, kept while its link is down.
        for i in ["home0", "fa0", "fb0"] {
            lab.mn
                .sysctl(&format!("net.ipv6.conf.{i}.keep_addr_on_down"), "1")?;
        }
        addr(&lab.mn, "home0", &format!("{}/64", seed::HOA))?;
        addr(&lab.mn, "fa0", &format!("{}/64", seed::COA))?;
        addr(&lab.mn, "fb0", &format!("{}/64", roaming::COA_B))?;
        for (ns, ifs) in [
            (&lab.ha, &["eth0"][..]),
            (&lab.mn, &["home0", "fa0", "fb0"][..]),
            (&lab.cn, &["eth0"][..]),
        ] {
            for i in ifs {
                ns.exec(
                    "ethtool",
                    &["-K", i, "tx", "off", "gso", "off", "gro", "off"],
                )?;
            }
        }
        for i in ["p-ha", "p-mn", "fa", "fb", "cafe0"] {
            r.exec(
                "ethtool",
                &["-K", i, "tx", "off", "gso", "off", "gro", "off"],
            )?;
        }
        let ifindexes = ["p-ha", "p-mn", "fa", "fb", "cafe0"]
            .iter()
            .map(|i| Ok((*i, r.ifindex(i)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dp = r.run_in(move || -> anyhow::Result<_> {
            let mut dp =
                hagent::dataplane::Dataplane::load(&hagent::dataplane::DataplaneOptions {
                    max_bindings: 1,
                    max_prefixes: 1,
                    ..Default::default()
                })?;
            for (name, i) in ifindexes {
                match &pin_dir {
                    Some(d) => dp.attach_reference_pinned(
                        ha_common::programs::XDP_PASS,
                        i,
                        &d.join(format!("xdp-pass-{name}")),
                    )?,
                    None => dp.attach_reference(ha_common::programs::XDP_PASS, i)?,
                }
            }
            Ok(dp)
        })??;
        lab._router_xdp = Some(dp);
        lab.attach(Link::Home)?;
        Ok(lab)
    }

    /// Moves the MN to `link`: the old links go down, the new one comes up with the default
    /// route a router advertisement would install (MTU for the tunnel when away).
    pub fn attach(&self, link: Link) -> anyhow::Result<()> {
        let (iface, gw, mtu) = match link {
            Link::Home => ("home0", seed::ROUTER_HOME, "1500"),
            Link::ForeignA => ("fa0", seed::ROUTER_FOREIGN, "1460"),
            Link::ForeignB => ("fb0", roaming::ROUTER_B, "1460"),
        };
        for i in ["home0", "fa0", "fb0"] {
            if i != iface {
                self.mn.ip(&["link", "set", i, "down"])?;
            }
        }
        self.mn.ip(&["link", "set", iface, "up"])?;
        self.mn.ip(&[
            "-6", "route", "replace", "default", "via", gw, "dev", iface, "mtu", mtu,
        ])?;
        Ok(())
    }
}

/// The mobile node's mip6d.conf for the roaming lab: the seed talk's MN configuration with
/// this lab's interface names, the typo fixed and IPsec off.
pub fn roaming_mn_mip6d_conf() -> String {
    format!(
        "NodeConfig MN;\nDebugLevel 3;\n# the mobile node's links: home, foreign A, foreign B\nInterface \"home0\" {{\n  MnIfPreference 1;\n}}\nInterface \"fa0\";\nInterface \"fb0\";\nMnHomeLink \"home0\" {{\n  HomeAgentAddress {};\n  HomeAddress {}/64;\n}}\nMnMaxHaBindingLife 600;\nUseMnHaIPsec disabled;\nKeyMngMobCapability disabled;\n",
        seed::HA,
        seed::HOA
    )
}

/// The mobile node's configuration for the roaming lab (TOML).
pub fn roaming_mn_config(xdp_mode: &str) -> String {
    format!(
        "role = \"mobile_node\"\n\n[mobile_node]\nhome_address = \"{}\"\nhome_prefix_len = 64\nhome_agent = \"{}\"\nhome_interface = \"home0\"\nbinding_lifetime = 600\n\n[dataplane]\ninterfaces = [\"home0\", \"fa0\", \"fb0\"]\nxdp_mode = \"{xdp_mode}\"\nmax_bindings = 16\nmax_prefixes = 16\n",
        seed::HOA,
        seed::HA
    )
}

/// A namespace for BPF_PROG_TEST_RUN (tests and benchmarks): `ha0` (02:00:00:00:00:01, the
/// HA's interface and the ingress of every run, 2001:db8:bee5::c001:babe/64) paired with
/// `peer0` (02:00:00:00:00:02); two routers on the home link as `nud permanent` neighbours
/// (2001:db8:bee5::1 = 02:..:aa, ::2 = 02:..:bb); routes to the foreign, CN and MNP-CoA
/// prefixes via the first, and one care-of prefix (2001:db8:f00e::/64) behind a locked
/// 1300-byte MTU (the FIB helper honours a route MTU only when it is locked). Returns the
/// namespace and `ha0`'s ifindex.
pub fn forwarding_namespace(label: &str) -> anyhow::Result<(Netns, u32)> {
    let ns = Netns::new(label)?;
    ns.ip(&[
        "link",
        "add",
        "ha0",
        "address",
        "02:00:00:00:00:01",
        "type",
        "veth",
        "peer",
        "name",
        "peer0",
        "address",
        "02:00:00:00:00:02",
    ])?;
    ns.ip(&["link", "set", "ha0", "up"])?;
    ns.ip(&["link", "set", "peer0", "up"])?;
    ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    addr(&ns, "ha0", "2001:db8:bee5::c001:babe/64")?;
    for (gw, mac) in [
        ("2001:db8:bee5::1", "02:00:00:00:00:aa"),
        ("2001:db8:bee5::2", "02:00:00:00:00:bb"),
    ] {
        ns.ip(&[
            "-6",
            "neigh",
            "replace",
            gw,
            "lladdr",
            mac,
            "nud",
            "permanent",
            "dev",
            "ha0",
        ])?;
    }
    for prefix in [
        "2001:db8:f00d::/64",
        "2001:db8:cafe::/64",
        "2001:db8:f00f::/64",
    ] {
        ns.ip(&[
            "-6",
            "route",
            "add",
            prefix,
            "via",
            "2001:db8:bee5::1",
            "dev",
            "ha0",
        ])?;
    }
    ns.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:f00e::/64",
        "via",
        "2001:db8:bee5::1",
        "dev",
        "ha0",
        "mtu",
        "lock",
        "1300",
    ])?;
    let ifindex = ns.ifindex("ha0")?;
    Ok((ns, ifindex))
}
