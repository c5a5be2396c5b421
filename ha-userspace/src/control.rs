//! The control API: newline-delimited JSON over a Unix stream socket.
//!
//! One request per line, one reply per line: `{"cmd":"stats"}` →
//! `{"ok":true,"data":{...}}` or `{"ok":false,"error":"..."}`. The socket is created mode 0600
//! (root only), since it can change forwarding state.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::mpsc,
};

/// Where `hagent run` listens and the CLI connects unless `--socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/hagent/hagent.sock";

/// Version of the control protocol. Every reply carries it; a client refuses a reply of
/// another version instead of misreading it (a CLI of one release against a daemon of
/// another). Raise it with any incompatible change to a request or a reply.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line accepted; anything longer is a client bug or an attack.
const MAX_REQUEST: usize = 64 * 1024;

/// Longest page of bindings one `Bindings` request returns (the client asks for the next).
pub const MAX_PAGE: u32 = 1000;

/// A request to the daemon.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Global counters, attachments and slow-path statistics.
    Stats,
    /// What the daemon is: version, uptime, role, instance, interfaces with their XDP mode,
    /// bindings, configuration file.
    Status,
    /// Read the configuration file again (like SIGHUP): `{"applied": [...],
    /// "needs_restart": [...]}`, or the file's error with nothing changed.
    Reload,
    /// A page of the binding cache (in home address order) with per-binding counters:
    /// `{"total": N, "bindings": [...]}`. At most `limit` (and at most [`MAX_PAGE`]) bindings after
    /// `after`; the client asks for the next page — so a listing of a million bindings never
    /// holds up the daemon.
    Bindings {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Adds (or replaces) a static binding.
    BindingAdd {
        hoa: String,
        coa: String,
        /// Seconds; absent: never expires.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lifetime: Option<u32>,
        /// Mobile network prefixes (`prefix/len`) routed to the same CoA.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        prefixes: Vec<String>,
    },
    /// Removes a binding.
    BindingDel { hoa: String },
    /// Turns the connection into a stream of binding events: one reply
    /// (`{"monitoring": true}`), then one JSON object per event (see `events::Event`), and
    /// `{"event": "lost", "count": N}` when this reader fell behind by N events. Ends when the
    /// client closes the connection.
    Monitor,
}

/// A request on its way to the daemon's event loop, with where to send the answer.
pub struct Command {
    pub request: Request,
    pub reply: tokio::sync::oneshot::Sender<anyhow::Result<serde_json::Value>>,
}

/// A reply from the daemon.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Reply {
    /// [`PROTOCOL_VERSION`] of the daemon that answered (0: before versioning).
    #[serde(default)]
    pub protocol: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    fn from_result(r: anyhow::Result<serde_json::Value>) -> Self {
        match r {
            Ok(data) => Reply {
                protocol: PROTOCOL_VERSION,
                ok: true,
                data: Some(data),
                error: None,
            },
            Err(e) => Reply {
                protocol: PROTOCOL_VERSION,
                ok: false,
                data: None,
                error: Some(format!("{e:#}")),
            },
        }
    }
}

/// A bound control socket; the file is removed when this is dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path`, refusing if another daemon answers there and replacing a stale socket.
    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `path` free for [`bind`](Self::bind): creates its directory, refuses a path that
    /// is not a socket (never replaced) or that a daemon answers on, removes a stale socket.
    /// The daemon calls it before touching the kernel, and binds once it is ready, so that
    /// the socket's existence means the daemon answers.
    pub fn claim(path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt as _;
            if !meta.file_type().is_socket() {
                bail!(
                    "{} exists and is not a socket: refusing to replace it (choose another --socket)",
                    path.display()
                );
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "another hagent is already running with control socket {}; stop it or use --socket",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
        }
        Ok(())
    }

    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        Self::claim(path)?;
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot bind control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Serves connections until the task is dropped, forwarding requests to `commands`.
    pub async fn serve(&self, commands: mpsc::Sender<Command>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let commands = commands.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, commands).await {
                            tracing::debug!(error = %e, "control connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a control connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Requests one connection may have in flight: a client may send the next before the answer
/// to the last (`call_many`), and gets the answers in order.
pub const MAX_IN_FLIGHT: usize = 64;

async fn serve_connection(
    stream: UnixStream,
    commands: mpsc::Sender<Command>,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64 * 16)).lines();
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut reading = true;
    while reading || !pending.is_empty() {
        tokio::select! {
            line = lines.next_line(), if reading && pending.len() < MAX_IN_FLIGHT => {
                let Some(line) = line? else {
                    reading = false;
                    continue;
                };
                if matches!(serde_json::from_str::<Request>(&line), Ok(Request::Monitor)) {
                    // The answers owed first, in order; then the connection is a stream.
                    while let Some(reply) = pending.next().await {
                        write_reply(&mut write, &reply).await?;
                    }
                    return monitor(lines, write).await;
                }
                pending.push_back(answer(line, &commands).await);
            }
            Some(reply) = pending.next() => write_reply(&mut write, &reply).await?,
        }
    }
    Ok(())
}

async fn write_reply(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    reply: &Reply,
) -> anyhow::Result<()> {
    let mut out = serde_json::to_vec(reply)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

/// `hagent monitor`: binding events until the client goes away. A reader that falls behind
/// by more than [`crate::events::MONITOR_BACKLOG`] events is told how many it lost.
async fn monitor(
    mut lines: tokio::io::Lines<
        tokio::io::BufReader<tokio::io::Take<tokio::net::unix::OwnedReadHalf>>,
    >,
    mut write: tokio::net::unix::OwnedWriteHalf,
) -> anyhow::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = crate::events::subscribe();
    write_reply(
        &mut write,
        &Reply::from_result(Ok(serde_json::json!({ "monitoring": true }))),
    )
    .await?;
    loop {
        let line = tokio::select! {
            e = events.recv() => match e {
                Ok(e) => serde_json::to_vec(&e)?,
                Err(RecvError::Lagged(n)) => {
                    serde_json::to_vec(&serde_json::json!({ "event": "lost", "count": n }))?
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            // Anything the client sends now is ignored; end of file ends the stream.
            l = lines.next_line() => match l? {
                Some(_) => continue,
                None => return Ok(()),
            },
        };
        write.write_all(&line).await?;
        write.write_all(b"\n").await?;
    }
}

/// `hagent monitor`: calls `each` with every event the daemon at `socket` reports, until the
/// daemon goes away or `each` fails.
pub fn monitor_events(
    socket: &Path,
    mut each: impl FnMut(serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "no hagent daemon answers on {} (is `hagent run` running? use --socket for another path)",
            socket.display()
        )
    })?;
    let mut line = serde_json::to_vec(&Request::Monitor)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = BufReader::new(&stream);
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .context("reading the daemon's reply")?;
    let reply: Reply = serde_json::from_str(&first).context("the daemon's reply is not valid")?;
    check_protocol(&reply)?;
    if !reply.ok {
        bail!("{}", reply.error.unwrap_or_else(|| "unknown error".into()));
    }
    eprintln!(
        "hagent: monitoring binding events of {} (interrupt to stop)",
        socket.display()
    );
    for l in reader.lines() {
        let l = l.context("reading an event")?;
        each(serde_json::from_str(&l).context("the daemon sent an invalid event")?)?;
    }
    Ok(())
}

/// Hands a request line to the daemon; the future resolves to its reply.
async fn answer(
    line: String,
    commands: &mpsc::Sender<Command>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>> {
    if line.len() > MAX_REQUEST {
        let r = Reply::from_result(Err(anyhow::anyhow!(
            "request longer than {MAX_REQUEST} bytes"
        )));
        return Box::pin(std::future::ready(r));
    }
    let request = match serde_json::from_str::<Request>(&line) {
        Ok(r) => r,
        Err(e) => {
            let r = Reply::from_result(Err(anyhow::anyhow!("malformed request: {e}")));
            return Box::pin(std::future::ready(r));
        }
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    // Waits while the daemon's queue is full: the back pressure reaches the client.
    if commands.send(Command { request, reply }).await.is_err() {
        let r = Reply::from_result(Err(anyhow::anyhow!("the daemon is shutting down")));
        return Box::pin(std::future::ready(r));
    }
    Box::pin(async move {
        Reply::from_result(
            answer
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the daemon is shutting down"))),
        )
    })
}

use tokio::io::AsyncReadExt as _;

/// A reply of another protocol version is refused, never misread.
fn check_protocol(reply: &Reply) -> anyhow::Result<()> {
    if reply.protocol != PROTOCOL_VERSION {
        bail!(
            "the daemon speaks control protocol {} and this hagent {PROTOCOL_VERSION}: use the \
             hagent binary of the running daemon (`hagent status` of the same release)",
            reply.protocol
        );
    }
    Ok(())
}

/// Sends one request to the daemon at `socket` and returns its data, or its error.
pub fn call(socket: &Path, request: &Request) -> anyhow::Result<serde_json::Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "no hagent daemon answers on {} (is `hagent run` running? use --socket for another path)",
            socket.display()
        )
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .context("reading the daemon's reply")?;
    if reply.is_empty() {
        bail!("the daemon closed the connection without a reply");
    }
    let reply: Reply = serde_json::from_str(&reply).context("the daemon's reply is not valid")?;
    check_protocol(&reply)?;
    match (reply.ok, reply.data, reply.error) {
        (true, Some(data), _) => Ok(data),
        (true, None, _) => Ok(serde_json::Value::Null),
        (false, _, error) => bail!("{}", error.unwrap_or_else(|| "unknown error".into())),
    }
}

/// Sends `requests` over as few connections as the daemon's per-connection limit allows, up
/// to [`MAX_IN_FLIGHT`] unanswered at a time, and returns each one's data or error, in order.
pub fn call_many(
    socket: &Path,
    requests: &[Request],
) -> anyhow::Result<Vec<Result<serde_json::Value, String>>> {
    let mut results = Vec::with_capacity(requests.len());
    let mut rest = requests;
    while !rest.is_empty() {
        // One connection reads at most 16 × MAX_REQUEST bytes: a chunk stays under that.
        let mut bytes = 0usize;
        let mut lines = Vec::new();
        for r in rest {
            let mut line = serde_json::to_vec(r)?;
            line.push(b'\n');
            if bytes + line.len() > MAX_REQUEST * 15 && !lines.is_empty() {
                break;
            }
            bytes += line.len();
            lines.push(line);
        }
        rest = &rest[lines.len()..];
        let stream = std::os::unix::net::UnixStream::connect(socket)
            .with_context(|| format!("no hagent daemon answers on {}", socket.display()))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let (mut sent, mut got) = (0usize, 0usize);
        while got < lines.len() {
            while sent < lines.len() && sent - got < MAX_IN_FLIGHT {
                writer.write_all(&lines[sent])?;
                sent += 1;
            }
            let mut reply = String::new();
            reader
                .read_line(&mut reply)
                .context("reading the daemon's reply")?;
            if reply.is_empty() {
                bail!(
                    "the daemon closed the connection after {got} of {} replies",
                    lines.len()
                );
            }
            let reply: Reply =
                serde_json::from_str(&reply).context("the daemon's reply is not valid")?;
            check_protocol(&reply)?;
            results.push(match (reply.ok, reply.data, reply.error) {
                (true, data, _) => Ok(data.unwrap_or(serde_json::Value::Null)),
                (false, _, error) => Err(error.unwrap_or_else(|| "unknown error".into())),
            });
            got += 1;
        }
    }
    Ok(results)
}
