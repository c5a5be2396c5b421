//! The daemon's log: `key=value` text on stderr (or JSON lines), with a level a configuration
//! reload can change.
//!
//! Under systemd (`JOURNAL_STREAM` names our stderr) the journal adds its own timestamp, so
//! the lines carry none and no colours. UMIP's `DebugLogFile` (`log_file`) sends the log to
//! that file instead of stderr.

use std::{path::Path, sync::OnceLock};

use anyhow::Context as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, layer::SubscriberExt as _, reload};

static RELOAD: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `LEVEL target: message key=value ...`
    #[default]
    Text,
    /// One JSON object per line (fields, level, target, timestamp).
    Json,
}

/// The filter for UMIP's `DebugLevel` (None: info). The level applies to hagent's own
/// messages; libraries stay at warn.
fn filter(debug_level: Option<u8>) -> EnvFilter {
    let level = match debug_level {
        None => "info",
        Some(0..=1) => "warn",
        Some(2..=5) => "info",
        Some(6..=9) => "debug",
        Some(_) => "trace",
    };
    EnvFilter::new(format!("warn,hagent={level}"))
}

/// True when stderr is the journal's stream (systemd sets `JOURNAL_STREAM=dev:inode`).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    // fstat(2) of fd 2, through /proc/self/fd (no unsafe).
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Installs the log (`RUST_LOG`, when set, wins over `debug_level` for good). With
/// `log_file`, lines are appended there (created mode 0640) instead of going to stderr.
pub fn init(
    debug_level: Option<u8>,
    format: Format,
    log_file: Option<&Path>,
) -> anyhow::Result<()> {
    let from_env = EnvFilter::try_from_default_env().ok();
    let reloadable = from_env.is_none();
    let (layer, handle) = reload::Layer::new(from_env.unwrap_or_else(|| filter(debug_level)));
    let file = match log_file {
        Some(p) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o640)
                    .open(p)
                    .with_context(|| format!("log_file: cannot open {}", p.display()))?,
            )
        }
        None => None,
    };
    let journal = file.is_none() && stderr_is_journal();
    let ansi = file.is_none() && !journal && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer =
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            match &file {
                Some(f) => Box::new(f.try_clone().map_or_else(
                    |_| Box::new(std::io::stderr()) as Box<dyn std::io::Write>,
                    |f| Box::new(f) as Box<dyn std::io::Write>,
                )),
                None => Box::new(std::io::stderr()),
            }
        });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let fmt = match (format, journal) {
        (Format::Json, _) => fmt.json().flatten_event(true).boxed(),
        (Format::Text, true) => fmt.without_time().boxed(),
        (Format::Text, false) => fmt.boxed(),
    };
    let subscriber = Registry::default().with(layer).with(fmt);
    if tracing::subscriber::set_global_default(subscriber).is_ok() && reloadable {
        let _ = RELOAD.set(handle);
    }
    Ok(())
}

/// Applies a reloaded `DebugLevel`; false when `RUST_LOG` fixed the level.
pub fn set_level(debug_level: Option<u8>) -> bool {
    RELOAD
        .get()
        .is_some_and(|h| h.reload(filter(debug_level)).is_ok())
}
