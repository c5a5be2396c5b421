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
