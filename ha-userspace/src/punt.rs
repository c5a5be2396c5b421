//! The slow path for packets the XDP program cannot forward itself: inner packets of at most
//! 1280 bytes whose tunnel packet exceeds the path MTU must be encapsulated and the *outer*
//! packet fragmented (RFC 2473 §7.1). XDP cannot fragment; the kernel can, for packets it
//! originates. So the program hands the inner packet over a ring buffer and we send it
//! through a raw IPv6 socket of protocol 41: the kernel builds the outer header from the
//! binding's addresses and fragments it to the path MTU.

use std::{mem::size_of, net::Ipv6Addr};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use ha_common::abi::{PUNT_HAO_LEN, PUNT_REASON_FRAGMENT, PUNT_REASON_HAO_NO_BINDING, PuntRecord};
use tokio::io::unix::AsyncFd;

use crate::sock::RawSocket;

/// A raw socket that sends IPv6-in-IPv6 packets, letting the kernel fragment them.
pub struct TunnelSender {
    sock: RawSocket,
}

impl TunnelSender {
    pub fn new(hop_limit: u8) -> anyhow::Result<Self> {
        let sock =
            RawSocket::new(libc::IPPROTO_IPV6).context("opening the raw IPv6-in-IPv6 socket")?;
        sock.set_int(
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            hop_limit.into(),
        )?;
        // Send-only: a filter that accepts nothing keeps every received tunnel packet from
        // queueing on this socket.
        let reject = [libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: reject.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points to `reject`, both alive for the call.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                &prog as *const _ as *const u8,
                size_of::<libc::sock_fprog>(),
            )
        };
        crate::sock::setsockopt_bytes(
            sock.raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            bytes,
        )?;
        Ok(Self { sock })
    }

    /// Sends `inner` tunnelled from `src` to `dst`.
    pub fn send(&self, src: Ipv6Addr, dst: Ipv6Addr, inner: &[u8]) -> std::io::Result<()> {
        self.sock.send_to(inner, dst, Some(src), 0).map(|_| ())
    }
}

/// Statistics of the slow path.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PuntStats {
    pub fragmented_sent: u64,
    pub send_errors: u64,
    pub malformed: u64,
    /// Home Address options without a binding, handed on for a Binding Error.
    pub hao_without_binding: u64,
    /// Those the event loop's queue had no room for.
    pub hao_queue_full: u64,
}

/// A packet with a Home Address option and no binding (RFC 6275 §9.3.1), for the home agent
/// to answer with a Binding Error (status 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HaoWithoutBinding {
    /// The packet's source: where the Binding Error goes.
    pub src: Ipv6Addr,
    /// Its destination: this node's address, the Binding Error's source.
    pub dst: Ipv6Addr,
    pub hoa: Ipv6Addr,
}

/// Reports waiting for the event loop, at most.
pub const HAO_QUEUE: usize = 1024;

/// Reads the punt ring buffer until the task is dropped, sending each packet.
pub async fn serve(
    ring: RingBuf<MapData>,
    sender: TunnelSender,
    stats: std::sync::Arc<std::sync::Mutex<PuntStats>>,
    hao: tokio::sync::mpsc::Sender<HaoWithoutBinding>,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as long as
    // the AsyncFd (which owns the ring buffer) lives.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the punt ring buffer: {e}"))?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            let outcome = handle(&item, &sender);
            let mut s = stats.lock().expect("punt stats lock");
            match outcome {
                Ok(None) => s.fragmented_sent += 1,
                Ok(Some(h)) => {
                    s.hao_without_binding += 1;
                    if hao.try_send(h).is_err() {
                        s.hao_queue_full += 1;
                    }
                }
                Err(Handled::Malformed) => s.malformed += 1,
                Err(Handled::Send(e)) => {
                    s.send_errors += 1;
                    tracing::debug!(error = %e, "sending a fragmented tunnel packet failed");
                }
            }
        }
        guard.clear_ready();
    }
}

enum Handled {
    Malformed,
    Send(std::io::Error),
}

fn handle(item: &[u8], sender: &TunnelSender) -> Result<Option<HaoWithoutBinding>, Handled> {
    if item.len() < size_of::<PuntRecord>() {
        return Err(Handled::Malformed);
    }
    // SAFETY: the program writes whole PuntRecords; the length was checked.
    let rec: PuntRecord = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const PuntRecord) };
    let len = rec.len as usize;
    if rec.reason == PUNT_REASON_HAO_NO_BINDING && len == PUNT_HAO_LEN {
        let at = |i: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&rec.packet[i..i + 16]);
            Ipv6Addr::from(a)
        };
        return Ok(Some(HaoWithoutBinding {
            src: at(8),
            dst: at(24),
            hoa: at(40),
        }));
    }
    if rec.reason != PUNT_REASON_FRAGMENT || len < 40 || len > rec.packet.len() {
        return Err(Handled::Malformed);
    }
    sender
        .send(
            Ipv6Addr::from(rec.binding.local),
            Ipv6Addr::from(rec.binding.remote),
            &rec.packet[..len],
        )
        .map(|()| None)
        .map_err(Handled::Send)
}
