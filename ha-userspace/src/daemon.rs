//! `hagent run`: start-up, and the event loop that hands each event to its owner — the role
//! (`home_agent` or `mobile_node`), the binding layer, the control API. One loop owns the
//! state (no locks); nothing it waits on is unbounded; SIGINT/SIGTERM end it first thing,
//! whatever else is queued, and the binding layer removes what it installed.

use std::{
    net::Ipv6Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use serde_json::json;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{Notify, mpsc},
};

use crate::{
    bindings::Bindings,
    config::{Config, Role, XdpMode, parse_prefix},
    control::{Command, ControlSocket, MAX_PAGE, Request},
    dataplane::{self, Dataplane, DataplaneOptions},
    home_agent::HomeAgent,
    instance::{self, Instance, Owned},
    interfaces::{self, Served},
    metrics,
    mobile_node::MobileNodeRole,
    mobility::{self, MhSocket, Priority},
    punt::{self, PuntStats, TunnelSender},
    system,
    validate::Scope,
};

/// Mobility Headers handled per wake-up of the loop: a signal or a control request waits for
/// at most one batch (a few milliseconds).
const BATCH: usize = 64;

/// The role the node plays, with the state only that role has.
enum RoleState {
    HomeAgent(Box<HomeAgent>),
    MobileNode(Box<MobileNodeRole>),
}

/// How `hagent run` was asked to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The configuration file (read again on SIGHUP).
    pub config_path: PathBuf,
    /// The setkey.conf file of manually keyed SAs.
    pub setkey: Option<PathBuf>,
    pub instance: String,
    /// None: `<run_dir>/<instance>.sock`.
    pub socket: Option<PathBuf>,
    pub run_dir: PathBuf,
    pub bpffs: PathBuf,
    /// Start over: drop what an earlier daemon of this instance pinned.
    pub fresh: bool,
    /// Overrides `dataplane.xdp_mode` (for mip6d.conf, which has no such directive).
    pub xdp_mode: Option<XdpMode>,
    /// Overrides `metrics.listen` (for mip6d.conf, which has no such directive).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl RunOptions {
    /// Options for `config_path` with every default.
    pub fn new(config_path: &Path) -> Self {
        Self {
            config_path: config_path.to_path_buf(),
            setkey: None,
            instance: instance::DEFAULT_NAME.to_string(),
            socket: None,
            run_dir: instance::DEFAULT_RUN_DIR.into(),
            bpffs: instance::DEFAULT_BPFFS.into(),
            fresh: false,
            xdp_mode: None,
            metrics_listen: None,
        }
    }
}

/// Reads the configuration (TOML or mip6d.conf) and the setkey.conf file, as at start-up.
pub fn read_config(o: &RunOptions) -> anyhow::Result<Config> {
    let mut config = Config::load(&o.config_path)?;
    if let Some(path) = &o.setkey {
        // Validated now: a bad SA file must not start a half-configured daemon.
        let f = crate::config::setkey::parse_file(path).map_err(|e| anyhow!("{e}"))?;
        for w in &f.warnings {
            config.warnings.push(w.to_string());
        }
        config.ipsec.sa_file = Some(path.clone());
    }
    if let Some(m) = o.xdp_mode {
        config.dataplane.xdp_mode = m;
    }
    if let Some(a) = o.metrics_listen {
        config.metrics.listen = Some(a);
    }
    Ok(config)
}

/// How the event loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// SIGTERM/SIGINT: remove everything this instance installed.
    Stop,
    /// SIGUSR2: leave the data plane and the bindings to the next start (a restart or an
    /// upgrade with nothing lost).
    Handoff,
}

/// Runs the daemon until a termination signal arrives.
pub async fn run(config: Config, options: &RunOptions) -> anyhow::Result<()> {
    system::require_root()?;
    system::require_btf()?;
    let instance = Instance::new(&options.instance, &options.run_dir, &options.bpffs)?;
    // The instance lock first: nothing of the kernel is touched while another daemon owns it.
    let _lock = instance.lock()?;
    let socket = options
        .socket
        .clone()
        .unwrap_or_else(|| instance.default_socket());
    // Every interface is checked before the kernel is touched: a typo must not leave a
    // half-configured node behind.
    let served = interfaces::discover(&config.dataplane.interfaces)?;
    let mut _interface_locks = Vec::new();
    for s in &served {
        _interface_locks.push(instance.lock_interface(&s.name, s.ifindex)?);
    }
    if config.role == Role::HomeAgent {
        for s in &served {
            if system::sysctl(&["net", "ipv6", "conf", &s.name, "forwarding"])? != "1" {
                bail!(
                    "IPv6 forwarding is off on {}: a home agent cannot answer for home addresses \
                     or forward to them there. Set net.ipv6.conf.{}.forwarding=1 (and \
                     net.ipv6.conf.all.forwarding=1)",
                    s.name,
                    s.name
                );
            }
        }
    }
    // The socket path before the kernel: one that is not a stale socket is refused first. (It
    // is bound once the daemon is ready: a client finding it gets answers.)
    ControlSocket::claim(&socket)?;
    let persistent = config.role == Role::HomeAgent && config.dataplane.persistent;
    let previous = instance.owned()?;
    let netns = instance::netns_id()?;
    if options.fresh || !persistent {
        let n = instance.unpin()?;
        if n > 0 {
            tracing::info!(
                instance = instance.name(),
                pins = n,
                "removed the data plane an earlier daemon pinned (starting fresh)"
            );
        }
    } else {
        instance.check_bpffs()?;
        if let Some(p) = &previous
            && p.netns != netns
            && instance.pin_dir().exists()
        {
            bail!(
                "instance {:?} pinned its data plane in another network namespace; run there, \
                 or `hagent cleanup --instance {}` there first",
                instance.name(),
                instance.name()
            );
        }
    }
    let ha_addresses = match config.role {
        Role::HomeAgent => interfaces::home_agent_addresses(&config, &served)?,
        Role::MobileNode => vec![],
    };
    let scope = interfaces::scope(&config, &served, &ha_addresses);
    if config.role == Role::HomeAgent {
        let prefixes: Vec<String> = scope
            .home_prefixes
            .iter()
            .map(|p| format!("{}/{}", p.prefix, p.len))
            .collect();
        let addresses: Vec<String> = ha_addresses.iter().map(|a| a.to_string()).collect();
        tracing::info!(addresses = %addresses.join(" "), home_prefixes = %prefixes.join(" "), "home agent");
        if prefixes.is_empty() {
            tracing::warn!(
                "no home prefix: no served interface holds a home agent address, and \
                 home_agent.home_prefixes is empty — every Binding Update gets status 132"
            );
        }
    }
    let pin_dir = persistent.then(|| instance.pin_dir());
    // A start that fails leaves an adopted data plane forwarding (a failed upgrade is not an
    // outage), and removes one it pinned itself.
    let adopting = pin_dir
        .as_ref()
        .is_some_and(|d| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()));
    let unpin_unless_adopted = |e: anyhow::Error| {
        if !adopting && let Err(u) = instance.unpin() {
            tracing::warn!(error = %format!("{u:#}"), "removing the pins after a failed start");
        }
        e
    };
    let dataplane =
        load_dataplane(&config, &served, &ha_addresses, pin_dir).map_err(unpin_unless_adopted)?;
    let home_routes = match config.role {
        Role::HomeAgent => interfaces::home_routes(&scope, &served),
        Role::MobileNode => vec![],
    };
    let home_prefixes = scope
        .home_prefixes
        .iter()
        .map(|p| (p.prefix, p.len))
        .collect();
    let links = served.iter().map(Served::link).collect();
    // Interfaces an earlier daemon of this instance served and this one does not: what it
    // left there goes (its programs went in `load_dataplane`).
    let dropped: Vec<(String, u32)> = previous
        .iter()
        .filter(|p| p.netns == netns)
        .flat_map(|p| p.interfaces.clone())
        .filter(|(_, i)| !served.iter().any(|s| s.ifindex == *i))
        .collect();
    if !dropped.is_empty()
        && let Some(p) = &previous
        && let Err(e) = clean_interfaces(&dropped, &p.allmulti).await
    {
        tracing::warn!(error = %format!("{e:#}"), "cleaning interfaces no longer served");
    }
    // The ownership record before allmulti goes on: a crash in between must not leave it on
    // with nobody knowing it is ours. Allmulti already on is ours if an earlier daemon of
    // this instance turned it on.
    let ours_before: Vec<u32> = previous
        .iter()
        .flat_map(|p| p.allmulti.clone())
        .filter(|i| served.iter().any(|s| s.ifindex == *i))
        .collect();
    let owned = |allmulti: Vec<u32>| Owned {
        netns,
        interfaces: served.iter().map(|s| (s.name.clone(), s.ifindex)).collect(),
        allmulti,
    };
    let will_turn_on: Vec<u32> = served
        .iter()
        .filter(|s| config.role == Role::HomeAgent && !system::allmulti(&s.name))
        .map(|s| s.ifindex)
        .chain(ours_before.iter().copied())
        .collect();
    instance
        .record_owned(&owned(will_turn_on))
        .map_err(|e| unpin_unless_adopted(e.context("writing the ownership record")))?;
    let mut bindings = Bindings::start(dataplane, &config, links, home_routes, home_prefixes)
        .await
        .map_err(unpin_unless_adopted)?;
    for &i in &ours_before {
        bindings.adopt_allmulti(i);
    }
    if let Err(e) = instance.record_owned(&owned(bindings.allmulti().to_vec())) {
        tracing::warn!(error = %format!("{e:#}"), "rewriting the ownership record");
    }
    let result = match ControlSocket::bind(&socket) {
        Ok(control) => serve(config, options, control, served, scope, &mut bindings).await,
        Err(e) => Err(e),
    };
    let persistent = bindings.dataplane().persistent();
    match result {
        Ok(Exit::Handoff) => {
            tracing::info!(
                bindings = bindings.len(),
                pin_dir = %instance.pin_dir().display(),
                "handing off: the data plane keeps forwarding for the next start"
            );
            // Dropping closes our descriptors; the pins keep maps and links.
            drop(bindings);
            Ok(())
        }
        Err(e) if persistent => {
            // A failure, not a stop: like a crash, the data plane goes on for the next start.
            tracing::error!(
                error = %format!("{e:#}"),
                "the daemon failed; the pinned data plane keeps forwarding for the next start"
            );
            drop(bindings);
            Err(e)
        }
        other => {
            bindings.shutdown().await;
            match bindings.unpin() {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "unpinning the data plane failed")
                }
            }
            // Dropping the data plane detaches every program and unloads the maps.
            drop(bindings);
            if let Err(e) = instance.forget_owned() {
                tracing::warn!(error = %format!("{e:#}"), "removing the ownership record failed");
            }
            tracing::info!("data plane detached; bye");
            other.map(|_| ())
        }
    }
}

/// Loads and attaches the data plane. Nothing is left behind if this fails: it detaches when
/// dropped.
fn load_dataplane(
    config: &Config,
    served: &[Served],
    ha_addresses: &[Ipv6Addr],
    pin_dir: Option<PathBuf>,
) -> anyhow::Result<Dataplane> {
    let d = &config.dataplane;
    let mut dataplane = Dataplane::load(&DataplaneOptions {
        role: match config.role {
            Role::HomeAgent => dataplane::Role::HomeAgent,
            Role::MobileNode => dataplane::Role::MobileNode,
        },
        max_bindings: d.max_bindings,
        max_prefixes: d.max_prefixes,
        outer_hop_limit: d.outer_hop_limit,
        nexthop_cache: d.nexthop_cache,
        icmp_rate: d.icmp_rate,
        max_dad: crate::home_agent::dad::map_size(&config.home_agent),
        bench_restore: false,
        pin_dir,
    })?;
    if dataplane.adopted() {
        tracing::info!("adopting the data plane an earlier daemon pinned");
    }
    // Endpoints before attaching: an adopted data plane keeps decapsulating throughout.
    if config.role == Role::HomeAgent {
        for a in ha_addresses {
            dataplane.add_local_address(*a)?;
            if !served.iter().any(|s| s.has(a)) {
                tracing::warn!(address = %a, "home agent address is not configured on any served interface");
            }
        }
        for a in dataplane.local_addresses()? {
            if !ha_addresses.contains(&a) {
                dataplane.remove_local_address(a)?;
            }
        }
    }
    for s in served {
        dataplane.attach(&s.name, d.xdp_mode)?;
    }
    let ifindexes: Vec<u32> = served.iter().map(|s| s.ifindex).collect();
    dataplane.forget_interfaces_except(&ifindexes)?;
    Ok(dataplane)
}

/// The event loop, from the bound control socket to the first termination signal.
async fn serve(
    mut config: Config,
    options: &RunOptions,
    control: ControlSocket,
    mut served: Vec<Served>,
    scope: Scope,
    bindings: &mut Bindings,
) -> anyhow::Result<Exit> {
    let (commands_tx, mut commands) = mpsc::channel::<Command>(64);

    // Slow path: fragmentation of tunnel packets the XDP program hands over.
    let punt_stats: Arc<Mutex<PuntStats>> = Arc::default();
    let ring = bindings.take_punt_ring()?;
    let sender = TunnelSender::new(config.dataplane.outer_hop_limit)?;
    let (hao_tx, mut hao_rx) = mpsc::channel::<punt::HaoWithoutBinding>(punt::HAO_QUEUE);
    let punt_task = tokio::spawn(punt::serve(ring, sender, punt_stats.clone(), hao_tx));

    // Mobility Headers, read on a task of their own into bounded queues.
    let allowed = Arc::new(std::sync::RwLock::new(
        config.home_agent.allowed_hoas().collect(),
    ));
    let priority = match config.role {
        Role::HomeAgent => Some(Priority {
            bound: aya::maps::HashMap::try_from(aya::maps::Map::HashMap(
                bindings.dataplane().map_handle(ha_common::maps::BINDINGS)?,
            ))?,
            allowed: allowed.clone(),
        }),
        Role::MobileNode => None,
    };
    let (mut inbox, mh_task) = mobility::spawn_reader(MhSocket::new()?, priority);

    let now = Instant::now();
    let mut role = match config.role {
        Role::HomeAgent => RoleState::HomeAgent(Box::new(HomeAgent::new(
            &config,
            scope,
            served.clone(),
            bindings,
            now,
        )?)),
        Role::MobileNode => {
            let c = config
                .mobile_node
                .clone()
                .ok_or_else(|| anyhow!("no [mobile_node] configuration"))?;
            RoleState::MobileNode(Box::new(
                MobileNodeRole::start(c, served.clone(), bindings, now).await?,
            ))
        }
    };

    // The home agent's ICMPv6 (DHAAD, Mobile Prefix Discovery, tunnel errors) on a socket of
    // its own.
    // Without a responder the sender stays here, so the loop's branch never fires.
    let (_no_icmp, idle_rx) = mpsc::channel(1);
    let (mut icmp_rx, icmp_task) = match &mut role {
        RoleState::HomeAgent(ha) => {
            let sock = Arc::new(crate::home_agent::icmp::Icmpv6Socket::new()?);
            let dropped: Arc<std::sync::atomic::AtomicU64> = Arc::default();
            ha.serve_icmp(sock.clone(), dropped.clone());
            let (rx, task) = crate::home_agent::icmp::spawn_reader(sock, dropped);
            (rx, Some(task))
        }
        RoleState::MobileNode(_) => (idle_rx, None),
    };

    // Routing changes invalidate cached next hops (coalesced: one bump per wake-up).
    let routing_changed = Arc::new(Notify::new());
    let addresses_changed = Arc::new(Notify::new());
    let (notify, notify_addr) = (routing_changed.clone(), addresses_changed.clone());
    let watch_task = tokio::spawn(crate::homelink::watch_routing(move |kind| {
        notify.notify_one();
        if kind == crate::homelink::RoutingEvent::Address {
            notify_addr.notify_one();
        }
    }));
    tracing::info!(
        socket = %control.path().display(),
        instance = %options.instance,
        persistent = bindings.dataplane().persistent(),
        bindings = bindings.len(),
        "hagent running"
    );

    let started = (Instant::now(), std::time::SystemTime::now());
    // Metrics: bound before READY (a taken port fails the start); a scrape asks the loop for a
    // snapshot. Without an endpoint the sender stays here and the loop's branch never fires.
    let (metrics_tx, mut metrics_rx) = mpsc::channel::<metrics::Query>(metrics::QUEUE);
    let metrics_task = match config.metrics.listen {
        Some(addr) => {
            let server = metrics::Server::bind(addr).await?;
            tracing::info!(listen = %server.local_addr()?, "serving metrics on /metrics");
            let tx = metrics_tx.clone();
            Some(tokio::spawn(server.serve(tx)))
        }
        None => None,
    };
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigusr2 = signal(SignalKind::user_defined2())?;
    let ready_line = ready_status(&config, &served, control.path(), bindings);
    // The socket file is removed when the task (which owns `control`) is dropped.
    let mut control_task = tokio::spawn(async move { control.serve(commands_tx).await });
    // Bound and served from here on: a unit ordered after this one finds it answering.
    crate::notify::ready(&ready_line);
    let result = loop {
        let timers = role_timeout(&role)
            .into_iter()
            .chain(bindings.next_expiry())
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        // Timers are checked on every turn, not only when tokio's timer wheel fires: under a
        // flood the queues are never empty, and a DAD deadline must not wait for the runtime.
        if timers <= Instant::now() {
            on_timers(&mut role, bindings).await;
            continue;
        }
        // `biased`: termination first, then the operator, then Binding Updates for bindings
        // that exist (or the ACL allows), timers, routing — and last the rest, so a flood of
        // new home addresses waits behind everything else.
        tokio::select! {
            biased;
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM received, shutting down");
                crate::notify::stopping("stopping: removing the data plane and the bindings");
                break Ok(Exit::Stop);
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT received, shutting down");
                crate::notify::stopping("stopping: removing the data plane and the bindings");
                break Ok(Exit::Stop);
            }
            _ = sigusr2.recv() => {
                if bindings.dataplane().persistent() {
                    tracing::info!("SIGUSR2 received: handing off to the next start");
                    crate::notify::stopping("handing off: the data plane keeps forwarding");
                    break Ok(Exit::Handoff);
                }
                tracing::warn!("SIGUSR2 received, but the data plane is volatile (dataplane.persistent = false): nothing to hand off; ignored");
            }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP received: reloading the configuration");
                crate::notify::reloading();
                let r = reload(options, &mut config, &mut role, bindings, &allowed).await;
                crate::notify::ready(&reloaded_status(&ready_line, &r));
            }
            r = &mut control_task => {
                break Err(anyhow!("the control socket task ended: {r:?}"));
            }
            Some(cmd) = commands.recv() => {
                let now = Instant::now();
                let stats = || stats(bindings, &role, &punt_stats, &inbox);
                match cmd.request {
                    Request::Stats => {
                        let _ = cmd.reply.send(stats());
                    }
                    Request::Status => {
                        let _ = cmd.reply.send(Ok(status(options, &config, bindings, started)));
                    }
                    Request::Reload => {
                        crate::notify::reloading();
                        let r = reload(options, &mut config, &mut role, bindings, &allowed).await;
                        crate::notify::ready(&reloaded_status(&ready_line, &r));
                        let _ = cmd.reply.send(r);
                    }
                    other => handle(other, cmd.reply, &mut role, bindings, now).await,
                }
            }
            Some(h) = hao_rx.recv() => {
                if let RoleState::HomeAgent(ha) = &mut role {
                    ha.on_hao_without_binding(h, Instant::now());
                }
            }
            Some(rx) = icmp_rx.recv() => {
                if let RoleState::HomeAgent(ha) = &mut role {
                    ha.on_icmp(rx, bindings, Instant::now());
                }
            }
            Some(query) = metrics_rx.recv() => {
                let _ = query.send(snapshot(&config, bindings, &role, &punt_stats, &inbox, started.1));
            }
            Some(rx) = inbox.priority.recv() => {
                on_mh(&mut role, rx, bindings).await;
                // A batch per wake-up (the select costs more than a refresh).
                for _ in 1..BATCH {
                    let Ok(rx) = inbox.priority.try_recv() else { break };
                    on_mh(&mut role, rx, bindings).await;
                }
            }
            _ = tokio::time::sleep_until(timers.into()) => on_timers(&mut role, bindings).await,
            _ = routing_changed.notified() => {
                if let Err(e) = bindings.bump_nexthop_epoch() {
                    tracing::error!(error = %e, "invalidating cached next hops failed");
                }
                if let RoleState::MobileNode(mn) = &mut role {
                    mn.movement(bindings, Instant::now()).await;
                }
            }
            _ = addresses_changed.notified() => {
                interfaces::refresh(&mut served);
                match &mut role {
                    RoleState::HomeAgent(ha) => {
                        let addresses = interfaces::home_agent_addresses(&config, &served)
                            .unwrap_or_default();
                        ha.set_links(served.clone(), interfaces::scope(&config, &served, &addresses));
                    }
                    RoleState::MobileNode(mn) => mn.set_links(served.clone()),
                }
            }
            Some(rx) = inbox.others.recv() => {
                on_mh(&mut role, rx, bindings).await;
                for _ in 1..BATCH {
                    if !inbox.priority.is_empty() {
                        break;
                    }
                    let Ok(rx) = inbox.others.try_recv() else { break };
                    on_mh(&mut role, rx, bindings).await;
                }
            }
        }
    };
    control_task.abort();
    let _ = control_task.await;
    if let Some(t) = metrics_task {
        t.abort();
    }
    if let Some(t) = icmp_task {
        t.abort();
    }
    drop(metrics_tx);
    punt_task.abort();
    watch_task.abort();
    mh_task.abort();
    if let RoleState::MobileNode(mn) = &mut role {
        mn.shutdown().await;
    }
    result
}

/// Reads the configuration again and applies what can change while running: the binding
/// ACL, lifetimes, DAD and limits (to the next Binding Update; existing bindings and their
/// traffic are untouched — one the new ACL refuses is refused at its next BU, or removed with
/// `hagent binding del`), and the log level. What needs a restart is reported, not applied.
/// An invalid file changes nothing; its error (file:line:col) is logged and returned.
async fn reload(
    options: &RunOptions,
    config: &mut Config,
    role: &mut RoleState,
    bindings: &mut Bindings,
    allowed: &std::sync::RwLock<std::collections::HashSet<Ipv6Addr>>,
) -> anyhow::Result<serde_json::Value> {
    let new = match read_config(options) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                error = %format!("{e:#}"),
                "configuration reload failed; the running configuration stays"
            );
            return Err(e.context("reload refused; the running configuration stays"));
        }
    };
    let mut restart = Vec::new();
    if new.role != config.role {
        restart.push("role (NodeConfig)");
    }
    if new.dataplane != config.dataplane {
        restart.push("dataplane (interfaces, XDP mode, sizes)");
    }
    // The policy sets apply live; UseMnHaIPsec, the K bit and the SAs need a restart.
    let sets_changed = new.ipsec.sets != config.ipsec.sets;
    let ipsec_rest_changed = {
        let (mut a, mut b) = (new.ipsec.clone(), config.ipsec.clone());
        for c in [&mut a, &mut b] {
            c.sets.clear();
            c.policy_sets = 0;
            c.policy_sets_toml.clear();
        }
        a != b
    };
    if ipsec_rest_changed {
        restart.push("ipsec (UseMnHaIPsec, KeyMngMobCapability, SAs)");
    }
    if new.mobile_node != config.mobile_node {
        restart.push("mobile_node");
    }
    if new.home_agent.home_prefixes != config.home_agent.home_prefixes {
        restart.push("home_agent.home_prefixes");
    }
    if new.home_agent.addresses != config.home_agent.addresses {
        restart.push("home_agent.addresses");
    }
    if new.metrics.listen != config.metrics.listen {
        restart.push("metrics.listen");
    }
    for w in &new.warnings {
        tracing::warn!("{w}");
    }
    // What is not applied keeps its running value.
    let new_uses_ipsec = new.ipsec.use_mn_ha_ipsec;
    let (new_sets, new_policy_sets, new_policy_sets_toml) = (
        new.ipsec.sets.clone(),
        new.ipsec.policy_sets,
        new.ipsec.policy_sets_toml.clone(),
    );
    let mut next = new;
    next.role = config.role;
    next.dataplane = config.dataplane.clone();
    next.ipsec = config.ipsec.clone();
    let mut applied = Vec::new();
    if sets_changed {
        if !ipsec_rest_changed && config.ipsec.use_mn_ha_ipsec {
            match bindings.set_ipsec_sets(&new_sets).await {
                Ok(()) => {
                    next.ipsec.sets = new_sets;
                    next.ipsec.policy_sets = new_policy_sets;
                    next.ipsec.policy_sets_toml = new_policy_sets_toml;
                    applied.push("ipsec (policy sets)");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "applying the new IPsec policy sets failed");
                    return Err(e.context("applying the new IPsec policy sets failed (the rest of the reload was not applied)"));
                }
            }
        } else if config.ipsec.use_mn_ha_ipsec || new_uses_ipsec {
            restart.push("ipsec (policy sets, with UseMnHaIPsec changing)");
        } else {
            // Without UseMnHaIPsec the sets do nothing: taken as they are.
            next.ipsec.sets = new_sets;
            next.ipsec.policy_sets = new_policy_sets;
            next.ipsec.policy_sets_toml = new_policy_sets_toml;
        }
    }
    next.mobile_node = config.mobile_node.clone();
    next.home_agent.home_prefixes = config.home_agent.home_prefixes.clone();
    next.home_agent.addresses = config.home_agent.addresses.clone();
    next.metrics.listen = config.metrics.listen;
    if next.metrics.max_binding_series != config.metrics.max_binding_series {
        applied.push("metrics.max_binding_series");
    }
    if next.home_agent != config.home_agent
        && let RoleState::HomeAgent(ha) = role
    {
        ha.set_config(&next, bindings);
        if let Ok(mut a) = allowed.write() {
            *a = next.home_agent.allowed_hoas().collect();
        }
        applied.push("home_agent (ACL, lifetimes, DAD, limits)");
    }
    if next.debug_level != config.debug_level {
        if crate::logging::set_level(next.debug_level) {
            applied.push("DebugLevel");
        } else {
            restart.push("DebugLevel (RUST_LOG is set)");
            next.debug_level = config.debug_level;
        }
    }
    *config = next;
    if restart.is_empty() {
        tracing::info!(applied = %applied.join(", "), "configuration reloaded");
    } else {
        tracing::warn!(applied = %applied.join(", "), needs_restart = %restart.join(", "), "configuration reloaded; some changes need a restart and were not applied");
    }
    Ok(json!({ "applied": applied, "needs_restart": restart }))
}

/// The `STATUS=` line systemd shows once the daemon is ready: role, interfaces, socket.
fn ready_status(config: &Config, served: &[Served], socket: &Path, bindings: &Bindings) -> String {
    let role = match config.role {
        Role::HomeAgent => "home agent",
        Role::MobileNode => "mobile node",
    };
    let interfaces: Vec<&str> = served.iter().map(|s| s.name.as_str()).collect();
    format!(
        "{role} on {}, {} bindings at start; control socket {}",
        interfaces.join(" "),
        bindings.len(),
        socket.display()
    )
}

/// The `STATUS=` line after a reload: the start-up line and how the reload went.
fn reloaded_status(status: &str, r: &anyhow::Result<serde_json::Value>) -> String {
    match r {
        Ok(_) => format!("{status}; configuration reloaded"),
        Err(e) => format!("{status}; last reload refused: {e:#}"),
    }
}

/// Expiries and the role's timers that are due.
async fn on_timers(role: &mut RoleState, bindings: &mut Bindings) {
    let now = Instant::now();
    for hoa in bindings.expired(now) {
        match role {
            RoleState::HomeAgent(ha) => ha.on_expired(hoa, bindings, now).await,
            RoleState::MobileNode(mn) => mn.on_expired(hoa, bindings, now).await,
        }
    }
    match role {
        RoleState::HomeAgent(ha) => ha.handle_timeout(bindings, now).await,
        RoleState::MobileNode(mn) => mn.handle_timeout(bindings, now).await,
    }
}

fn role_timeout(role: &RoleState) -> Option<Instant> {
    match role {
        RoleState::HomeAgent(ha) => Some(ha.poll_timeout()),
        RoleState::MobileNode(mn) => mn.poll_timeout(),
    }
}

async fn on_mh(role: &mut RoleState, rx: crate::sock::Received, bindings: &mut Bindings) {
    let now = Instant::now();
    match role {
        RoleState::HomeAgent(ha) => ha.on_mh(rx, bindings, now).await,
        RoleState::MobileNode(mn) => mn.on_mh(rx, bindings, now).await,
    }
}

/// `hagent status`: what this daemon is and how long it has run.
fn status(
    options: &RunOptions,
    config: &Config,
    bindings: &Bindings,
    (since, started_at): (Instant, std::time::SystemTime),
) -> serde_json::Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": crate::control::PROTOCOL_VERSION,
        "pid": std::process::id(),
        "uptime_s": since.elapsed().as_secs(),
        "started_unix_s": started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "role": config.role,
        "instance": options.instance,
        "config": options.config_path.display().to_string(),
        "persistent": bindings.dataplane().persistent(),
        "interfaces": bindings.dataplane().attachments(),
        "bindings": bindings.len(),
        "max_bindings": config.dataplane.max_bindings,
        "metrics": config.metrics.listen.map(|a| format!("http://{a}/metrics")),
    })
}

/// What a metrics scrape reports, read in one turn of the loop. Per-binding counters are read
/// for the first `metrics.max_binding_series` bindings only (one map lookup each).
fn snapshot(
    config: &Config,
    bindings: &Bindings,
    role: &RoleState,
    punt: &Arc<Mutex<PuntStats>>,
    inbox: &mobility::Inbox,
    started: std::time::SystemTime,
) -> metrics::Snapshot {
    let dataplane = match bindings.dataplane().counters() {
        Ok(c) => ha_common::stats::Counter::ALL
            .iter()
            .zip(c)
            .map(|(&k, r)| (k, r.packets, r.bytes))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "reading the data-plane counters for metrics");
            Vec::new()
        }
    };
    let cap = config.metrics.max_binding_series as usize;
    let series: Vec<metrics::BindingSeries> = bindings
        .page(None, cap, Instant::now())
        .unwrap_or_default()
        .into_iter()
        .map(|v| metrics::BindingSeries {
            hoa: v.hoa,
            to_mn_packets: v.packets_tunnelled,
            to_mn_bytes: v.bytes_tunnelled,
            from_mn_packets: v.packets_reverse,
            from_mn_bytes: v.bytes_reverse,
        })
        .collect();
    let total = bindings.len() as u64;
    let mut s = metrics::Snapshot {
        role: match config.role {
            Role::HomeAgent => "home_agent",
            Role::MobileNode => "mobile_node",
        },
        started: Some(started),
        dataplane,
        bindings: total,
        binding_capacity: config.dataplane.max_bindings.into(),
        binding_series_omitted: total.saturating_sub(series.len() as u64),
        binding_series: series,
        ipsec: bindings
            .ipsec_stats()
            .map(|(x, p, sa)| (x, p as u64, sa as u64)),
        queues: vec![
            (
                "mh_priority",
                inbox.priority.len() as u64,
                inbox.priority.max_capacity() as u64,
            ),
            (
                "mh_others",
                inbox.others.len() as u64,
                inbox.others.max_capacity() as u64,
            ),
        ],
        mh_queue_full: inbox.dropped.load(std::sync::atomic::Ordering::Relaxed),
        slow_path: punt.lock().map(|p| *p).unwrap_or_default(),
        rtnetlink_requests: crate::homelink::REQUESTS.load(std::sync::atomic::Ordering::Relaxed),
        ..Default::default()
    };
    match role {
        RoleState::HomeAgent(ha) => ha.fill_metrics(&mut s),
        RoleState::MobileNode(mn) => s.signalling = mn.stats(),
    }
    s
}

fn stats(
    bindings: &Bindings,
    role: &RoleState,
    punt: &Arc<Mutex<PuntStats>>,
    inbox: &mobility::Inbox,
) -> anyhow::Result<serde_json::Value> {
    let dropped = inbox.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let (signalling, role_stats) = match role {
        RoleState::HomeAgent(ha) => {
            let v = ha.stats(dropped);
            (v["signalling"].clone(), json!({ "home_agent": v }))
        }
        RoleState::MobileNode(mn) => (
            serde_json::to_value(mn.stats())?,
            json!({ "mobile_node": mn.bul() }),
        ),
    };
    let mut v = json!({
        "counters": bindings.dataplane().counters()?,
        "attachments": bindings.dataplane().attachments(),
        "bindings": bindings.len(),
        "slow_path": *punt.lock().map_err(|_| anyhow!("stats lock poisoned"))?,
        "ipsec": bindings.ipsec_stats().map(|(x, policies, sas)| json!({
            "requests": x, "policies": policies, "sas": sas,
        })),
        "rtnetlink_requests": crate::homelink::REQUESTS.load(std::sync::atomic::Ordering::Relaxed),
        "signalling": signalling,
    });
    if let (Some(o), Some(r)) = (v.as_object_mut(), role_stats.as_object()) {
        for (k, x) in r {
            o.insert(k.clone(), x.clone());
        }
    }
    Ok(v)
}

/// A control request other than `stats`.
async fn handle(
    request: Request,
    reply: crate::home_agent::ReplyTo,
    role: &mut RoleState,
    bindings: &mut Bindings,
    now: Instant,
) {
    match request {
        Request::Stats | Request::Status | Request::Reload | Request::Monitor => {}
        Request::Bindings { after, limit } => {
            let result = (|| {
                let after = after
                    .map(|a| {
                        a.parse::<Ipv6Addr>()
                            .map_err(|_| anyhow!("invalid home address {a:?}"))
                    })
                    .transpose()?;
                let limit = limit.map_or(MAX_PAGE, |l| l.min(MAX_PAGE)) as usize;
                let page = bindings.page(after, limit, now)?;
                Ok(json!({ "total": bindings.len(), "bindings": page }))
            })();
            let _ = reply.send(result);
        }
        Request::BindingAdd {
            hoa,
            coa,
            lifetime,
            prefixes,
        } => {
            let parsed = parse_binding_add(&hoa, &coa, &prefixes);
            let (hoa, coa, prefixes) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            };
            let lifetime = lifetime.map(|s| Duration::from_secs(s.into()));
            match role {
                RoleState::HomeAgent(ha) => {
                    ha.binding_add(hoa, coa, lifetime, prefixes, reply, bindings, now)
                        .await
                }
                RoleState::MobileNode(mn) => {
                    let _ = reply.send(
                        mn.binding_add(hoa, coa, lifetime, prefixes, bindings, now)
                            .await,
                    );
                }
            }
        }
        Request::BindingDel { hoa } => {
            let hoa = match hoa.parse::<Ipv6Addr>() {
                Ok(h) => h,
                Err(_) => {
                    let _ = reply.send(Err(anyhow!("invalid home address {hoa:?}")));
                    return;
                }
            };
            match role {
                RoleState::HomeAgent(ha) => ha.binding_del(hoa, reply, bindings, now).await,
                RoleState::MobileNode(mn) => {
                    let _ = reply.send(mn.binding_del(hoa, bindings, now).await);
                }
            }
        }
    }
}

type ParsedAdd = (Ipv6Addr, Ipv6Addr, Vec<(Ipv6Addr, u8)>);

fn parse_binding_add(hoa: &str, coa: &str, prefixes: &[String]) -> anyhow::Result<ParsedAdd> {
    let h: Ipv6Addr = hoa
        .parse()
        .map_err(|_| anyhow!("invalid home address {hoa:?}"))?;
    let c: Ipv6Addr = coa
        .parse()
        .map_err(|_| anyhow!("invalid care-of address {coa:?}"))?;
    if h == c {
        bail!(
            "care-of address equals the home address: that is a deregistration; use `hagent binding del {h}`"
        );
    }
    let p = prefixes
        .iter()
        .map(|p| parse_prefix(p).context("--prefix"))
        .collect::<anyhow::Result<_>>()?;
    Ok((h, c, p))
}

/// Removes our routes and neighbour entries on `interfaces` (those that still exist with the
/// same index) and turns off the allmulti we turned on there; returns (routes, neighbours,
/// allmulti) counts.
async fn clean_interfaces(
    interfaces: &[(String, u32)],
    allmulti: &[u32],
) -> anyhow::Result<(usize, usize, usize)> {
    let kernel = crate::homelink::HomeLink::new()?;
    let present: Vec<(String, u32)> = interfaces
        .iter()
        .filter(|(n, i)| system::ifindex(n).ok() == Some(*i))
        .cloned()
        .collect();
    let ifindexes: Vec<u32> = present.iter().map(|(_, i)| *i).collect();
    let (routes, _) = kernel.reconcile_routes(&ifindexes, &[]).await?;
    let links: Vec<(u32, [u8; 6])> = present
        .iter()
        .filter_map(|(n, i)| system::mac_address(n).ok().map(|m| (*i, m)))
        .collect();
    let neighbours = kernel.sweep_neighbours(&links, |_| false).await?;
    let mut off = 0;
    for &i in allmulti {
        if ifindexes.contains(&i) {
            kernel.set_allmulti(i, false).await?;
            off += 1;
        }
    }
    Ok((routes, neighbours, off))
}

/// `hagent cleanup`: removes what a dead instance left — its pins (the data plane detaches),
/// and on the interfaces its ownership record names, the routes with our protocol number,
/// the neighbour entries pointing at our MACs and the allmulti it turned on.
pub async fn cleanup(name: &str, run_dir: &Path, bpffs: &Path) -> anyhow::Result<String> {
    system::require_root()?;
    let instance = Instance::new(name, run_dir, bpffs)?;
    let _lock = instance.lock()?;
    let pins = instance.unpin()?;
    let mut report = format!("instance {name}: {pins} pins removed");
    if let Some(owned) = instance.owned()? {
        if owned.netns != instance::netns_id()? {
            bail!(
                "{report}; the routes and neighbour entries are in another network namespace \
                 (run `hagent cleanup` there)"
            );
        }
        let (routes, neighbours, allmulti) =
            clean_interfaces(&owned.interfaces, &owned.allmulti).await?;
        instance.forget_owned()?;
        report.push_str(&format!(
            ", {routes} routes and {neighbours} neighbour entries removed, allmulti restored on {allmulti} interfaces"
        ));
    }
    Ok(report)
}
