//! `cargo xtask dist`: the Debian package a router installs (no Rust toolchain there), and
//! `dist --check`: install it on this machine, check what it promises, purge it again.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{build_release_hagent, run, step};

/// (source under packaging/, path in the package, mode, conffile)
const FILES: &[(&str, &str, u32, bool)] = &[
    ("etc/hagent.toml", "etc/hagent/hagent.toml", 0o644, true),
    ("etc/mip6d-ha.conf", "etc/hagent/mip6d-ha.conf", 0o644, true),
    ("etc/mip6d-mn.conf", "etc/hagent/mip6d-mn.conf", 0o644, true),
    (
        "hagent.service",
        "usr/lib/systemd/system/hagent.service",
        0o644,
        false,
    ),
    (
        "hagent@.service",
        "usr/lib/systemd/system/hagent@.service",
        0o644,
        false,
    ),
    (
        "hagent-stop",
        "usr/libexec/hagent/hagent-stop",
        0o755,
        false,
    ),
    (
        "60-hagent.conf",
        "usr/lib/sysctl.d/60-hagent.conf",
        0o644,
        false,
    ),
    (
        "rt_protos-hagent.conf",
        "etc/iproute2/rt_protos.d/hagent.conf",
        0o644,
        true,
    ),
    ("copyright", "usr/share/doc/hagent/copyright", 0o644, false),
];

const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/hagent"),
    ("zsh", "usr/share/zsh/vendor-completions/_hagent"),
    ("fish", "usr/share/fish/vendor_completions.d/hagent.fish"),
];

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", crate::show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            crate::show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Builds `target/dist/hagent_<version>_<arch>.deb`; returns its path and the paths it holds.
pub fn dist(root: &Path) -> anyhow::Result<(PathBuf, Vec<String>)> {
    use std::os::unix::fs::PermissionsExt as _;
    step("cargo xtask dist: the release hagent, man pages, completions, a Debian package");
    build_release_hagent()?;
    let bin = root.join("target/release/hagent");
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let stage = root.join("target/dist/stage");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("DEBIAN"))?;
    let mut paths = vec!["/usr/sbin/hagent".to_string()];
    install(&bin, &stage.join("usr/sbin/hagent"), 0o755)?;
    let pkg = root.join("packaging");
    let mut conffiles = String::new();
    for (src, dst, mode, conf) in FILES {
        install(&pkg.join(src), &stage.join(dst), *mode)?;
        paths.push(format!("/{dst}"));
        if *conf {
            conffiles.push_str(&format!("/{dst}\n"));
        }
    }
    // Man pages from the binary's own CLI definition, gzipped without a timestamp.
    let man = stage.join("usr/share/man/man8");
    std::fs::create_dir_all(&man)?;
    run(Command::new(&bin).arg("manpage").arg(&man))?;
    let mut pages = 0;
    for e in std::fs::read_dir(&man)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "8") {
            run(Command::new("gzip").args(["-9n"]).arg(&p))?;
            paths.push(format!(
                "/usr/share/man/man8/{}.gz",
                p.file_name().unwrap_or_default().to_string_lossy()
            ));
            pages += 1;
        }
    }
    if pages == 0 {
        bail!("hagent manpage wrote no page");
    }
    for (shell, dst) in COMPLETIONS {
        let text = output(Command::new(&bin).args(["completions", shell]))?;
        if text.trim().is_empty() {
            bail!("hagent completions {shell} printed nothing");
        }
        let to = stage.join(dst);
        std::fs::create_dir_all(to.parent().expect("has a parent"))?;
        std::fs::write(&to, text)?;
        paths.push(format!("/{dst}"));
    }
    std::fs::write(stage.join("DEBIAN/conffiles"), conffiles)?;
    // systemd picks up the units at the next boot or daemon-reload; PID 1 may not be systemd.
    let postinst = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n  systemctl daemon-reload || true\nfi\n";
    std::fs::write(stage.join("DEBIAN/postinst"), postinst)?;
    std::fs::write(stage.join("DEBIAN/postrm"), postinst)?;
    for s in ["postinst", "postrm"] {
        std::fs::set_permissions(
            stage.join("DEBIAN").join(s),
            std::fs::Permissions::from_mode(0o755),
        )?;
    }
    let size_kib = output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(&stage),
    )?
    .split_whitespace()
    .next()
    .unwrap_or("0")
    .to_string();
    let control = format!(
        "Package: hagent\nVersion: {version}\nArchitecture: {arch}\n\
         Maintainer: hagent developers <hagent@example.org>\nInstalled-Size: {size_kib}\n\
         Depends: libc6\nRecommends: iproute2\nSection: net\nPriority: optional\n\
         Homepage: https://example.org/hagent\n\
         Description: eBPF/XDP-accelerated Mobile IPv6 home agent\n \
         hagent is a Mobile IPv6 (RFC 6275) home agent and mobile node: XDP and TC programs\n \
         tunnel every packet from a binding cache in BPF maps; the daemon handles Binding\n \
         Updates, IPsec policies and the maps. It reads UMIP's mip6d.conf and setkey.conf.\n"
    );
    std::fs::write(stage.join("DEBIAN/control"), control)?;
    let deb = root.join(format!("target/dist/hagent_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    eprintln!("dist: {}", deb.display());
    Ok((deb, paths))
}

/// `cargo xtask dist --check` (and a step of `cargo xtask test`): installs the package with
/// dpkg, runs what it installed, verifies the units, and purges it — also when a check fails.
pub fn check(root: &Path) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("the package check installs a Debian package: run it as root");
    }
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "hagent"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
    if installed {
        bail!(
            "a hagent package is installed already: not replacing it (dpkg --purge hagent first)"
        );
    }
    let (deb, paths) = dist(root)?;
    step(
        "package check: dpkg -i, hagent from /usr/sbin, the examples, systemd-analyze verify, dpkg --purge",
    );
    let result = (|| -> anyhow::Result<()> {
        run(Command::new("dpkg").arg("-i").arg(&deb))?;
        let v = output(Command::new("/usr/sbin/hagent").arg("--version"))?;
        if v.trim() != format!("hagent {}", env!("CARGO_PKG_VERSION")) {
            bail!("/usr/sbin/hagent --version printed {v:?}");
        }
        eprintln!("package: /usr/sbin/hagent --version: {}", v.trim());
        for c in ["hagent.toml", "mip6d-ha.conf", "mip6d-mn.conf"] {
            run(Command::new("/usr/sbin/hagent")
                .args(["config", "check"])
                .arg(Path::new("/etc/hagent").join(c))
                .stdout(std::process::Stdio::null()))?;
        }
        let listed = output(Command::new("dpkg").args(["-L", "hagent"]))?;
        let listed: std::collections::HashSet<&str> = listed.lines().collect();
        let missing: Vec<&String> = paths
            .iter()
            .filter(|p| !listed.contains(p.as_str()))
            .collect();
        if !missing.is_empty() {
            bail!("dpkg -L hagent does not list {missing:?}");
        }
        eprintln!("package: dpkg -L lists all {} files", paths.len());
        if which("systemd-analyze") {
            // The template is verified through an instance; verify reads the installed units.
            run(Command::new("systemd-analyze").args([
                "verify",
                "/usr/lib/systemd/system/hagent.service",
                "hagent@lab.service",
            ]))?;
            eprintln!("package: systemd-analyze verify accepts hagent.service and hagent@.service");
        } else {
            bail!(
                "systemd-analyze not found: the units cannot be verified (apt-get install systemd)"
            );
        }
        Ok(())
    })();
    let purge = run(Command::new("dpkg").args(["--purge", "hagent"]));
    result?;
    purge?;
    if Path::new("/usr/sbin/hagent").exists() {
        bail!("dpkg --purge left /usr/sbin/hagent behind");
    }
    eprintln!("package: purged, nothing left");
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}
