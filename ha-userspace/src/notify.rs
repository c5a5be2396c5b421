//! systemd's readiness protocol (sd_notify(3)), for `Type=notify` units: one datagram of
//! `KEY=value` lines to the Unix socket named by `$NOTIFY_SOCKET` — a path, or `@name` for a
//! socket in the abstract namespace. Without `$NOTIFY_SOCKET` (not started by systemd) every
//! call does nothing. A message that cannot be sent is logged, never fatal: the daemon works
//! the same whether or not anyone listens.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    sync::OnceLock,
};

/// Where the messages go, resolved once from the environment.
fn target() -> Option<&'static (UnixDatagram, SocketAddr)> {
    static TARGET: OnceLock<Option<(UnixDatagram, SocketAddr)>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let name = std::env::var_os("NOTIFY_SOCKET")?;
            match connect(name.as_encoded_bytes()) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(
                        notify_socket = %name.to_string_lossy(),
                        error = %e,
                        "cannot use $NOTIFY_SOCKET; systemd will not hear from this daemon"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// An unbound datagram socket and the address `name` (from `$NOTIFY_SOCKET`) stands for.
fn connect(name: &[u8]) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match name {
        [b'@', abstract_name @ ..] => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(abstract_name)?
        }
        [b'/', ..] => {
            use std::os::unix::ffi::OsStrExt as _;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name))?
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither an absolute path nor an @abstract name (vsock is not supported)",
            ));
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// Sends `state` (newline-separated `KEY=value` assignments). Returns whether it was sent.
pub fn notify(state: &str) -> bool {
    let Some((socket, addr)) = target() else {
        return false;
    };
    match socket.send_to_addr(state.as_bytes(), addr) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "sd_notify to $NOTIFY_SOCKET failed");
            false
        }
    }
}

/// `STATUS=` values are one line: newlines would start another assignment.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// The daemon answers on its control socket (start-up done, or a reload finished).
pub fn ready(status: &str) -> bool {
    notify(&format!("READY=1\nSTATUS={}", one_line(status)))
}

/// A configuration reload starts; [`ready`] ends it. systemd wants the time the reload
/// started on CLOCK_MONOTONIC, in microseconds.
pub fn reloading() -> bool {
    notify(&format!(
        "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
        monotonic_usec()
    ))
}

/// The daemon is stopping (`status` says how: removing everything, or handing off).
pub fn stopping(status: &str) -> bool {
    notify(&format!("STOPPING=1\nSTATUS={}", one_line(status)))
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = listener.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("hagent-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let (socket, addr) = connect(path.as_os_str().as_encoded_bytes()).unwrap();
        socket.send_to_addr(b"READY=1", &addr).unwrap();
        assert_eq!(receive(&listener), "READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("hagent-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let (socket, addr) = connect(format!("@{name}").as_bytes()).unwrap();
        socket.send_to_addr(b"STOPPING=1", &addr).unwrap();
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn refuses_what_is_not_a_unix_socket_name() {
        assert!(connect(b"vsock:2:1234").is_err());
        assert!(connect(b"relative/path").is_err());
    }

    #[test]
    fn status_stays_one_assignment() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
        let t0 = monotonic_usec();
        assert!(t0 > 0 && monotonic_usec() >= t0);
    }
}
