//! `hagent`: the home agent daemon and its command-line client.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use hagent::{
    config::{Config, XdpMode},
    control::{self, DEFAULT_SOCKET, Request},
};

#[derive(Parser)]
#[command(
    name = "hagent",
    version,
    about = "eBPF/XDP-accelerated Mobile IPv6 home agent"
)]
struct Cli {
    /// Control socket: where `run` listens and the other commands connect [default:
    /// /run/hagent/<instance>.sock for `run`, /run/hagent/hagent.sock otherwise].
    #[arg(long, global = true, env = "HAGENT_SOCKET")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon. A home agent adopts the data plane and the bindings an earlier daemon
    /// of the same instance left pinned (after a crash, SIGKILL, or a SIGUSR2 hand-off).
    /// SIGTERM/SIGINT stop it and remove everything it installed; SIGHUP reloads the
    /// configuration; SIGUSR2 exits leaving the data plane forwarding for the next start.
    Run {
        /// Configuration file.
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Manually keyed SAs in setkey.conf syntax (installed when UseMnHaIPsec is on).
        #[arg(long)]
        setkey: Option<PathBuf>,
        /// Instance name: its lock, pins and records are its own, so instances on other
        /// interfaces never touch each other's state.
        #[arg(short = 'i', long, default_value = hagent::instance::DEFAULT_NAME)]
        instance: String,
        /// Log lines as text (`key=value` fields; no timestamps under systemd's journal) or
        /// as JSON objects.
        #[arg(long, value_enum, default_value_t, env = "HAGENT_LOG_FORMAT")]
        log_format: hagent::logging::Format,
        /// Start over: drop the pinned data plane and bindings of an earlier daemon.
        #[arg(long)]
        fresh: bool,
        /// XDP mode for every interface (overrides dataplane.xdp_mode): auto, native, generic.
        #[arg(long, value_parser = parse_xdp_mode)]
        xdp_mode: Option<XdpMode>,
        /// Serve Prometheus/OpenMetrics on http://ADDR/metrics (overrides metrics.listen),
        /// e.g. `[::1]:9725`.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Where bpffs is mounted (the pins go to <bpffs>/hagent/<instance>/).
        #[arg(long, default_value = hagent::instance::DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// Directory of locks, sockets and ownership records.
        #[arg(long, default_value = hagent::instance::DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Remove everything a dead instance left: its pinned data plane (forwarding stops), the
    /// routes, neighbour entries and allmulti it installed on its interfaces. Refuses while
    /// the instance runs. Run it in the network namespace the instance ran in.
    Cleanup {
        #[arg(short = 'i', long, default_value = hagent::instance::DEFAULT_NAME)]
        instance: String,
        #[arg(long, default_value = hagent::instance::DEFAULT_BPFFS)]
        bpffs: PathBuf,
        #[arg(long, default_value = hagent::instance::DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
    },
    /// Show the daemon: version, uptime, role, instance, interfaces and their XDP mode,
    /// bindings, configuration file.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Follow binding events as they happen (created, moved, deregistered, removed,
    /// expired), until interrupted.
    Monitor {
        /// One JSON object per line (NDJSON) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the counters that are not zero: data plane, signalling, the slow path, and a
    /// mobile node's binding update list.
    Stats {
        /// Print JSON (every counter) instead of a table.
        #[arg(long)]
        json: bool,
        /// Show the counters that are zero too.
        #[arg(long)]
        all: bool,
    },
    /// Show the binding cache (the same as `binding list`).
    Bindings {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Check a configuration file (TOML, or UMIP's mip6d.conf) and print the effective
    /// configuration as TOML.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Add or remove static bindings (like UMIP's `bc add`).
    Binding {
        #[command(subcommand)]
        action: BindingAction,
    },
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell) on
    /// standard output, e.g. `hagent completions bash > /etc/bash_completion.d/hagent`.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (hagent.8 and one per subcommand) into DIR (for packaging).
    #[command(hide = true)]
    Manpage { dir: PathBuf },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate FILE; print the effective configuration (TOML) and any warnings.
    Check {
        /// A `.toml` file, or a mip6d.conf.
        file: PathBuf,
    },
    /// Make the running daemon read its configuration file again (like SIGHUP) and print
    /// what it applied and what needs a restart.
    Reload,
}

/// How `binding list` (and `bindings`) prints the cache.
#[derive(clap::Args)]
struct ListArgs {
    /// Print JSON (an array) instead of a table.
    #[arg(long)]
    json: bool,
    /// Show at most this many bindings.
    #[arg(long)]
    limit: Option<u64>,
    /// Print only the number of bindings.
    #[arg(long, conflicts_with_all = ["json", "limit"])]
    count: bool,
}

#[derive(Subcommand)]
enum BindingAction {
    /// Show the binding cache with per-binding counters, in home address order (fetched a
    /// page at a time, so a large cache never holds up the daemon).
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show the binding of HOA.
    Show {
        /// Home address.
        hoa: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Bind HOA to COA (replacing an existing binding's care-of address in place).
    Add {
        /// Home address.
        hoa: String,
        /// Care-of address.
        coa: String,
        /// Lifetime in seconds; without it the binding never expires.
        #[arg(long)]
        lifetime: Option<u32>,
        /// A mobile network prefix (NEMO) routed to the same care-of address; repeatable.
        #[arg(long = "prefix")]
        prefixes: Vec<String>,
    },
    /// Add many static bindings from FILE, one per line — `HOA COA [lifetime SECONDS]
    /// [prefix P/LEN]...`, `#` comments — over one connection with up to 64 in flight (the
    /// bulk path: no process and no connection per binding).
    Load {
        /// The file (`-` for standard input).
        file: PathBuf,
    },
    /// Remove the binding of HOA.
    Del {
        /// Home address.
        hoa: String,
    },
}

fn parse_xdp_mode(s: &str) -> anyhow::Result<XdpMode> {
    s.parse()
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hagent: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    if !matches!(cli.command, Command::Run { .. }) {
        // A client printing into `| head` or `| grep -q` ends quietly when the reader goes,
        // like any Unix tool, instead of panicking on EPIPE. (Not the daemon: a client that
        // hangs up on the control socket must not kill it.)
        // SAFETY: resetting a signal disposition before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Run {
            config,
            log_format,
            setkey,
            instance,
            fresh,
            xdp_mode,
            metrics_listen,
            bpffs,
            run_dir,
        } => {
            let options = hagent::daemon::RunOptions {
                config_path: config,
                setkey,
                instance,
                socket: cli.socket,
                run_dir,
                bpffs,
                fresh,
                xdp_mode,
                metrics_listen,
            };
            let config = hagent::daemon::read_config(&options)?;
            hagent::logging::init(config.debug_level, log_format, config.log_file.as_deref())?;
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(hagent::daemon::run(config, &options))
        }
        Command::Cleanup {
            instance,
            bpffs,
            run_dir,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let report = runtime.block_on(hagent::daemon::cleanup(&instance, &run_dir, &bpffs))?;
            println!("{report}");
            Ok(())
        }
        Command::Status { json } => {
            let data = control::call(&socket, &Request::Status)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                print_status(&data);
            }
            Ok(())
        }
        Command::Monitor { json } => control::monitor_events(&socket, |e| {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{e}")?;
            } else if e["event"] == "lost" {
                writeln!(
                    out,
                    "… {} events lost (this reader was too slow)",
                    e["count"]
                )?;
            } else {
                let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
                let lifetime = e["lifetime_s"]
                    .as_u64()
                    .map_or_else(|| "static".to_string(), |l| format!("{l}s"));
                let from = e["previous_coa"]
                    .as_str()
                    .map(|p| format!(" (from {p})"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:.3} {:<12} {} -> {}{from} seq {} lifetime {lifetime} {}",
                    e["time_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                    s("event"),
                    s("hoa"),
                    s("coa"),
                    e["sequence"],
                    s("origin")
                )?;
            }
            out.flush()?;
            Ok(())
        }),
        Command::Stats { json, all } => {
            let data = control::call(&socket, &Request::Stats)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                print_stats(&data, all);
            }
            Ok(())
        }
        Command::Bindings { list } => list_bindings(&socket, &list),
        Command::Config {
            action: ConfigAction::Check { file },
        } => {
            let config = Config::load(&file)?;
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", config.effective_toml()?);
            eprintln!("{}: configuration is valid", file.display());
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Reload,
        } => {
            let r = control::call(&socket, &Request::Reload)?;
            let list = |k: &str| -> String {
                r[k].as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "nothing".into())
            };
            println!("applied: {}", list("applied"));
            println!("needs a restart (not applied): {}", list("needs_restart"));
            Ok(())
        }
        Command::Binding { action } => match action {
            BindingAction::Add {
                hoa,
                coa,
                lifetime,
                prefixes,
            } => {
                let data = control::call(
                    &socket,
                    &Request::BindingAdd {
                        hoa,
                        coa,
                        lifetime,
                        prefixes,
                    },
                )?;
                print_bindings(&serde_json::Value::Array(vec![data]));
                Ok(())
            }
            BindingAction::Load { file } => load_bindings(&file, &socket),
            BindingAction::List { list } => list_bindings(&socket, &list),
            BindingAction::Show { hoa, json } => show_binding(&socket, &hoa, json),
            BindingAction::Del { hoa } => {
                control::call(&socket, &Request::BindingDel { hoa: hoa.clone() })?;
                println!("binding for {hoa} removed");
                Ok(())
            }
        },
        Command::Completions { shell } => {
            print_completions(shell);
            Ok(())
        }
        Command::Manpage { dir } => write_manpages(&dir),
    }
}

/// `hagent binding load`: every line checked first (nothing is sent if one is malformed),
/// then all sent pipelined; failures are listed by line.
fn load_bindings(file: &std::path::Path, socket: &std::path::Path) -> anyhow::Result<()> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let name = file.display();
    let mut requests = Vec::new();
    let mut line_of = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = |what: String| anyhow::anyhow!("{name}:{}: {what}", i + 1);
        let [hoa, coa, rest @ ..] = words.as_slice() else {
            return Err(at(
                "expected `HOA COA [lifetime SECONDS] [prefix P/LEN]...`".into(),
            ));
        };
        let (mut lifetime, mut prefixes) = (None, Vec::new());
        let mut it = rest.iter();
        while let Some(&k) = it.next() {
            let v = it
                .next()
                .ok_or_else(|| at(format!("{k:?} needs a value")))?;
            match k {
                "lifetime" => {
                    lifetime = Some(v.parse::<u32>().map_err(|_| {
                        at(format!("invalid lifetime {v:?}: seconds, 0..=4294967295"))
                    })?)
                }
                "prefix" => prefixes.push(v.to_string()),
                _ => {
                    return Err(at(format!(
                        "unknown word {k:?}: expected lifetime or prefix"
                    )));
                }
            }
        }
        requests.push(Request::BindingAdd {
            hoa: hoa.to_string(),
            coa: coa.to_string(),
            lifetime,
            prefixes,
        });
        line_of.push(i + 1);
    }
    let t = std::time::Instant::now();
    let results = control::call_many(socket, &requests)?;
    let secs = t.elapsed().as_secs_f64();
    let failed: Vec<(usize, &Request, &String)> = results
        .iter()
        .zip(&requests)
        .zip(&line_of)
        .filter_map(|((r, q), l)| r.as_ref().err().map(|e| (*l, q, e)))
        .collect();
    for (line, q, e) in failed.iter().take(20) {
        if let Request::BindingAdd { hoa, .. } = q {
            eprintln!("{name}:{line}: {hoa}: {e}");
        }
    }
    if failed.len() > 20 {
        eprintln!("… and {} more", failed.len() - 20);
    }
    let added = requests.len() - failed.len();
    println!(
        "{added} bindings added, {} refused, in {secs:.2} s ({:.0}/s)",
        failed.len(),
        requests.len() as f64 / secs.max(1e-9)
    );
    if !failed.is_empty() {
        anyhow::bail!("{} of {} bindings refused", failed.len(), requests.len());
    }
    Ok(())
}

/// `hagent bindings`: pages through the cache, printing as each page arrives.
fn list_bindings(socket: &std::path::Path, list: &ListArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let &ListArgs { json, limit, count } = list;
    let mut after: Option<String> = None;
    let mut shown = 0u64;
    let mut out = std::io::stdout().lock();
    if json {
        write!(out, "[")?;
    } else if !count {
        print_bindings_header();
    }
    loop {
        let page_max = u64::from(control::MAX_PAGE);
        let want = limit.map_or(page_max, |l| l.saturating_sub(shown).min(page_max));
        if want == 0 {
            break;
        }
        let data = control::call(
            socket,
            &Request::Bindings {
                after: after.clone(),
                limit: Some(want as u32),
            },
        )?;
        if count {
            println!("{}", data["total"].as_u64().unwrap_or(0));
            return Ok(());
        }
        let page = data["bindings"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            break;
        }
        for b in &page {
            if json {
                let sep = if shown == 0 { "\n  " } else { ",\n  " };
                write!(out, "{sep}{}", serde_json::to_string(b)?)?;
            } else {
                print_binding_row(&mut out, b)?;
            }
            shown += 1;
        }
        after = page
            .last()
            .and_then(|b| b["hoa"].as_str())
            .map(str::to_string);
        if (page.len() as u64) < want {
            break;
        }
    }
    if json {
        writeln!(out, "{}]", if shown == 0 { "" } else { "\n" })?;
    }
    Ok(())
}

fn print_bindings_header() {
    println!(
        "{:<28} {:<28} {:>9} {:>12} {:>14} {:>12} {:>14}",
        "home address", "care-of address", "lifetime", "tunnelled", "bytes", "reverse", "bytes"
    );
}

fn print_binding_row(out: &mut impl std::io::Write, b: &serde_json::Value) -> std::io::Result<()> {
    let lifetime = match b["lifetime_remaining_s"].as_u64() {
        Some(s) => format!("{s}s"),
        None => "static".into(),
    };
    writeln!(
        out,
        "{:<28} {:<28} {:>9} {:>12} {:>14} {:>12} {:>14}",
        b["hoa"].as_str().unwrap_or("?"),
        b["coa"].as_str().unwrap_or("?"),
        lifetime,
        b["packets_tunnelled"].as_u64().unwrap_or(0),
        b["bytes_tunnelled"].as_u64().unwrap_or(0),
        b["packets_reverse"].as_u64().unwrap_or(0),
        b["bytes_reverse"].as_u64().unwrap_or(0),
    )
}

fn print_bindings(data: &serde_json::Value) {
    print_bindings_header();
    let mut out = std::io::stdout().lock();
    for b in data.as_array().into_iter().flatten() {
        let _ = print_binding_row(&mut out, b);
    }
}

/// `hagent binding show HOA`: a page of one binding, starting right before HOA.
fn show_binding(socket: &std::path::Path, hoa: &str, json: bool) -> anyhow::Result<()> {
    let addr: std::net::Ipv6Addr = hoa
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid home address {hoa:?}"))?;
    let before = u128::from(addr)
        .checked_sub(1)
        .map(|b| std::net::Ipv6Addr::from(b).to_string());
    let data = control::call(
        socket,
        &Request::Bindings {
            after: before,
            limit: Some(1),
        },
    )?;
    let b = data["bindings"]
        .as_array()
        .and_then(|p| p.first())
        .filter(|b| b["hoa"].as_str().and_then(|h| h.parse().ok()) == Some(addr))
        .ok_or_else(|| anyhow::anyhow!("no binding for {addr}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(b)?);
    } else {
        print_bindings(&serde_json::Value::Array(vec![b.clone()]));
    }
    Ok(())
}

fn print_status(d: &serde_json::Value) {
    let s = |k: &str| d[k].as_str().unwrap_or("?").to_string();
    let up = d["uptime_s"].as_u64().unwrap_or(0);
    println!(
        "hagent {} (control protocol {}), pid {}",
        s("version"),
        d["protocol"],
        d["pid"]
    );
    println!(
        "uptime:     {}d {:02}h {:02}m {:02}s",
        up / 86400,
        up / 3600 % 24,
        up / 60 % 60,
        up % 60
    );
    println!("role:       {}", s("role"));
    println!("instance:   {}", s("instance"));
    println!("config:     {}", s("config"));
    println!(
        "data plane: {}",
        if d["persistent"].as_bool() == Some(true) {
            "persistent (keeps forwarding across restarts)"
        } else {
            "volatile"
        }
    );
    for a in d["interfaces"].as_array().into_iter().flatten() {
        println!(
            "interface:  {} (ifindex {}, {} XDP)",
            a["interface"].as_str().unwrap_or("?"),
            a["ifindex"],
            a["mode"].as_str().unwrap_or("?")
        );
    }
    println!(
        "bindings:   {} of {}",
        d["bindings"].as_u64().unwrap_or(0),
        d["max_bindings"].as_u64().unwrap_or(0)
    );
    println!(
        "metrics:    {}",
        d["metrics"].as_str().unwrap_or("off (metrics.listen)")
    );
}

/// Flattens nested objects of numbers into `prefix.key` rows.
fn number_rows(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, u64)>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                number_rows(&name, x, out);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(n) = n.as_u64() {
                out.push((prefix.to_string(), n));
            }
        }
        _ => {}
    }
}

fn print_stats(data: &serde_json::Value, all: bool) {
    for a in data["attachments"].as_array().into_iter().flatten() {
        println!(
            "attached: {} (ifindex {}, {} XDP)",
            a["interface"].as_str().unwrap_or("?"),
            a["ifindex"],
            a["mode"].as_str().unwrap_or("?")
        );
    }
    println!("bindings: {}", data["bindings"].as_u64().unwrap_or(0));
    let mut hidden = 0usize;
    println!("{:<32} {:>14} {:>16}", "data plane", "packets", "bytes");
    for c in data["counters"].as_array().into_iter().flatten() {
        let (p, b) = (
            c["packets"].as_u64().unwrap_or(0),
            c["bytes"].as_u64().unwrap_or(0),
        );
        if p == 0 && b == 0 && !all {
            hidden += 1;
            continue;
        }
        println!("{:<32} {p:>14} {b:>16}", c["name"].as_str().unwrap_or("?"));
    }
    for (section, title) in [
        ("signalling", "signalling"),
        ("slow_path", "slow path"),
        ("ipsec", "ipsec"),
        ("rtnetlink_requests", "rtnetlink"),
    ] {
        let mut rows = Vec::new();
        number_rows("", &data[section], &mut rows);
        if rows.len() == 1 && rows[0].0.is_empty() {
            rows[0].0 = "requests".into();
        }
        let shown: Vec<_> = rows.iter().filter(|(_, n)| all || *n != 0).collect();
        hidden += rows.len() - shown.len();
        if shown.is_empty() {
            continue;
        }
        println!("{title:<32} {:>14}", "count");
        for (name, n) in shown {
            println!("{name:<32} {n:>14}");
        }
    }
    if let Some(bul) = data["mobile_node"].as_array().filter(|b| !b.is_empty()) {
        println!("binding update list");
        for e in bul {
            let fields: Vec<String> = e
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    v => format!("{k}={v}"),
                })
                .collect();
            println!("  {}", fields.join(" "));
        }
    }
    if hidden > 0 {
        println!("({hidden} counters at zero not shown; --all shows them)");
    }
}

/// `hagent completions SHELL`: the script clap_complete derives from the CLI definition.
fn print_completions(shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut Cli::command(), "hagent", &mut std::io::stdout());
}

/// `hagent manpage DIR`: `hagent.8`, and `hagent-<subcommand>.8` for every visible
/// subcommand at every depth (`hagent-config-check.8`), section 8 (a daemon run by root).
fn write_manpages(dir: &std::path::Path) -> anyhow::Result<()> {
    fn walk(
        cmd: clap::Command,
        dir: &std::path::Path,
        written: &mut Vec<PathBuf>,
    ) -> anyhow::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), dir, written)?;
        }
        let man = clap_mangen::Man::new(cmd)
            .section("8")
            .manual("System Manager's Manual")
            .source(format!("hagent {}", env!("CARGO_PKG_VERSION")));
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page)?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Built, so subcommands carry their full names (`hagent-config-check`); no `help`
    // pseudo-subcommand.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    walk(cmd, dir, &mut written)?;
    for p in &written {
        println!("{}", p.display());
    }
    Ok(())
}
