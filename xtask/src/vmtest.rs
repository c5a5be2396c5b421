//! `cargo xtask vmtest`: runs a shell script inside Debian's own cloud kernel under qemu.
//!
//! Why a VM at all: the host kernel has no ESP, no `CONFIG_IPV6_MIP6` and no ip6tnl, so
//! `ip xfrm state add ... proto esp` fails there with "Requested type not found". Debian's
//! `linux-image-cloud-amd64` has all three and boots under qemu's TCG in about two seconds
//! (KVM does not work on these machines). The guest is hermetic: everything the test needs is
//! packed into the initramfs (the cloud kernel has no 9p to share host files).
//!
//! In the guest, `/bin/sh` is dash and busybox provides the other tools. Debian's busybox runs
//! its own applets in preference to anything on PATH, so under busybox's shell `ip` would be
//! busybox's `ip` (no netns, no xfrm) even with iproute2 installed. Under dash, `ip` is
//! iproute2. Busybox applets that exec a command (`env`, `timeout`, `xargs`, `nsenter`,
//! `chroot`, `setsid`) still prefer busybox's `ip`: call `/usr/sbin/ip` through them.
//!
//! std and anyhow only, so the module also builds outside the workspace.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Where `ensure_assets` keeps the extracted kernel when the caller has no better place.
pub const DEFAULT_CACHE: &str = "/var/cache/hagent-vmtest";

/// Host packages the VM tier drives. iproute2 is always there on Debian, but its `ip` is what
/// the guest runs, so a missing one is installed like the rest.
const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "iproute2",
];

/// The metapackage whose dependency names the current kernel ABI. Resolving it (rather than
/// globbing `linux-image-*-cloud-amd64`) picks exactly one package, not a dozen old ABIs.
const KERNEL_META: &str = "linux-image-cloud-amd64";

/// Loaded before any `esp*` module. In a minimal initramfs nothing autoloads the RNG stack, and
/// without it creating an ESP state fails with "Kernel was unable to initialize cryptographic
/// operations". The AEAD templates cover AES-GCM as well as cbc(aes)+hmac(sha256). `ctr` goes
/// before `drbg`: drbg's self-tests of its ctr(aes) variants fail ("alg: drbg: Failed to reset
/// rng") when the template is not there yet.
const ESP_CRYPTO_MODULES: &[&str] = &[
    "sha512_generic",
    "sha3_generic",
    "ctr",
    "jitterentropy_rng",
    "drbg",
    "authenc",
    "echainiv",
    "seqiv",
    "ghash-generic",
    "gcm",
];

/// The reference command line: TCG because `/dev/kvm` here is PVM-only and hangs the guest.
const QEMU: &str = "qemu-system-x86_64";
const QEMU_ARGS: &[&str] = &[
    "-accel",
    "tcg",
    "-cpu",
    "max",
    "-smp",
    "1",
    "-m",
    "1024",
    "-nographic",
    "-no-reboot",
];
/// `panic=-1` plus `-no-reboot` makes a dying init end qemu instead of hanging until timeout.
const KERNEL_APPEND: &str = "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off";

/// The line `init.sh` prints with the test script's exit status.
const MARKER: &str = "GUEST-RC=";

const INIT_SH: &str = include_str!("../vm/init.sh");
const SMOKE_SH: &str = include_str!("../vm/smoke.sh");

/// Used only when the host has no `/etc/protocols` (netbase): without the file iproute2
/// rejects protocol names such as `ipv6-icmp`.
const FALLBACK_PROTOCOLS: &str = "ip 0 IP\nicmp 1 ICMP\ntcp 6 TCP\nudp 17 UDP\nipv6 41 IPv6\n\
ipv6-route 43 IPv6-Route\nipv6-frag 44 IPv6-Frag\ngre 47 GRE\nesp 50 IPv6-Crypt\n\
ah 51 IPv6-Auth\nipv6-icmp 58 IPv6-ICMP\nipv6-nonxt 59 IPv6-NoNxt\nipv6-opts 60 IPv6-Opts\n\
mobility-header 135 Mobility-Header\n";

/// What `ensure_assets` prepared: a kernel and the module tree that matches it.
#[derive(Debug, Clone)]
pub struct Assets {
    /// The kernel image passed to qemu's `-kernel`.
    pub vmlinuz: PathBuf,
    /// The extracted package root: what `depmod -b` and `modprobe -d` take; the modules live in
    /// `<module_root>/lib/modules/<kernel_version>`.
    pub module_root: PathBuf,
    /// `uname -r` of the guest, e.g. `6.1.0-56-cloud-amd64`.
    pub kernel_version: String,
}

/// One guest run.
#[derive(Debug, Clone)]
pub struct VmTest {
    /// Names the work subdirectory (`<work>/<name>`); letters, digits, `-`, `_`, `.` only.
    pub name: String,
    /// Host executables, installed as `/usr/local/bin/<file name>` (first on the guest's PATH)
    /// with the shared libraries `ldd` finds, at the same paths as on the host.
    pub binaries: Vec<PathBuf>,
    /// Extra files or directories (copied recursively): host path, absolute guest path.
    pub files: Vec<(PathBuf, String)>,
    /// Kernel modules to load before the script, by name; their dependencies come along.
    pub modules: Vec<String>,
    /// Run with `sh -e` (dash) in `/tmp`, with proc, sys, devtmpfs, bpffs and debugfs mounted.
    pub script: String,
    /// Wall time from qemu's start after which qemu is killed.
    pub timeout: Duration,
}

/// How a guest run ended.
#[derive(Debug, Clone)]
pub struct GuestOutcome {
    /// The script exited 0 and the VM powered off before the timeout.
    pub passed: bool,
    /// The script's exit status; 125 when a module failed to load; -1 when no marker line
    /// came (kernel panic, timeout).
    pub exit_code: i32,
    /// The serial console without `\r` and escape codes; qemu's stderr follows, when it
    /// printed anything, after a `--- qemu stderr ---` line.
    pub console: String,
    /// From qemu's start to its exit (or to its kill on timeout).
    pub elapsed: Duration,
    /// qemu was killed because `timeout` passed.
    pub timed_out: bool,
}

impl GuestOutcome {
    /// The last `n` lines of the console, for error messages.
    pub fn console_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Installs the host tools and fetches Debian's current cloud kernel into `cache`.
///
/// Idempotent and silent when everything is in place. The kernel package is unpacked with
/// `dpkg -x` (no install hooks touch the host) into `<cache>/<package>`, which appears only
/// once complete, so an interrupted run is simply redone.
pub fn ensure_assets(cache: &Path) -> anyhow::Result<Assets> {
    let mut updated = false;
    let missing = missing_packages();
    if !missing.is_empty() {
        eprintln!("vmtest: installing Debian packages: {}", missing.join(" "));
        apt_update()?;
        updated = true;
        // May replace a newer preinstalled qemu-utils with bookworm's: that is fine.
        run_cmd(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing),
        )?;
    }

    // apt-cache reads the local lists only; they may be missing or stale on a fresh machine.
    let package = match kernel_package() {
        Ok(p) => p,
        Err(_) if !updated => {
            apt_update()?;
            kernel_package()?
        }
        Err(e) => return Err(e),
    };
    let kernel_version = package
        .strip_prefix("linux-image-")
        .context("kernel package name without linux-image- prefix")?
        .to_string();
    let module_root = cache.join(&package);
    let assets = Assets {
        vmlinuz: module_root.join(format!("boot/vmlinuz-{kernel_version}")),
        module_root: module_root.clone(),
        kernel_version: kernel_version.clone(),
    };
    let modules_dep = module_root.join(format!("lib/modules/{kernel_version}/modules.dep"));
    if assets.vmlinuz.is_file() && modules_dep.is_file() {
        return Ok(assets);
    }

    eprintln!("vmtest: fetching {package} into {}", cache.display());
    fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let partial = cache.join(format!(".{package}.partial-{}", std::process::id()));
    remove_if_exists(&partial)?;
    fs::create_dir(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    // Sandbox user root: otherwise apt warns that `_apt` cannot write into a root-owned cache.
    run_quiet(Command::new("apt-get").current_dir(&partial).args([
        "-q",
        "-o",
        "APT::Sandbox::User=root",
        "download",
        &package,
    ]))?;
    let deb = fs::read_dir(&partial)
        .with_context(|| format!("cannot read {}", partial.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("`apt-get download {package}` left no .deb"))?;
    let root = partial.join("root");
    run_cmd(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    // The .deb ships no modules.dep; modprobe needs it to list dependencies.
    run_cmd(
        Command::new("depmod")
            .arg("-b")
            .arg(&root)
            .arg(&kernel_version),
    )?;
    if !root
        .join(format!("boot/vmlinuz-{kernel_version}"))
        .is_file()
    {
        bail!("{package} has no boot/vmlinuz-{kernel_version}");
    }
    remove_if_exists(&module_root)?;
    fs::rename(&root, &module_root).with_context(|| {
        format!(
            "cannot rename {} to {}",
            root.display(),
            module_root.display()
        )
    })?;
    remove_if_exists(&partial)?;
    Ok(assets)
}

/// Builds `<work>/<name>/initramfs.cpio.gz` for `t`, boots it and reports how the script
/// ended. An `Err` means the run itself could not happen (a host command failed, qemu could
/// not start); a failing script is `Ok` with `passed: false`.
pub fn run(assets: &Assets, t: &VmTest, work: &Path) -> anyhow::Result<GuestOutcome> {
    if t.name.is_empty()
        || t.name.starts_with('.')
        || !t
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("vmtest name {:?} is not a plain file name", t.name);
    }
    let dir = work.join(&t.name);
    let initrd = build_initramfs(assets, t, &dir)?;
    boot(assets, &initrd, t.timeout)
}

/// ESP transport mode between two namespaces inside the guest, with the SA counters checked.
/// Proves the whole tier works on this machine; prints where the time went.
pub fn smoke() -> anyhow::Result<()> {
    let start = Instant::now();
    let assets = ensure_assets(Path::new(DEFAULT_CACHE))?;
    let assets_time = start.elapsed();
    let test = VmTest {
        name: "smoke".into(),
        binaries: Vec::new(),
        files: Vec::new(),
        modules: ["veth", "xfrm_user", "esp6"].map(String::from).to_vec(),
        script: SMOKE_SH.into(),
        timeout: Duration::from_secs(120),
    };
    let work = std::env::temp_dir().join("hagent-vmtest");
    let run_start = Instant::now();
    let out = run(&assets, &test, &work)?;
    let run_time = run_start.elapsed();
    if !out.passed {
        bail!(
            "vmtest smoke failed (GUEST-RC={}, timed out: {}); console tail:\n{}",
            out.exit_code,
            out.timed_out,
            out.console_tail(60)
        );
    }
    eprintln!(
        "vmtest smoke: passed on {} in {:.1} s (assets {:.1} s, initramfs {:.1} s, qemu {:.1} s)",
        assets.kernel_version,
        start.elapsed().as_secs_f64(),
        assets_time.as_secs_f64(),
        (run_time.saturating_sub(out.elapsed)).as_secs_f64(),
        out.elapsed.as_secs_f64()
    );
    Ok(())
}

/// `VMTEST_VERBOSE=1` streams the serial console to stderr while the guest runs.
fn verbose() -> bool {
    std::env::var_os("VMTEST_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0")
}

fn missing_packages() -> Vec<&'static str> {
    HOST_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !matches!(out, Ok(o) if o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn apt_update() -> anyhow::Result<()> {
    run_cmd(Command::new("apt-get").args(["update", "-q"]))
}

/// `linux-image-6.1.0-N-cloud-amd64`, the package `linux-image-cloud-amd64` depends on.
fn kernel_package() -> anyhow::Result<String> {
    let mut cmd = Command::new("apt-cache");
    cmd.args(["depends", KERNEL_META]);
    let out = output(&mut cmd)?;
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|d| d.trim().trim_matches(|c| c == '<' || c == '>'))
        .find(|d| d.starts_with("linux-image-") && d.ends_with("-cloud-amd64") && *d != KERNEL_META)
        .map(String::from)
        .with_context(|| format!("`{}` names no linux-image-*-cloud-amd64", show(&cmd)))
}

/// The initramfs tree being assembled, keyed by guest path so that a library shared by several
/// binaries, or a real binary and a busybox applet of the same name, is placed once.
struct Stage {
    root: PathBuf,
    placed: HashSet<String>,
}

impl Stage {
    fn host_path(&self, guest: &str) -> anyhow::Result<PathBuf> {
        if !guest.starts_with('/') || guest.split('/').any(|c| c == "..") {
            bail!("guest path {guest:?} must be absolute and without `..`");
        }
        Ok(self.root.join(guest.trim_start_matches('/')))
    }

    /// Reserves `guest` and creates its parent directory; `None` when the path is already taken.
    fn claim(&mut self, guest: &str) -> anyhow::Result<Option<PathBuf>> {
        if !self.placed.insert(guest.to_string()) {
            return Ok(None);
        }
        let dst = self.host_path(guest)?;
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        Ok(Some(dst))
    }

    fn dir(&mut self, guest: &str) -> anyhow::Result<()> {
        let dst = self.host_path(guest)?;
        fs::create_dir_all(&dst).with_context(|| format!("cannot create {}", dst.display()))
    }

    /// Copies a file's content (following symlinks) and permissions.
    fn copy(&mut self, host: &Path, guest: &str) -> anyhow::Result<()> {
        if let Some(dst) = self.claim(guest)? {
            fs::copy(host, &dst)
                .with_context(|| format!("cannot copy {} to {}", host.display(), dst.display()))?;
        }
        Ok(())
    }

    fn write(&mut self, guest: &str, content: &str, mode: u32) -> anyhow::Result<()> {
        if let Some(dst) = self.claim(guest)? {
            fs::write(&dst, content)
                .and_then(|()| fs::set_permissions(&dst, fs::Permissions::from_mode(mode)))
                .with_context(|| format!("cannot write {}", dst.display()))?;
        }
        Ok(())
    }

    fn symlink(&mut self, target: &str, guest: &str) -> anyhow::Result<()> {
        if let Some(dst) = self.claim(guest)? {
            std::os::unix::fs::symlink(target, &dst)
                .with_context(|| format!("cannot create symlink {}", dst.display()))?;
        }
        Ok(())
    }

    /// A file, or a directory copied recursively (symlinks inside are followed).
    fn tree(&mut self, host: &Path, guest: &str) -> anyhow::Result<()> {
        let meta = fs::metadata(host).with_context(|| format!("cannot stat {}", host.display()))?;
        if !meta.is_dir() {
            return self.copy(host, guest);
        }
        self.dir(guest)?;
        let mut entries: Vec<_> = fs::read_dir(host)
            .with_context(|| format!("cannot read {}", host.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read {}", host.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let child = format!("{}/{}", guest.trim_end_matches('/'), name.to_string_lossy());
            self.tree(&e.path(), &child)?;
        }
        Ok(())
    }

    /// An executable plus every shared library and the dynamic loader `ldd` resolves for it,
    /// each at the path `ldd` prints: the guest's loader has no ld.so.cache and finds them in
    /// its built-in search path (or the binary's rpath), just where the host has them.
    fn executable(&mut self, host: &Path, guest: &str) -> anyhow::Result<()> {
        self.copy(host, guest)?;
        for lib in shared_libraries(host)? {
            let g = lib.to_str().context("non-UTF-8 library path")?.to_string();
            self.copy(&lib, &g)?;
        }
        Ok(())
    }
}

/// The libraries `ldd` lists for `bin`; empty for a static executable.
fn shared_libraries(bin: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut cmd = Command::new("ldd");
    cmd.arg(bin);
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", show(&cmd)))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!("`{}` failed ({}): {}", show(&cmd), out.status, text.trim());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            bail!("`{}`: {line}", show(&cmd));
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)";
        // linux-vdso has no path.
        let path = line.split_once("=> ").map_or(line, |(_, p)| p);
        let path = path.split(" (0x").next().unwrap_or("").trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// `.ko` files to insmod, dependencies first, de-duplicated across `names`. Built-in modules
/// (`builtin X` in modprobe's answer) need nothing.
fn module_files(assets: &Assets, names: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut wanted: Vec<&str> = Vec::new();
    if names.iter().any(|n| n.starts_with("esp")) {
        wanted.extend(ESP_CRYPTO_MODULES);
    }
    wanted.extend(names.iter().map(String::as_str));
    let mut files: Vec<PathBuf> = Vec::new();
    for name in wanted {
        let mut cmd = Command::new("modprobe");
        cmd.arg("-d").arg(&assets.module_root).args([
            "-S",
            &assets.kernel_version,
            "--show-depends",
            name,
        ]);
        for line in output(&mut cmd)?.lines() {
            let Some(rest) = line.trim().strip_prefix("insmod ") else {
                continue;
            };
            // Module parameters, if any, follow the path.
            let path = match rest.find(".ko ") {
                Some(i) => &rest[..i + 3],
                None => rest.trim_end(),
            };
            if !path.ends_with(".ko") {
                bail!(
                    "`{}` lists {path}: compressed modules are not supported",
                    show(&cmd)
                );
            }
            let path = PathBuf::from(path);
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    Ok(files)
}

/// Assembles the guest tree under `<dir>/root` and packs it as gzip'd newc cpio.
fn build_initramfs(assets: &Assets, t: &VmTest, dir: &Path) -> anyhow::Result<PathBuf> {
    let root = dir.join("root");
    remove_if_exists(&root)?;
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut s = Stage {
        root: root.clone(),
        placed: HashSet::new(),
    };
    for d in [
        "/proc", "/sys", "/dev", "/run", "/tmp", "/root", "/etc", "/vmtest",
    ] {
        s.dir(d)?;
    }
    s.symlink("/run", "/var/run")?;

    s.executable(&find_host(&["/bin/dash", "/usr/bin/dash"])?, "/bin/dash")?;
    s.symlink("dash", "/bin/sh")?;
    s.write("/init", INIT_SH, 0o755)?;
    s.write("/vmtest/test.sh", &t.script, 0o755)?;

    let ip = find_host(&["/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"])?;
    s.executable(&ip, "/usr/sbin/ip")?;
    for alias in ["/usr/bin/ip", "/sbin/ip", "/bin/ip"] {
        s.symlink("/usr/sbin/ip", alias)?;
    }
    for bin in &t.binaries {
        let name = bin
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", bin.display()))?;
        s.executable(bin, &format!("/usr/local/bin/{name}"))?;
    }
    for (host, guest) in &t.files {
        s.tree(host, guest)?;
    }

    // Busybox last: a path already taken by a real binary keeps the real binary. No `ip`
    // (iproute2's must win) and no `sh` (dash, see the module docs).
    let busybox = find_host(&["/bin/busybox", "/usr/bin/busybox"])?;
    s.executable(&busybox, "/bin/busybox")?;
    let mut cmd = Command::new(&busybox);
    cmd.arg("--list-full");
    for applet in output(&mut cmd)?.lines().map(str::trim) {
        let name = applet.rsplit('/').next().unwrap_or(applet);
        if applet.is_empty() || name == "ip" || name == "sh" || name == "busybox" {
            continue;
        }
        s.symlink("/bin/busybox", &format!("/{applet}"))?;
    }

    match fs::read_to_string("/etc/protocols") {
        Ok(p) => s.write("/etc/protocols", &p, 0o644)?,
        Err(_) => s.write("/etc/protocols", FALLBACK_PROTOCOLS, 0o644)?,
    }
    for d in ["/etc/iproute2", "/usr/share/iproute2"] {
        if Path::new(d).is_dir() {
            s.tree(Path::new(d), d)?;
        }
    }
    s.write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    s.write("/etc/group", "root:x:0:\n", 0o644)?;
    s.write("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644)?;

    let modules_dir = format!("/lib/modules/{}", assets.kernel_version);
    let mut list = String::new();
    for ko in module_files(assets, &t.modules)? {
        let rel = ko
            .strip_prefix(assets.module_root.join(&modules_dir[1..]))
            .with_context(|| format!("{} is outside the module tree", ko.display()))?;
        let guest = format!("{modules_dir}/{}", rel.display());
        s.copy(&ko, &guest)?;
        list.push_str(&guest);
        list.push('\n');
    }
    s.write("/vmtest/modules", &list, 0o644)?;

    // The kernel opens /dev/console for init before devtmpfs exists. mknod needs root; without
    // it, init.sh reopens the console itself, so a failure here is not an error.
    let _ = Command::new("mknod")
        .args(["-m", "600"])
        .arg(root.join("dev/console"))
        .args(["c", "5", "1"])
        .stderr(Stdio::null())
        .status();

    let initrd = dir.join("initramfs.cpio.gz");
    pack(&root, &initrd)?;
    Ok(initrd)
}

/// `cpio -o -H newc | gzip -1 > out`, fed with every path under `root`, parents first.
fn pack(root: &Path, out: &Path) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    list_tree(root, Path::new("."), &mut paths)?;
    let mut list = Vec::new();
    for p in &paths {
        list.extend_from_slice(p.as_os_str().as_encoded_bytes());
        list.push(0);
    }
    let file = fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cpio_cmd = Command::new("cpio");
    cpio_cmd
        .current_dir(root)
        .args(["--null", "--quiet", "-o", "-H", "newc", "-R", "0:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut gzip_cmd = Command::new("gzip");
    gzip_cmd.args(["-1", "-n"]).stdout(file);
    let mut cpio = cpio_cmd
        .spawn()
        .with_context(|| format!("cannot start `{}`", show(&cpio_cmd)))?;
    let cpio_out = cpio.stdout.take().context("cpio has no stdout")?;
    let gzip = gzip_cmd.stdin(cpio_out).spawn();
    let mut gzip = match gzip {
        Ok(g) => g,
        Err(e) => {
            let _ = cpio.kill();
            let _ = cpio.wait();
            return Err(e).with_context(|| format!("cannot start `{}`", show(&gzip_cmd)));
        }
    };
    let fed = cpio
        .stdin
        .take()
        .context("cpio has no stdin")?
        .write_all(&list);
    let cpio_status = cpio.wait();
    let gzip_status = gzip.wait();
    check_status(&cpio_cmd, cpio_status)?;
    fed.with_context(|| format!("cannot feed the file list to `{}`", show(&cpio_cmd)))?;
    check_status(&gzip_cmd, gzip_status)
}

fn list_tree(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    out.push(rel.to_path_buf());
    let full = root.join(rel);
    let meta =
        fs::symlink_metadata(&full).with_context(|| format!("cannot stat {}", full.display()))?;
    if meta.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&full)
            .with_context(|| format!("cannot read {}", full.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read {}", full.display()))?;
        names.sort();
        for n in names {
            list_tree(root, &rel.join(n), out)?;
        }
    }
    Ok(())
}

/// Boots the kernel with `initrd`, collects the serial console, kills qemu at `timeout`.
fn boot(assets: &Assets, initrd: &Path, timeout: Duration) -> anyhow::Result<GuestOutcome> {
    let mut cmd = Command::new(QEMU);
    cmd.args(QEMU_ARGS)
        .arg("-kernel")
        .arg(&assets.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", KERNEL_APPEND])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = show(&cmd);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let console = collect(child.stdout.take(), verbose());
    let stderr = collect(child.stderr.take(), false);
    let status = wait_until(&mut child, start + timeout)
        .with_context(|| format!("cannot wait for `{line}`"))?;
    let elapsed = start.elapsed();
    let raw = console.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    let mut console = clean_console(&raw);
    let exit_code = parse_marker(&console);
    let timed_out = status.is_none();
    // qemu itself failed (bad image, no memory): not something the guest did.
    if let Some(st) = status.filter(|st| !st.success() && exit_code.is_none()) {
        bail!("`{line}` failed ({st}): {}", err.trim());
    }
    if !err.trim().is_empty() {
        console.push_str("\n--- qemu stderr ---\n");
        console.push_str(&err);
    }
    if timed_out {
        console.push_str(&format!(
            "\n--- vmtest: killed qemu after {} s ---\n",
            timeout.as_secs_f64()
        ));
    }
    Ok(GuestOutcome {
        passed: !timed_out && exit_code == Some(0),
        exit_code: exit_code.unwrap_or(-1),
        console,
        elapsed,
        timed_out,
    })
}

/// Drains a pipe on a thread (so qemu never blocks on a full pipe), optionally echoing it.
fn collect<R: Read + Send + 'static>(pipe: Option<R>, echo: bool) -> Collector {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buf);
    let handle = pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if echo {
                    let _ = std::io::stderr().write_all(&chunk[..n]);
                }
                if let Ok(mut b) = sink.lock() {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        })
    });
    Collector { buf, handle }
}

struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    handle: Option<JoinHandle<()>>,
}

impl Collector {
    fn join(self) -> Option<Vec<u8>> {
        if let Some(h) = self.handle {
            let _ = h.join();
        }
        self.buf.lock().ok().map(|b| b.clone())
    }
}

/// `Some(status)` when the child exited before `deadline`; `None` when it was killed then.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Drops `\r`, ANSI/VT100 escape sequences (SeaBIOS clears the screen with them) and other
/// control characters, keeping newlines and tabs.
fn clean_console(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // Character set designation takes one more character.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The status from the last `GUEST-RC=<n>` line (kernel messages may share the line).
fn parse_marker(console: &str) -> Option<i32> {
    console.lines().rev().find_map(|l| {
        let rest = &l[l.rfind(MARKER)? + MARKER.len()..];
        let digits: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        digits.parse().ok()
    })
}

fn find_host(candidates: &[&str]) -> anyhow::Result<PathBuf> {
    candidates
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
        .with_context(|| format!("none of {} exists on the host", candidates.join(", ")))
}

fn remove_if_exists(p: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(p).with_context(|| format!("cannot remove {}", p.display()))
        }
        Ok(_) => fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display())),
    }
}

/// Runs with inherited output; an error names the exact command.
fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status();
    check_status(cmd, status)
}

/// Runs with output captured, shown only when the command fails.
fn run_quiet(cmd: &mut Command) -> anyhow::Result<()> {
    output(cmd).map(drop)
}

/// Stdout of a command that must succeed; on failure the error names the command and carries
/// its stderr.
fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check_status(cmd: &Command, status: std::io::Result<ExitStatus>) -> anyhow::Result<()> {
    let status = status.with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// A command as a shell line, for error messages.
fn show(cmd: &Command) -> String {
    let mut s: String = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={} ", k.to_str()?, v?.to_str()?)))
        .collect();
    if let Some(dir) = cmd.get_current_dir() {
        s = format!("(cd {} && {s}", dir.display());
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if cmd.get_current_dir().is_some() {
        s.push(')');
    }
    s
}

const DATAPLANE_SH: &str = include_str!("../vm/dataplane.sh");
const IPSEC_SH: &str = include_str!("../vm/ipsec.sh");
const MN_IPSEC_SH: &str = include_str!("../vm/mn-ipsec.sh");
/// Shell functions the scripts that run hagent share.
const VM_LIB_SH: &str = include_str!("../vm/lib.sh");

/// The VM tier of `cargo xtask test`: ESP in the guest kernel, hagent's data plane on 6.1, and
/// the IPsec start-up path on a kernel with ESP. `hagent` is the release binary; `mip6d_conf`
/// the seed's HA configuration with IPsec on.
pub fn suite(hagent: &Path, mip6d_conf: &Path, all: bool) -> anyhow::Result<()> {
    let start = Instant::now();
    let assets = ensure_assets(Path::new(DEFAULT_CACHE))?;
    let work = std::env::temp_dir().join("hagent-vmtest");
    let modules = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let tests = [
        VmTest {
            name: "esp".into(),
            binaries: vec![],
            files: vec![],
            modules: modules(&["veth", "xfrm_user", "esp6"]),
            script: SMOKE_SH.into(),
            timeout: Duration::from_secs(120),
        },
        VmTest {
            name: "dataplane-6.1".into(),
            binaries: vec![hagent.to_path_buf()],
            files: vec![],
            modules: modules(&["veth", "sch_ingress", "cls_bpf"]),
            script: format!("{VM_LIB_SH}\n{DATAPLANE_SH}"),
            timeout: Duration::from_secs(180),
        },
        VmTest {
            name: "ipsec-startup".into(),
            binaries: vec![hagent.to_path_buf()],
            files: vec![(mip6d_conf.to_path_buf(), "/etc/hagent/mip6d.conf".into())],
            modules: modules(&["veth", "sch_ingress", "cls_bpf", "xfrm_user", "esp6"]),
            script: format!("{VM_LIB_SH}\n{IPSEC_SH}"),
            timeout: Duration::from_secs(180),
        },
        VmTest {
            name: "ipsec-registration".into(),
            binaries: vec![hagent.to_path_buf()],
            files: vec![],
            modules: modules(&[
                "veth",
                "bridge",
                "sch_ingress",
                "cls_bpf",
                "xfrm_user",
                "esp6",
            ]),
            script: format!("{VM_LIB_SH}\n{MN_IPSEC_SH}"),
            timeout: Duration::from_secs(240),
        },
    ];
    let mut failed = vec![];
    // `all: false` runs the ESP test alone (the tier's own check, no hagent build needed).
    // VMTEST_ONLY=name,name runs just those (while working on one).
    let only = std::env::var("VMTEST_ONLY").unwrap_or_default();
    let selected = |t: &&VmTest| only.is_empty() || only.split(',').any(|n| n == t.name);
    for t in tests
        .iter()
        .filter(|t| all || t.name == "esp")
        .filter(selected)
    {
        let out = run(&assets, t, &work)?;
        eprintln!(
            "vmtest {}: {} in {:.1} s on {}",
            t.name,
            if out.passed { "passed" } else { "FAILED" },
            out.elapsed.as_secs_f64(),
            assets.kernel_version
        );
        if !out.passed {
            eprintln!("console tail:\n{}", out.console_tail(80));
            failed.push(t.name.clone());
        }
    }
    eprintln!("vmtest: {:.1} s in all", start.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("guest tests failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_cleaning_and_marker() {
        let raw = b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\r\nhello\r\n[    3.1] x GUEST-RC=3\r\n";
        let c = clean_console(raw);
        assert_eq!(c, "SeaBIOS\nhello\n[    3.1] x GUEST-RC=3\n");
        assert_eq!(parse_marker(&c), Some(3));
        assert_eq!(parse_marker("no marker"), None);
    }
}
