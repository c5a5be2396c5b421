//! One running hagent: its name, where its state lives, and the locks that make it the only
//! owner of that state.
//!
//! - `<run_dir>/<name>.lock`: held (flock) for the whole life of the daemon, taken before the
//!   kernel is touched; a second daemon with the same name refuses to start.
//! - `<run_dir>/interfaces/<netns>-<ifindex>.lock`: one per served interface, so that two
//!   instances with different names never serve (and clean up) the same interface.
//! - `<run_dir>/<name>.owned.json`: the kernel state the instance changed outside the maps
//!   (interfaces, allmulti), written atomically (write, fsync, rename) before the change and
//!   again after it, so that whoever comes next — a restarted daemon or `hagent cleanup` — can
//!   undo it.
//! - `<bpffs>/hagent/<name>/`: the pinned maps and program links (`crate::dataplane`).

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// The default instance name (its control socket is `control::DEFAULT_SOCKET`).
pub const DEFAULT_NAME: &str = "hagent";
/// Where locks, sockets and ownership records live.
pub const DEFAULT_RUN_DIR: &str = "/run/hagent";
/// Where bpffs is mounted.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";
/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// An instance's name and paths.
#[derive(Clone, Debug)]
pub struct Instance {
    name: String,
    run_dir: PathBuf,
    bpffs: PathBuf,
}

/// Checks an instance name: it becomes part of file names.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.starts_with('-');
    if !ok {
        bail!(
            "invalid instance name {name:?}: 1 to 32 letters, digits, '-' or '_', not starting with '-'"
        );
    }
    Ok(())
}

impl Instance {
    pub fn new(name: &str, run_dir: &Path, bpffs: &Path) -> anyhow::Result<Self> {
        check_name(name)?;
        Ok(Self {
            name: name.to_string(),
            run_dir: run_dir.to_path_buf(),
            bpffs: bpffs.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The control socket when none is given: `<run_dir>/<name>.sock`.
    pub fn default_socket(&self) -> PathBuf {
        self.run_dir.join(format!("{}.sock", self.name))
    }

    /// Where the data plane is pinned.
    pub fn pin_dir(&self) -> PathBuf {
        self.bpffs.join("hagent").join(&self.name)
    }

    fn owned_path(&self) -> PathBuf {
        self.run_dir.join(format!("{}.owned.json", self.name))
    }

    /// Checks that the bpffs root is a bpffs (pins elsewhere fail, or vanish with a mount
    /// namespace).
    pub fn check_bpffs(&self) -> anyhow::Result<()> {
        let is = is_bpffs(&self.bpffs).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (mount bpffs there, pass --bpffs, or set dataplane.persistent = false)",
                self.bpffs.display()
            )
        })?;
        if !is {
            bail!(
                "{} is not a bpffs, so the data plane cannot be pinned there (inside `ip netns \
                 exec`, /sys is remounted): `mount -t bpf bpf {}`, pass --bpffs DIR with a bpffs \
                 mounted at DIR, or set dataplane.persistent = false",
                self.bpffs.display(),
                self.bpffs.display()
            );
        }
        Ok(())
    }

    /// Takes the instance lock; fails clearly when another daemon holds it.
    pub fn lock(&self) -> anyhow::Result<Lock> {
        let path = self.run_dir.join(format!("{}.lock", self.name));
        Lock::take(&path).map_err(|held| {
            held.context(format!(
                "another hagent runs as instance {:?} (lock {}); stop it, or give this one \
                 another --instance",
                self.name,
                path.display()
            ))
        })
    }

    /// Takes the lock of interface `ifindex` (`interface`) in this network namespace.
    pub fn lock_interface(&self, interface: &str, ifindex: u32) -> anyhow::Result<Lock> {
        let path = self
            .run_dir
            .join("interfaces")
            .join(format!("{}-{ifindex}.lock", netns_id()?));
        let lock = Lock::take(&path).map_err(|held| {
            let owner = std::fs::read_to_string(&path).unwrap_or_default();
            held.context(format!(
                "interface {interface} is served by another hagent instance ({}); one interface, \
                 one instance",
                owner.trim()
            ))
        })?;
        lock.write_owner(&self.name)?;
        Ok(lock)
    }

    /// What an earlier run of this instance recorded it changed (None: nothing recorded).
    pub fn owned(&self) -> anyhow::Result<Option<Owned>> {
        let path = self.owned_path();
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!("{} is not an ownership record", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Records (atomically: write, fsync, rename, fsync the directory) what this instance
    /// changed.
    pub fn record_owned(&self, owned: &Owned) -> anyhow::Result<()> {
        write_atomically(&self.owned_path(), &serde_json::to_vec_pretty(owned)?)
    }

    /// Forgets the ownership record (after everything in it was undone).
    pub fn forget_owned(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.owned_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).context("removing the ownership record"),
        }
    }

    /// Removes the pinned data plane: the programs detach and the maps go once nothing else
    /// holds them. Returns how many pins there were.
    pub fn unpin(&self) -> anyhow::Result<usize> {
        crate::dataplane::remove_pins(&self.pin_dir())
    }
}

/// The kernel state outside the maps an instance changed, for whoever undoes it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Owned {
    /// The network namespace (inode of `/proc/self/ns/net`) the state is in.
    pub netns: u64,
    /// The interfaces served: `(name, ifindex)`.
    pub interfaces: Vec<(String, u32)>,
    /// Interfaces whose allmulti the instance turned on.
    pub allmulti: Vec<u32>,
}

/// An exclusive `flock` on a file, held while this lives.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    fn take(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                bail!("{} is held", path.display());
            }
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
        let me = Self { file };
        me.write_owner(&format!("pid {}", std::process::id()))?;
        Ok(me)
    }

    fn write_owner(&self, who: &str) -> anyhow::Result<()> {
        let mut f = &self.file;
        f.set_len(0)?;
        f.write_all(format!("{who} (pid {})\n", std::process::id()).as_bytes())?;
        Ok(())
    }
}

/// Whether `path` is (the root of) a mounted bpffs.
pub fn is_bpffs(path: &Path) -> std::io::Result<bool> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and outlives the call; `st` is ours to write.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// The inode of this process's network namespace (stable while the namespace exists).
pub fn netns_id() -> anyhow::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")
        .context("reading /proc/self/ns/net")?
        .ino())
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("a state file needs a directory")?
        .to_path_buf();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    File::open(&dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_cannot_escape_their_directory() {
        for bad in ["", "../x", "a/b", "-x", "a b", "x\0", &"y".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["hagent", "ha-1", "edge_2", "A9"] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn one_holder_per_lock() {
        let dir = std::env::temp_dir().join(format!("hagent-lock-test-{}", std::process::id()));
        let i = Instance::new("t", &dir, Path::new("/nonexistent")).unwrap();
        let held = i.lock().unwrap();
        let second = i.lock().unwrap_err();
        assert!(
            format!("{second:#}").contains("another hagent runs as instance \"t\""),
            "{second:#}"
        );
        drop(held);
        i.lock().expect("free again once the holder is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ownership_records_are_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("hagent-owned-test-{}", std::process::id()));
        let i = Instance::new("t", &dir, Path::new("/nonexistent")).unwrap();
        assert_eq!(i.owned().unwrap(), None);
        let o = Owned {
            netns: 7,
            interfaces: vec![("eth0".into(), 2)],
            allmulti: vec![2],
        };
        i.record_owned(&o).unwrap();
        assert_eq!(i.owned().unwrap(), Some(o));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        i.forget_owned().unwrap();
        assert_eq!(i.owned().unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_that_is_not_bpffs_is_refused_with_the_fix() {
        let i = Instance::new("t", Path::new("/tmp"), Path::new("/tmp")).unwrap();
        let e = format!("{:#}", i.check_bpffs().unwrap_err());
        assert!(e.contains("is not a bpffs") && e.contains("--bpffs"), "{e}");
    }
}
