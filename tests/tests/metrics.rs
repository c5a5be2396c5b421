//! The metrics endpoint, scraped by real clients: curl fetches `/metrics` from a running home
//! agent in the seed lab, and the Prometheus project's own Python parsers read it — the
//! OpenMetrics parser for what Prometheus asks for, the text 0.0.4 parser for a plain GET. The
//! values must be the daemon's (bindings, per-binding tunnel counters under the cardinality
//! cap, data-plane counters by action and reason), and hostile requests get their 4xx/5xx
//! without taking the endpoint down.

use std::collections::BTreeMap;

use tests::{
    require_root,
    topology::{Hagent, SeedLab, ha_config, seed},
};

const PYTHON: &str = "/usr/bin/python3";
const LISTEN: &str = "[::1]:9725";
const URL: &str = "http://[::1]:9725/metrics";
/// What Prometheus 2.x/3.x sends.
const PROMETHEUS_ACCEPT: &str = "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Parses stdin with prometheus_client's parser (argv[1]: openmetrics or text) and prints
/// one JSON object: family name → {type, samples: [[sample name, labels, value]]}.
const PARSE: &str = r#"
import json, sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;

/// Holds MAX_CONNECTIONS idle connections, then checks the next one is refused with 503,
/// that the server closes an idle one itself (408), and that a scrape works again after.
const SLOW_CLIENTS: &str = r#"
import socket, sys
def conn():
    s = socket.create_connection(("::1", 9725), timeout=20)
    return s
idle = [conn() for _ in range(int(sys.argv[1]))]
extra = conn()
extra.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
print("extra:", extra.recv(200).split(b"\r\n")[0].decode())
print("idle:", idle[0].recv(200).split(b"\r\n")[0].decode())
for s in idle: s.close()
"#;

type Families = BTreeMap<String, serde_json::Value>;

fn curl(lab: &SeedLab, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(lab
        .ha
        .command("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()?)
}

fn parse(lab: &SeedLab, format: &str, text: &[u8]) -> anyhow::Result<Families> {
    use std::io::Write as _;
    let mut child = lab
        .ha
        .command(PYTHON)
        .args(["-c", PARSE, format])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(text)?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "the {format} parser refused the scrape: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(text)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The value of `family`'s sample whose labels include `labels`.
fn value(f: &Families, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    f.get(family)?["samples"]
        .as_array()?
        .iter()
        .find(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
        .and_then(|s| s[2].as_f64())
}

fn status_line(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_scrape_parses_with_prometheus_own_parsers_and_carries_the_daemons_numbers()
-> anyhow::Result<()> {
    if !require_root("a_scrape_parses_with_prometheus_own_parsers_and_carries_the_daemons_numbers")
    {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let conf = format!(
        "{}\n[metrics]\nlisten = \"{LISTEN}\"\nmax_binding_series = 2\n",
        ha_config("native")
    );
    let ha = Hagent::start(&lab.ha, &conf)?;
    let status = ha.cli(&["status"])?;
    assert!(status.contains(&format!("metrics:    {URL}")), "{status}");

    // Three bindings; the cap leaves the last one (in home address order) without series.
    let others = ["2001:db8:bee5::e000:1", "2001:db8:bee5::e000:2"];
    ha.cli(&["binding", "add", seed::HOA, seed::COA, "--lifetime", "600"])?;
    for o in others {
        ha.cli(&["binding", "add", o, seed::COA, "--lifetime", "600"])?;
    }
    // Traffic for the HoA: the HA's XDP program tunnels it towards the CoA (whether or not
    // anything answers there).
    let _ = lab
        .cn
        .command("ping")
        .args(["-6", "-c", "5", "-i", "0.2", "-W", "1", seed::HOA])
        .output()?;

    // What Prometheus asks for: OpenMetrics, read by the strict OpenMetrics parser.
    let out = curl(&lab, &["-i", "-H", PROMETHEUS_ACCEPT, URL])?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let f = parse(&lab, "openmetrics", body.as_bytes())?;
    let stats: serde_json::Value = serde_json::from_str(&ha.cli(&["stats", "--json"])?)?;
    assert_eq!(value(&f, "hagent_bindings", &[]), Some(3.0), "{f:?}");
    assert_eq!(
        value(&f, "hagent_binding_cache_capacity", &[]),
        Some(1024.0)
    );
    assert_eq!(value(&f, "hagent_binding_series_omitted", &[]), Some(1.0));
    assert_eq!(
        value(
            &f,
            "hagent_build",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "{:?}",
        f.keys()
    );
    assert_eq!(f["hagent_dataplane_packets"]["type"], "counter");
    // Series for the first two bindings by address, none for the third.
    let hoas: std::collections::BTreeSet<String> = f["hagent_binding_packets"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1]["hoa"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        hoas.iter().map(String::as_str).collect::<Vec<_>>(),
        vec![seed::HOA, others[0]],
        "{f:?}"
    );
    let tunnelled = value(
        &f,
        "hagent_binding_packets",
        &[("hoa", seed::HOA), ("direction", "to_mn")],
    )
    .unwrap_or(0.0);
    assert!(
        tunnelled >= 3.0,
        "the pings were tunnelled: {tunnelled}\n{body}"
    );
    // The data plane's counters, by action and reason: each at least what hagent stats said
    // before the scrape (counters only grow).
    for c in stats["counters"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let scraped = value(&f, "hagent_dataplane_packets", &[("reason", name)])
            .unwrap_or_else(|| panic!("no series for {name}"));
        assert!(
            scraped >= c["packets"].as_f64().unwrap(),
            "{name}: {scraped} < {c}"
        );
    }
    // Every ping was tunnelled, by XDP or (the first, before the neighbour was resolved) by
    // TC egress.
    let tunnel: f64 = ["encap_tx", "encap_redirect", "tc_encap", "tc_encap_neigh"]
        .iter()
        .filter_map(|r| {
            value(
                &f,
                "hagent_dataplane_packets",
                &[("action", "tunnel"), ("reason", r)],
            )
        })
        .sum();
    assert!(tunnel >= 5.0, "{body}");
    for family in [
        "hagent_process_start_time_seconds",
        "hagent_binding_updates_received",
        "hagent_binding_acks_sent",
        "hagent_dad_probes",
        "hagent_admission_dropped",
        "hagent_queue_depth",
        "hagent_queue_capacity",
        "hagent_slow_path_packets",
        "hagent_rtnetlink_requests",
        "hagent_dhaad_messages",
        "hagent_neighbor_advertisement_repeats_pending",
    ] {
        assert!(f.contains_key(family), "{family} missing: {:?}", f.keys());
    }
    assert_eq!(
        value(&f, "hagent_queue_capacity", &[("queue", "mh_priority")]),
        Some(32768.0)
    );

    // A plain GET gets text 0.0.4, which Prometheus' classic parser reads.
    let out = curl(&lab, &["-i", URL])?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!body.contains("# EOF"));
    let t = parse(&lab, "text", body.as_bytes())?;
    assert_eq!(value(&t, "hagent_bindings", &[]), Some(3.0), "{t:?}");
    assert_eq!(t["hagent_dataplane_packets"]["type"], "counter", "{t:?}");

    // Hostile and wrong requests: their status, and the endpoint still answers after.
    let long = format!("X-Filler: {}", "a".repeat(9000));
    for (what, args, expected) in [
        ("POST", vec!["-i", "-X", "POST", URL], "HTTP/1.1 405"),
        (
            "other path",
            vec!["-i", "http://[::1]:9725/"],
            "HTTP/1.1 404",
        ),
        (
            "JSON only",
            vec!["-i", "-H", "Accept: application/json", URL],
            "HTTP/1.1 406",
        ),
        (
            "9 KB header",
            vec!["-i", "-H", long.as_str(), URL],
            "HTTP/1.1 431",
        ),
        ("HTTP/1.0", vec!["-i", "--http1.0", URL], "HTTP/1.1 200"),
    ] {
        let out = curl(&lab, &args)?;
        assert!(status_line(&out).starts_with(expected), "{what}: {out:?}");
    }
    let head = curl(&lab, &["-I", URL])?;
    assert!(status_line(&head).starts_with("HTTP/1.1 200"), "{head:?}");

    // Slow clients: eight idle connections fill the server; the ninth gets 503, the idle ones
    // are closed with 408, and the next scrape is served.
    let out = lab
        .ha
        .command(PYTHON)
        .args(["-c", SLOW_CLIENTS, "8"])
        .output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("extra: HTTP/1.1 503"), "{said}");
    assert!(said.contains("idle: HTTP/1.1 408"), "{said}");
    let out = curl(&lab, &["-i", URL])?;
    assert!(status_line(&out).starts_with("HTTP/1.1 200"), "{out:?}");
    Ok(())
}

/// Off by default: nothing listens unless `metrics.listen` (or `--metrics-listen`) says so.
#[test]
fn no_endpoint_without_metrics_listen() -> anyhow::Result<()> {
    if !require_root("no_endpoint_without_metrics_listen") {
        return Ok(());
    }
    let lab = SeedLab::new()?;
    let ha = Hagent::start(&lab.ha, &ha_config("native"))?;
    let status = ha.cli(&["status"])?;
    assert!(status.contains("metrics:    off"), "{status}");
    let out = curl(&lab, &[URL])?;
    assert!(!out.status.success(), "something answered: {out:?}");
    // Connection refused is curl's exit code 7.
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    Ok(())
}
