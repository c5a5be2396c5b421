//! A small library for end-to-end tests in network namespaces, shared with `cargo xtask run`.
//!
//! Every object cleans up in `Drop` — also when a test panics — and namespace names are unique
//! per process and per object, so tests run in parallel without stepping on each other.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

pub mod flood;
pub mod packet;
pub mod roaming;
pub mod scapy;
pub mod topology;

/// Root-only tests start with `if !tests::require_root("name") { return; }`. Without root the
/// test fails (never a green skip): deselect such tests with `cargo test -- --skip NAME`.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    panic!(
        "{test} needs root (network namespaces, BPF) and was not run; run the tests as root \
         (CI does), or deselect it with `cargo test -- --skip {test}`"
    );
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A network namespace that is deleted (with every process still in it) when dropped.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `hat-<pid>-<n>-<label>` with `lo` up.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Self::named(&format!("hat-{}-{id}-{label}", std::process::id()))
    }

    /// Creates the namespace `name` (which must not exist) with `lo` up.
    pub fn named(name: &str) -> anyhow::Result<Self> {
        let name = name.to_string();
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        // Forwarding and no DAD delays: these are routers and hosts in a lab.
        ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
        ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle on an existing namespace that does NOT delete it when dropped.
    pub fn attach(name: &str) -> std::mem::ManuallyDrop<Self> {
        std::mem::ManuallyDrop::new(Self {
            name: name.to_string(),
        })
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args` inside the namespace; fails with its stderr if it fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        run(self.command(program).args(args))
    }

    /// Runs `ip args` in the namespace.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<Output> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// Runs `f` on a thread that has entered this namespace (for BPF_PROG_TEST_RUN, whose FIB
    /// lookups use the caller's namespace, and for netlink calls made in-process).
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let file = self.file()?;
        let handle = std::thread::spawn(move || {
            setns(&file)?;
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Moves the calling thread into this namespace until the guard is dropped (for work that
    /// needs one process's objects in several namespaces, e.g. attaching one eBPF object's
    /// programs on both ends of a topology).
    pub fn enter(&self) -> anyhow::Result<Entered> {
        let back = std::fs::File::open("/proc/thread-self/ns/net")?;
        setns(&self.file()?)?;
        Ok(Entered(back))
    }

    /// Runs `f` on a new thread that has entered this namespace, without waiting for it.
    pub fn spawn_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
        let file = self.file()?;
        Ok(std::thread::spawn(move || {
            setns(&file)?;
            f()
        }))
    }

    /// The namespace's file (`/run/netns/NAME`), for `setns`.
    fn file(&self) -> anyhow::Result<std::fs::File> {
        let path = format!("/run/netns/{}", self.name);
        std::fs::File::open(&path).with_context(|| format!("opening {path}"))
    }

    /// The interface index of `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> anyhow::Result<u32> {
        let out = self.exec("cat", &[&format!("/sys/class/net/{ifname}/ifindex")])?;
        Ok(String::from_utf8(out.stdout)?.trim().parse()?)
    }

    /// Starts `program args` in the namespace in the background; killed when dropped.
    pub fn spawn(&self, program: &str, args: &[&str], log: &Path) -> anyhow::Result<Background> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {program} in {}", self.name))?;
        Ok(Background {
            child: Some(child),
            what: format!("{program} in {}", self.name),
            log: log.to_path_buf(),
        })
    }

    /// Captures what `filter` matches on `iface` into `pcap` (tcpdump, unbuffered), and waits
    /// until it listens, so no packet sent after this returns is missed.
    pub fn tcpdump(&self, iface: &str, filter: &str, pcap: &Path) -> anyhow::Result<Background> {
        let log = pcap.with_extension("log");
        let pcap = pcap.to_str().context("pcap path")?;
        let mut t = self.spawn(
            "tcpdump",
            &["-i", iface, "-n", "-U", "-B", "65536", "-w", pcap, filter],
            &log,
        )?;
        wait_for("tcpdump to listen", Duration::from_secs(10), || {
            t.check_running()?;
            Ok(t.log().contains("listening on").then_some(()))
        })?;
        Ok(t)
    }
}

/// The fields tshark decodes from each packet of `pcap` (that `display_filter` keeps), one
/// row per packet, the first occurrence of each field.
pub fn tshark_fields(
    pcap: &Path,
    display_filter: Option<&str>,
    fields: &[&str],
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    if let Some(f) = display_filter {
        cmd.args(["-Y", f]);
    }
    cmd.args(["-T", "fields", "-E", "separator=;", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = run(&mut cmd)?;
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(|l| l.split(';').map(str::to_string).collect())
        .collect())
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what is still inside, then delete the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain syscall; the pid came from the kernel a moment ago.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// The namespace a thread was in before [`Netns::enter`]; dropping it goes back there.
pub struct Entered(std::fs::File);

impl Drop for Entered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.0) {
            if std::thread::panicking() {
                // Unwinding already: a second panic would abort; the thread is ending anyway.
                eprintln!("cannot return to the original namespace: {e:#}");
            } else {
                // Staying in a namespace about to be deleted would misdirect all later work.
                panic!("cannot return to the original namespace: {e:#}");
            }
        }
    }
}

/// Moves the calling thread into the network namespace `file` refers to.
fn setns(file: &std::fs::File) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setns on a namespace fd we hold; affects only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns failed: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A background process, terminated (SIGTERM, then SIGKILL after 5 s) when dropped.
pub struct Background {
    child: Option<Child>,
    what: String,
    log: PathBuf,
}

impl Background {
    /// No process (a placeholder).
    pub fn none() -> Self {
        Self {
            child: None,
            what: String::new(),
            log: PathBuf::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Lets the process outlive this handle (the interactive lab); returns its pid.
    pub fn detach(mut self) -> u32 {
        self.child.take().map(|c| c.id()).unwrap_or(0)
    }

    /// The process's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails if the process has already exited (with its log).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{} exited early ({status}); log:\n{}",
                self.what,
                self.log()
            );
        }
        Ok(())
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: plain syscall on our own child (not yet reaped: `child` is still held).
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// SIGKILL (a crash), and waits until it is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already reaped", self.what);
        };
        let _ = child.kill();
        child.wait()?;
        Ok(())
    }

    /// Waits (at most `timeout`) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already reaped", self.what);
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("{} still running after {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status (SIGKILL after `grace`).
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was already reaped", self.what);
        };
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait()?;
                bail!(
                    "{} ignored SIGTERM for {grace:?}; killed ({status})",
                    self.what
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate(Duration::from_secs(5));
        }
    }
}

/// Runs a command, returning its output, or an error with the command line and its stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Polls `f` until it returns `Ok(Some(_))` or `timeout` passes. For waiting on a state
/// (a socket answering, a counter moving), never for asserting a duration.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            match last_err {
                Some(e) => bail!("timed out after {timeout:?} waiting for {what}: {e:#}"),
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path to the `hagent` binary, built once per test process if needed (`HAGENT_BIN` overrides).
pub fn hagent_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("HAGENT_BIN") {
            return Ok(PathBuf::from(p));
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--quiet",
                "-p",
                "ha-userspace",
                "--bin",
                "hagent",
                "--message-format=json",
            ])
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run cargo build: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo build of hagent failed ({})", out.status));
        }
        // The last compiler-artifact line for the hagent binary names its path.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("\"executable\"") && l.contains("hagent"))
            .filter_map(|l| {
                let i = l.find("\"executable\":\"")? + "\"executable\":\"".len();
                let rest = &l[i..];
                Some(PathBuf::from(&rest[..rest.find('"')?]))
            })
            .next_back()
            .ok_or_else(|| "cargo did not report the hagent executable".to_string())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A private temporary directory removed on drop (logs, sockets, configs of one test).
pub struct TempDir(PathBuf);

impl TempDir {
    /// No directory (a placeholder; dropping it removes nothing).
    pub fn none() -> Self {
        Self(PathBuf::new())
    }

    pub fn new(label: &str) -> anyhow::Result<Self> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("hat-{}-{id}-{label}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prints a step heading (the lab and the benchmarks use it).
pub fn step(what: &str) {
    eprintln!("\x1b[1;34m==> {what}\x1b[0m");
}

/// Debugging aid: with `HAGENT_TEST_PAUSE=SECONDS`, prints the namespaces and waits, so the
/// state of a failing test can be inspected (`ip netns exec NAME ...`).
pub fn pause_if_asked(namespaces: &[&Netns]) {
    if let Some(secs) = std::env::var("HAGENT_TEST_PAUSE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        let names: Vec<&str> = namespaces.iter().map(|n| n.name()).collect();
        eprintln!("pausing {secs}s; namespaces: {}", names.join(" "));
        std::thread::sleep(Duration::from_secs(secs));
    }
}
