//! The daemon's log: text on stderr, with a level a configuration reload can change.

use std::sync::OnceLock;

use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt as _, reload};

static RELOAD: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

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

/// Installs the log (`RUST_LOG`, when set, wins over `debug_level` for good).
pub fn init(debug_level: Option<u8>) {
    let from_env = EnvFilter::try_from_default_env().ok();
    let reloadable = from_env.is_none();
    let (layer, handle) = reload::Layer::new(from_env.unwrap_or_else(|| filter(debug_level)));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let subscriber = Registry::default().with(layer).with(fmt);
    if tracing::subscriber::set_global_default(subscriber).is_ok() && reloadable {
        let _ = RELOAD.set(handle);
    }
}

/// Applies a reloaded `DebugLevel`; false when `RUST_LOG` fixed the level.
pub fn set_level(debug_level: Option<u8>) -> bool {
    RELOAD
        .get()
        .is_some_and(|h| h.reload(filter(debug_level)).is_ok())
}
