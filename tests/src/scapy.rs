//! The scapy peer (`tests/scapy/mn.py`): an implementation nobody here wrote, run inside a
//! namespace; each command prints one JSON line.

use serde_json::Value;

use crate::Netns;

/// The scapy mobile node / home-link helper.
pub const MN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scapy/mn.py");

/// Runs `mn.py args` in `ns` and parses the JSON line it prints.
pub fn run(ns: &Netns, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec![MN];
    all.extend_from_slice(args);
    let out = ns.exec(crate::roaming::PYTHON, &all)?;
    let text = String::from_utf8(out.stdout)?;
    serde_json::from_str(text.trim()).map_err(|e| anyhow::anyhow!("scapy said {text:?}: {e}"))
}

/// The MAC address of `iface` in `ns` (a BU's frame goes to the router's).
pub fn mac(ns: &Netns, iface: &str) -> anyhow::Result<String> {
    let path = format!("/sys/class/net/{iface}/address");
    Ok(String::from_utf8(ns.exec("cat", &[&path])?.stdout)?
        .trim()
        .to_string())
}

/// Starts `mn.py args` in `ns` in the background (a listener: `tunnel`, `sniff-mh`, `ha`),
/// its output in `log`.
pub fn spawn(
    ns: &Netns,
    args: &[&str],
    log: &std::path::Path,
) -> anyhow::Result<crate::Background> {
    let mut all = vec![MN];
    all.extend_from_slice(args);
    ns.spawn(crate::roaming::PYTHON, &all, log)
}

/// The JSON line a background `mn.py` prints, once it has (within `timeout`).
pub fn first_json(
    listener: &mut crate::Background,
    what: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<Value> {
    crate::wait_for(what, timeout, || {
        let _ = listener.check_running();
        Ok(listener
            .log()
            .lines()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok()))
    })
}
