//! Traffic that runs across the mobile node's moves, and how to read it: a ping from the CN
//! to the HoA (timestamped) and a TCP conversation between them. Shared by the handover test
//! and `cargo xtask run`.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{Background, Netns, wait_for};

pub const PYTHON: &str = "/usr/bin/python3";

/// Echoes lines on [HoA]:5002 for one connection.
pub const ECHO_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5002)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
f = c.makefile("rwb")
for line in f:
    f.write(line); f.flush()
print("closed", flush=True)
"#;

/// Sends a numbered line every 50 ms and checks each echo, until `stop` exists; prints
/// "ok N" or the error.
pub const ECHO_CLIENT: &str = r#"
import os, socket, sys, time
c = socket.create_connection((sys.argv[1], 5002), timeout=60)
f = c.makefile("rwb")
n = 0
try:
    while not os.path.exists(sys.argv[2]):
        f.write(b"%d %s\n" % (n, b"x" * 200)); f.flush()
        line = f.readline()
        if not line.startswith(b"%d " % n):
            print("error: bad echo %r" % line[:20], flush=True); sys.exit(1)
        n += 1
        print("echo", n, time.time(), flush=True)
        time.sleep(0.05)
    c.close()
    print("ok", n, flush=True)
except Exception as e:
    print("error:", e, flush=True); sys.exit(1)
"#;

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The traffic that runs across the moves: `cn` pings `hoa` and keeps a TCP conversation with
/// an echo server on `mn`. Writing `stop` ends the conversation; logs go to `dir`.
pub struct Conversation {
    pub ping: Background,
    pub server: Background,
    pub client: Background,
    pub stop: std::path::PathBuf,
}

impl Conversation {
    pub fn start(cn: &Netns, mn: &Netns, hoa: &str, dir: &Path) -> anyhow::Result<Self> {
        let ping = start_ping(cn, hoa, &dir.join("ping.log"))?;
        let mut server = mn.spawn(PYTHON, &["-c", ECHO_SERVER, hoa], &dir.join("server.log"))?;
        wait_for("the MN's echo server", Duration::from_secs(10), || {
            server.check_running()?;
            Ok(server.log().contains("listening").then_some(()))
        })?;
        let stop = dir.join("stop");
        let stop_arg = stop
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", stop.display()))?;
        let client = cn.spawn(
            PYTHON,
            &["-c", ECHO_CLIENT, hoa, stop_arg],
            &dir.join("client.log"),
        )?;
        Ok(Self {
            ping,
            server,
            client,
            stop,
        })
    }
}

/// A ping from `ns` to `dst` every 50 ms with timestamps (`ping -D`).
pub fn start_ping(ns: &Netns, dst: &str, log: &Path) -> anyhow::Result<Background> {
    ns.spawn("ping", &["-6", "-D", "-i", "0.05", "-W", "1", dst], log)
}

/// (transmitted, received) from the statistics line a finished `ping` prints.
pub fn ping_counts(log: &str) -> Option<(u64, u64)> {
    let line = log.lines().find(|l| l.contains("packets transmitted"))?;
    let mut n = line
        .split(',')
        .filter_map(|p| p.split_whitespace().next()?.parse::<u64>().ok());
    Some((n.next()?, n.next()?))
}

/// Replies seen in a `ping -D` log: (timestamp, icmp_seq).
pub fn ping_replies(log: &str) -> Vec<(f64, u64)> {
    log.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            let ts = l
                .strip_prefix('[')?
                .split(']')
                .next()?
                .parse::<f64>()
                .ok()?;
            let seq = l
                .split("icmp_seq=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()?;
            Some((ts, seq))
        })
        .collect()
}

/// What a move cost: echo requests lost, and the time from the move to the first reply after.
#[derive(Clone, Copy, Debug)]
pub struct Handover {
    pub lost: u64,
    pub seconds: f64,
}

/// Loss and interruption around a move made at `t_move`, read from the replies.
pub fn handover(replies: &[(f64, u64)], t_move: f64) -> Option<Handover> {
    let before = replies
        .iter()
        .filter(|(t, _)| *t < t_move)
        .map(|&(_, s)| s)
        .max()?;
    let &(t_after, after) = replies.iter().find(|(t, s)| *t >= t_move && *s > before)?;
    Some(Handover {
        lost: after.saturating_sub(before + 1),
        seconds: t_after - t_move,
    })
}

/// Waits until the MN daemon at `socket` reports `state`.
pub fn wait_mn_state(
    hagent: &crate::topology::Hagent,
    state: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_for(&format!("the mobile node to be {state}"), timeout, || {
        let s = hagent.stats()?;
        Ok((s["mobile_node"]["state"] == state).then_some(()))
    })
}
