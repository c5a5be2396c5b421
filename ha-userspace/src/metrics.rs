//! The Prometheus/OpenMetrics endpoint: `GET /metrics` on `[metrics] listen`.
//!
//! The event loop owns every counter, so a scrape asks it for a [`Snapshot`] (plain numbers,
//! read in one turn of the loop, consistent with each other) and encodes it on the server's
//! own task with prometheus-client. The server is hand-written HTTP/1.x, one request per
//! connection, and hostile input costs little: the request head is at most
//! [`MAX_HEAD`] bytes and [`TIMEOUT`] long, at most [`MAX_CONNECTIONS`] are served at once
//! (the rest get 503), and anything but `GET`/`HEAD /metrics` gets its 4xx/5xx.

use std::{
    net::{Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use ha_common::stats::Counter;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, oneshot},
};

use crate::{
    home_agent::registration::Stats as RegistrationStats, ipsec::IpsecStats,
    mobility::SignallingStats, punt::PuntStats,
};

/// Longest request head (request line and headers) read; a longer one gets 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head, and then to read the answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; another one gets 503 and is closed.
pub const MAX_CONNECTIONS: usize = 8;
/// Scrapes waiting for the event loop; more at once wait for a place.
pub const QUEUE: usize = MAX_CONNECTIONS;

/// A scrape's request to the event loop: where to send the snapshot.
pub type Query = oneshot::Sender<Snapshot>;

/// Everything one scrape reports, read by the event loop in one turn.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub role: &'static str,
    pub started: Option<SystemTime>,
    /// Global data-plane counters: (counter, packets, bytes), every one of `Counter::ALL`.
    pub dataplane: Vec<(Counter, u64, u64)>,
    pub bindings: u64,
    pub binding_capacity: u64,
    /// Per-binding counters of the first bindings in home address order (at most
    /// `metrics.max_binding_series`).
    pub binding_series: Vec<BindingSeries>,
    /// Bindings without series of their own (over the cap).
    pub binding_series_omitted: u64,
    pub signalling: SignallingStats,
    /// Home agent: BAs sent by status.
    pub acks_by_status: Vec<(u8, u64)>,
    /// Home agent: registration outcomes.
    pub registrations: Option<RegistrationStats>,
    pub registrations_in_progress: u64,
    pub dad_in_flight: u64,
    /// Home agent: DHAAD requests, replies and advertisements learned.
    pub dhaad: Option<crate::home_agent::icmp::IcmpStats>,
    /// Home agent: unsolicited NA repeats scheduled, and not scheduled (queue full).
    pub na_repeats: (u64, u64),
    /// IPsec requests, policies and SAs installed (`UseMnHaIPsec` only).
    pub ipsec: Option<(IpsecStats, u64, u64)>,
    /// (queue, depth, capacity).
    pub queues: Vec<(&'static str, u64, u64)>,
    /// Mobility Headers dropped because their queue was full.
    pub mh_queue_full: u64,
    pub slow_path: PuntStats,
    pub rtnetlink_requests: u64,
}

/// One binding's counters.
#[derive(Clone, Debug)]
pub struct BindingSeries {
    pub hoa: Ipv6Addr,
    pub to_mn_packets: u64,
    pub to_mn_bytes: u64,
    pub from_mn_packets: u64,
    pub from_mn_bytes: u64,
}

/// What the data-plane counter does with the packet: the `action` label. An exhaustive match,
/// so a new counter cannot be added without deciding.
fn action(c: Counter) -> &'static str {
    use Counter as C;
    match c {
        C::RxFrames | C::RxIpv6 => "received",
        C::PassNotIpv6
        | C::PassMalformed
        | C::PassVlan
        | C::PassNoBinding
        | C::PassNotTunnelled
        | C::PassHopLimit
        | C::PassNoNeigh
        | C::PassFibOther
        | C::PassIpsecBinding
        | C::PassEgressNotManaged
        | C::PassLocal
        | C::PassNdInvalid
        | C::DecapPass
        | C::TcSignalUnbound => "pass",
        C::EncapTx
        | C::EncapRedirect
        | C::DecapForward
        | C::DecapReencap
        | C::TcEncap
        | C::TcEncapNeigh
        | C::MnDecap => "tunnel",
        C::DropDecapUnknownSource
        | C::DropDecapWrongCareOf
        | C::DropFibUnreachable
        | C::DropPtbRateLimited
        | C::DropPuntFull
        | C::DropForgedHaoMarker
        | C::DropHelperFailed
        | C::TcDrop
        | C::DropDecapUnprotected
        | C::DropHaoNoBinding => "drop",
        C::PtbSent
        | C::TcPtbSent
        | C::NdProxyAnswered
        | C::NdProxyDadAnswered
        | C::TcNdReflected => "answer",
        C::SignalHaoRewritten
        | C::MnRh2Rewritten
        | C::TcSignalHao
        | C::TcSignalRh2
        | C::HaoAccepted => "rewrite",
        C::PuntFragment => "punt",
        C::DadConflictSeen => "observe",
    }
}

/// prometheus-client's view of a snapshot: every family, encoded on each scrape.
#[derive(Debug)]
struct Families(Snapshot);

/// Label sets as prometheus-client takes them.
type Labels<'a> = Vec<(&'static str, std::borrow::Cow<'a, str>)>;

/// A counter or gauge family being written.
struct Family<'e, 'a> {
    encoder: &'e mut DescriptorEncoder<'a>,
}

impl Family<'_, '_> {
    fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(Labels<'_>, u64)],
    ) -> std::fmt::Result {
        let mut m = self.encoder.encode_descriptor(
            name,
            help,
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (labels, v) in samples {
            ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn gauge(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, i64)]) -> std::fmt::Result {
        let mut m = self.encoder.encode_descriptor(
            name,
            help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (labels, v) in samples {
            ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn info(&mut self, name: &str, help: &str, labels: Labels<'_>) -> std::fmt::Result {
        let m = self.encoder.encode_descriptor(
            name,
            help,
            None,
            prometheus_client::metrics::MetricType::Info,
        )?;
        prometheus_client::metrics::info::Info::new(labels).encode(m)
    }

    fn gauge_f64(&mut self, name: &str, help: &str, v: f64) -> std::fmt::Result {
        let m = self.encoder.encode_descriptor(
            name,
            help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(v).encode(m)
    }
}

fn l<'a>(pairs: &[(&'static str, &'a str)]) -> Labels<'a> {
    pairs
        .iter()
        .map(|&(k, v)| (k, std::borrow::Cow::Borrowed(v)))
        .collect()
}

fn one(v: u64) -> Vec<(Labels<'static>, u64)> {
    vec![(Vec::new(), v)]
}

fn gauge_one(v: u64) -> Vec<(Labels<'static>, i64)> {
    vec![(Vec::new(), i64::try_from(v).unwrap_or(i64::MAX))]
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &self.0;
        let mut f = Family {
            encoder: &mut encoder,
        };
        f.info(
            "hagent_build",
            "The hagent version and role.",
            l(&[("version", env!("CARGO_PKG_VERSION")), ("role", s.role)]),
        )?;
        if let Some(t) = s.started {
            let secs = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            f.gauge_f64(
                "hagent_process_start_time_seconds",
                "When the daemon started, in seconds since the Unix epoch.",
                secs,
            )?;
        }
        let by_counter = |bytes: bool| -> Vec<(Labels<'static>, u64)> {
            s.dataplane
                .iter()
                .map(|&(c, p, b)| {
                    (
                        l(&[("action", action(c)), ("reason", c.name())]),
                        if bytes { b } else { p },
                    )
                })
                .collect()
        };
        f.counter(
            "hagent_dataplane_packets",
            "Packets the XDP and TC programs handled, by what they did (action) and the \
             counter that says why (reason, as in hagent stats).",
            &by_counter(false),
        )?;
        f.counter(
            "hagent_dataplane_bytes",
            "Bytes of the packets in hagent_dataplane_packets_total.",
            &by_counter(true),
        )?;
        f.gauge(
            "hagent_bindings",
            "Bindings in the binding cache.",
            &gauge_one(s.bindings),
        )?;
        f.gauge(
            "hagent_binding_cache_capacity",
            "Bindings the data plane's maps hold at most (dataplane.max_bindings).",
            &gauge_one(s.binding_capacity),
        )?;
        let per_binding = |packets: bool| -> Vec<(Labels<'static>, u64)> {
            s.binding_series
                .iter()
                .flat_map(|b| {
                    let hoa = std::borrow::Cow::<str>::Owned(b.hoa.to_string());
                    let (to, from) = if packets {
                        (b.to_mn_packets, b.from_mn_packets)
                    } else {
                        (b.to_mn_bytes, b.from_mn_bytes)
                    };
                    [
                        (
                            vec![("hoa", hoa.clone()), ("direction", "to_mn".into())],
                            to,
                        ),
                        (vec![("hoa", hoa), ("direction", "from_mn".into())], from),
                    ]
                })
                .collect()
        };
        f.counter(
            "hagent_binding_packets",
            "Packets tunnelled to a mobile node (to_mn) and reverse-tunnelled from it \
             (from_mn), for the first metrics.max_binding_series bindings by home address.",
            &per_binding(true),
        )?;
        f.counter(
            "hagent_binding_bytes",
            "Bytes of the packets in hagent_binding_packets_total.",
            &per_binding(false),
        )?;
        f.gauge(
            "hagent_binding_series_omitted",
            "Bindings without per-binding series because of metrics.max_binding_series.",
            &gauge_one(s.binding_series_omitted),
        )?;
        let g = &s.signalling;
        f.counter(
            "hagent_binding_updates_received",
            "Binding Updates received and parsed.",
            &one(g.bu_received),
        )?;
        f.counter(
            "hagent_binding_updates_sent",
            "Binding Updates sent (mobile node).",
            &one(g.bu_sent),
        )?;
        f.counter(
            "hagent_binding_errors_sent",
            "Binding Errors sent.",
            &one(g.be_sent),
        )?;
        f.counter(
            "hagent_signalling_send_errors",
            "Mobility Header messages that could not be sent.",
            &one(g.send_errors),
        )?;
        f.counter(
            "hagent_mh_dropped",
            "Mobility Header messages dropped before processing, by reason.",
            &[
                (l(&[("reason", "bad_checksum")]), g.dropped_bad_checksum),
                (l(&[("reason", "malformed")]), g.dropped_malformed),
                (l(&[("reason", "not_bu")]), g.dropped_not_bu),
                (l(&[("reason", "queue_full")]), s.mh_queue_full),
            ],
        )?;
        let statuses: Vec<(String, u64)> = s
            .acks_by_status
            .iter()
            .map(|&(st, n)| (st.to_string(), n))
            .collect();
        f.counter(
            "hagent_binding_acks_sent",
            "Binding Acknowledgements sent, by status (0 accepted; 128 and up refused, RFC \
             6275 §6.1.8).",
            &statuses
                .iter()
                .map(|(st, n)| (l(&[("status", st.as_str())]), *n))
                .collect::<Vec<_>>(),
        )?;
        if let Some(r) = &s.registrations {
            f.counter(
                "hagent_binding_changes",
                "Bindings created, updated (refreshed or moved) and removed by registrations.",
                &[
                    (l(&[("change", "created")]), r.created),
                    (l(&[("change", "updated")]), r.updated),
                    (l(&[("change", "removed")]), r.removed),
                ],
            )?;
            f.counter(
                "hagent_binding_updates_discarded",
                "Binding Updates discarded without an acknowledgement (RFC 6275 §9.5.1, \
                 §10.3.1), by reason.",
                &[
                    (l(&[("reason", "home_address")]), r.discarded_home_address),
                    (
                        l(&[("reason", "care_of_address")]),
                        r.discarded_care_of_address,
                    ),
                    (
                        l(&[("reason", "not_to_home_agent")]),
                        r.discarded_not_to_home_agent,
                    ),
                    (l(&[("reason", "not_home_registration")]), r.ignored),
                ],
            )?;
            f.counter(
                "hagent_admission_dropped",
                "Binding Updates dropped by admission control, by reason.",
                &[
                    (l(&[("reason", "busy")]), r.dropped_busy),
                    (l(&[("reason", "rate_limited")]), r.dropped_rate_limited),
                    (l(&[("reason", "dad_full")]), r.dropped_dad_full),
                ],
            )?;
            f.counter(
                "hagent_dad_probes",
                "Duplicate Address Detection probes for new bindings, by outcome.",
                &[
                    (l(&[("outcome", "clear")]), r.dad_clear),
                    (l(&[("outcome", "conflict")]), r.dad_conflicts),
                    (l(&[("outcome", "error")]), r.dad_errors),
                ],
            )?;
            f.gauge(
                "hagent_registrations_in_progress",
                "Registrations accepted for processing and not yet answered.",
                &gauge_one(s.registrations_in_progress),
            )?;
            f.gauge(
                "hagent_dad_probes_in_flight",
                "Duplicate Address Detection probes running.",
                &gauge_one(s.dad_in_flight),
            )?;
            f.gauge(
                "hagent_neighbor_advertisement_repeats_pending",
                "Unsolicited Neighbor Advertisement repeats scheduled for new bindings.",
                &gauge_one(s.na_repeats.0),
            )?;
            f.counter(
                "hagent_neighbor_advertisement_repeats_dropped",
                "Repeats not scheduled because their queue was full.",
                &one(s.na_repeats.1),
            )?;
        }
        if let Some(d) = &s.dhaad {
            f.counter(
                "hagent_dhaad_messages",
                "Dynamic Home Agent Address Discovery: requests received, replies sent, \
                 requests refused (rate limit, not for a home link, invalid) and home agent \
                 advertisements learned.",
                &[
                    (l(&[("kind", "request")]), d.requests),
                    (l(&[("kind", "reply")]), d.replies),
                    (l(&[("kind", "rate_limited")]), d.rate_limited),
                    (l(&[("kind", "not_for_a_home_link")]), d.not_for_a_home_link),
                    (l(&[("kind", "invalid")]), d.invalid),
                    (
                        l(&[("kind", "advertisement_learned")]),
                        d.advertisements_learned,
                    ),
                ],
            )?;
        }
        if let Some((x, policies, sas)) = &s.ipsec {
            f.counter(
                "hagent_ipsec_operations",
                "xfrm requests (policies, SAs, migrations), by operation and result.",
                &x.labelled()
                    .iter()
                    .map(|&(op, result, n)| (l(&[("operation", op), ("result", result)]), n))
                    .collect::<Vec<_>>(),
            )?;
            f.gauge(
                "hagent_ipsec_policies",
                "xfrm policies this daemon installed.",
                &gauge_one(*policies),
            )?;
            f.gauge(
                "hagent_ipsec_sas",
                "xfrm SAs this daemon installed.",
                &gauge_one(*sas),
            )?;
        }
        let queues = |depth: bool| -> Vec<(Labels<'static>, i64)> {
            s.queues
                .iter()
                .map(|&(q, d, c)| {
                    (
                        l(&[("queue", q)]),
                        i64::try_from(if depth { d } else { c }).unwrap_or(i64::MAX),
                    )
                })
                .collect()
        };
        f.gauge(
            "hagent_queue_depth",
            "Messages waiting in a signalling queue.",
            &queues(true),
        )?;
        f.gauge(
            "hagent_queue_capacity",
            "Messages a signalling queue holds at most.",
            &queues(false),
        )?;
        let p = &s.slow_path;
        f.counter(
            "hagent_slow_path_packets",
            "Packets the XDP program handed to the daemon (fragmented tunnelling), by result.",
            &[
                (l(&[("result", "fragmented_sent")]), p.fragmented_sent),
                (l(&[("result", "send_error")]), p.send_errors),
                (l(&[("result", "malformed")]), p.malformed),
            ],
        )?;
        f.counter(
            "hagent_rtnetlink_requests",
            "Route and neighbour requests made to the kernel.",
            &one(s.rtnetlink_requests),
        )?;
        Ok(())
    }
}

/// The exposition formats a scraper can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// Prometheus' text format 0.0.4 (`text/plain`).
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format for an `Accept` header (None: absent): OpenMetrics when it is acceptable,
    /// else text 0.0.4 when `text/plain` (or a wildcard) is, else none (406).
    pub fn negotiate(accept: Option<&str>) -> Option<Self> {
        let Some(accept) = accept else {
            return Some(Format::Text);
        };
        let mut text = false;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            if refused {
                continue;
            }
            match media.as_str() {
                "application/openmetrics-text" => return Some(Format::OpenMetrics),
                "text/plain" | "text/*" | "*/*" => text = true,
                _ => {}
            }
        }
        text.then_some(Format::Text)
    }
}

/// Encodes a snapshot in `format`.
pub fn encode(snapshot: Snapshot, format: Format) -> anyhow::Result<String> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(snapshot)));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .map_err(|_| anyhow::anyhow!("encoding the metrics failed"))?;
    Ok(match format {
        Format::OpenMetrics => out,
        Format::Text => to_text_004(&out),
    })
}

/// OpenMetrics text to Prometheus' text format 0.0.4: no `# EOF` or `# UNIT`, a counter's
/// `HELP`/`TYPE` lines name the `_total` samples (in 0.0.4 a family is named as its
/// samples), and an info family is the gauge `<name>_info` (0.0.4 has no info type).
fn to_text_004(open_metrics: &str) -> String {
    let typed = |suffix: &'static str| -> std::collections::HashSet<&str> {
        open_metrics
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.strip_suffix(suffix))
            .collect()
    };
    let (counters, infos) = (typed(" counter"), typed(" info"));
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            if counters.contains(name) {
                Some(format!("{p}{name}_total {tail}"))
            } else if infos.contains(name) {
                let tail = if *p == "# TYPE " { "gauge" } else { tail };
                Some(format!("{p}{name}_info {tail}"))
            } else {
                None
            }
        });
        match renamed {
            Some(r) => out.push_str(&r),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A parsed request head: what the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Metrics { format: Format, head_only: bool },
    Error { status: u16, reason: &'static str },
}

fn error(status: u16, reason: &'static str) -> Route {
    Route::Error { status, reason }
}

/// Routes a complete request head (up to and including the empty line).
fn route(head: &[u8]) -> Route {
    let Ok(head) = std::str::from_utf8(head) else {
        return error(400, "Bad Request");
    };
    let mut lines = head.split("\r\n").flat_map(|l| l.split('\n'));
    let request_line = lines.next().unwrap_or("");
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return error(400, "Bad Request");
    };
    if !version.starts_with("HTTP/") {
        return error(400, "Bad Request");
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return error(505, "HTTP Version Not Supported");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return error(405, "Method Not Allowed"),
    };
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return error(404, "Not Found");
    }
    let mut accept: Option<String> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return error(400, "Bad Request");
        };
        if name.trim().eq_ignore_ascii_case("accept") {
            // Several Accept headers are one list (RFC 9110 §5.3).
            let v = value.trim();
            accept = Some(match accept {
                Some(a) => format!("{a},{v}"),
                None => v.to_string(),
            });
        }
    }
    match Format::negotiate(accept.as_deref()) {
        Some(format) => Route::Metrics { format, head_only },
        None => error(406, "Not Acceptable"),
    }
}

/// Where the request head ends, if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// Reads the request head: `Err(status)` when it is too long (431) or never ends (408).
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, (u16, &'static str)> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let read = async {
        loop {
            if let Some(end) = head_end(&buf[..len]) {
                return Ok(end);
            }
            if len == MAX_HEAD {
                return Err((431, "Request Header Fields Too Large"));
            }
            match stream.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => return Err((400, "Bad Request")),
                Ok(n) => len += n,
            }
        }
    };
    match tokio::time::timeout(TIMEOUT, read).await {
        Ok(Ok(end)) => {
            buf.truncate(end);
            Ok(buf)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err((408, "Request Timeout")),
    }
}

fn response(status: u16, reason: &str, content_type: &str, body_len: usize) -> String {
    let mut h = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: \
         {body_len}\r\nConnection: close\r\nCache-Control: no-store\r\n"
    );
    if status == 405 {
        h.push_str("Allow: GET, HEAD\r\n");
    }
    h.push_str("\r\n");
    h
}

async fn serve_connection(mut stream: TcpStream, queries: mpsc::Sender<Query>) {
    let route = match read_head(&mut stream).await {
        Ok(head) => route(&head),
        Err((status, reason)) => Route::Error { status, reason },
    };
    let (head, body) = match route {
        Route::Metrics { format, head_only } => {
            let snapshot = async {
                let (tx, rx) = oneshot::channel();
                queries.send(tx).await.ok()?;
                rx.await.ok()
            };
            match tokio::time::timeout(TIMEOUT, snapshot).await {
                Ok(Some(s)) => match encode(s, format) {
                    Ok(body) => (
                        response(200, "OK", format.content_type(), body.len()),
                        if head_only { String::new() } else { body },
                    ),
                    Err(_) => plain(500, "Internal Server Error"),
                },
                _ => plain(503, "Service Unavailable"),
            }
        }
        Route::Error { status, reason } => plain(status, reason),
    };
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(TIMEOUT, write).await;
}

fn plain(status: u16, reason: &'static str) -> (String, String) {
    let body = format!("{status} {reason}\n");
    (
        response(status, reason, "text/plain; charset=utf-8", body.len()),
        body,
    )
}

/// A bound metrics listener.
pub struct Server {
    listener: TcpListener,
}

impl Server {
    /// Binds `addr` (before the daemon reports ready: a taken port fails the start).
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics.listen: cannot listen on {addr}"))?;
        Ok(Self { listener })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves scrapes until the task is dropped, asking `queries` for each snapshot.
    pub async fn serve(self, queries: mpsc::Sender<Query>) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, _) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                let (head, body) = plain(503, "Service Unavailable");
                // Never waits: what does not fit the socket buffer is not sent.
                let _ = stream.try_write(format!("{head}{body}").as_bytes());
                continue;
            };
            let queries = queries.clone();
            tokio::spawn(async move {
                serve_connection(stream, queries).await;
                drop(permit);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The family names a scrape of `snapshot` carries (as in `# TYPE` lines).
    fn family_names(snapshot: &Snapshot) -> anyhow::Result<Vec<String>> {
        let text = encode(snapshot.clone(), Format::OpenMetrics)?;
        let mut names = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                names.push(rest.split(' ').next().unwrap_or("").to_string());
            }
        }
        Ok(names)
    }

    fn home_agent_snapshot() -> Snapshot {
        Snapshot {
            role: "home_agent",
            started: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            dataplane: Counter::ALL.iter().map(|&c| (c, 2, 200)).collect(),
            bindings: 3,
            binding_capacity: 1 << 20,
            binding_series: vec![BindingSeries {
                hoa: "2001:db8:1::100".parse().unwrap(),
                to_mn_packets: 5,
                to_mn_bytes: 500,
                from_mn_packets: 7,
                from_mn_bytes: 700,
            }],
            binding_series_omitted: 2,
            signalling: SignallingStats {
                bu_received: 9,
                ..Default::default()
            },
            acks_by_status: vec![(0, 8), (129, 1)],
            registrations: Some(RegistrationStats::default()),
            ipsec: Some((IpsecStats::default(), 4, 2)),
            queues: vec![("mh_priority", 1, 32768)],
            ..Default::default()
        }
    }

    #[test]
    fn every_counter_has_an_action_label_and_its_name_as_reason() {
        let text = encode(home_agent_snapshot(), Format::OpenMetrics).unwrap();
        for &c in Counter::ALL {
            let line = format!(
                "hagent_dataplane_packets_total{{action=\"{}\",reason=\"{}\"}} 2",
                action(c),
                c.name()
            );
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains(
            "hagent_binding_packets_total{hoa=\"2001:db8:1::100\",direction=\"from_mn\"} 7"
        ));
        assert!(text.contains("hagent_binding_acks_sent_total{status=\"129\"} 1"));
        assert!(text.contains("hagent_binding_series_omitted 2"));
        assert!(text.contains("hagent_ipsec_policies 4"));
    }

    #[test]
    fn text_004_names_counter_families_as_their_samples_and_has_no_eof() {
        let text = encode(home_agent_snapshot(), Format::Text).unwrap();
        assert!(!text.contains("# EOF"));
        assert!(text.contains("# TYPE hagent_binding_updates_received_total counter\n"));
        assert!(text.contains("# HELP hagent_binding_updates_received_total "));
        assert!(text.contains("hagent_binding_updates_received_total 9\n"));
        assert!(text.contains("# TYPE hagent_bindings gauge\n"));
        assert!(text.contains("# TYPE hagent_build_info gauge\n"), "{text}");
        assert!(text.contains("hagent_build_info{version=\""), "{text}");
    }

    #[test]
    fn a_mobile_node_has_no_home_agent_families() {
        let s = Snapshot {
            role: "mobile_node",
            ..Default::default()
        };
        let names = family_names(&s).unwrap();
        assert!(names.iter().any(|n| n == "hagent_binding_updates_sent"));
        assert!(!names.iter().any(|n| n == "hagent_dad_probes"));
        assert!(!names.iter().any(|n| n == "hagent_ipsec_sas"));
    }

    /// Fixture table: description, request head, expected route.
    #[test]
    fn requests_are_routed_by_method_path_version_and_accept() {
        let om = Route::Metrics {
            format: Format::OpenMetrics,
            head_only: false,
        };
        let text = Route::Metrics {
            format: Format::Text,
            head_only: false,
        };
        let cases: &[(&str, &str, Route)] = &[
            (
                "plain GET, no Accept: text 0.0.4",
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                text,
            ),
            (
                "Prometheus' own Accept prefers OpenMetrics",
                "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\r\n",
                om,
            ),
            (
                "query string ignored",
                "GET /metrics?x=1 HTTP/1.0\r\n\r\n",
                text,
            ),
            (
                "HEAD: head only",
                "HEAD /metrics HTTP/1.1\r\n\r\n",
                Route::Metrics {
                    format: Format::Text,
                    head_only: true,
                },
            ),
            (
                "bare LF line ends",
                "GET /metrics HTTP/1.1\nAccept: text/plain\n\n",
                text,
            ),
            (
                "other path",
                "GET / HTTP/1.1\r\n\r\n",
                error(404, "Not Found"),
            ),
            (
                "POST",
                "POST /metrics HTTP/1.1\r\n\r\n",
                error(405, "Method Not Allowed"),
            ),
            (
                "HTTP/2 preface",
                "PRI * HTTP/2.0\r\n\r\n",
                error(505, "HTTP Version Not Supported"),
            ),
            (
                "not HTTP",
                "GET /metrics FOO\r\n\r\n",
                error(400, "Bad Request"),
            ),
            (
                "two spaces",
                "GET  /metrics HTTP/1.1\r\n\r\n",
                error(400, "Bad Request"),
            ),
            (
                "header without colon",
                "GET /metrics HTTP/1.1\r\nbogus\r\n\r\n",
                error(400, "Bad Request"),
            ),
            (
                "only JSON acceptable",
                "GET /metrics HTTP/1.1\r\nAccept: application/json\r\n\r\n",
                error(406, "Not Acceptable"),
            ),
            (
                "OpenMetrics refused with q=0",
                "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;q=0, text/plain\r\n\r\n",
                text,
            ),
        ];
        for (what, head, expected) in cases {
            assert_eq!(&route(head.as_bytes()), expected, "{what}");
        }
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\n\xff\r\n\r\n"),
            error(400, "Bad Request")
        );
    }

    #[test]
    fn the_head_ends_at_the_first_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
    }
}
