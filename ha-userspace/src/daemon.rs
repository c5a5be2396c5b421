//! `hagent run`: start-up, and the event loop that hands each event to its owner — the role
//! (`home_agent` or `mobile_node`), the binding layer, the control API. One loop owns the
//! state (no locks); nothing it waits on is unbounded; SIGINT/SIGTERM end it first thing,
//! whatever else is queued, and the binding layer removes what it installed.

use std::{
    net::Ipv6Addr,
    path::Path,
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
    config::{Config, Role, parse_prefix},
    control::{Command, ControlSocket, MAX_PAGE, Request},
    dataplane::{self, Dataplane, DataplaneOptions},
    home_agent::HomeAgent,
    interfaces::{self, Served},
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

/// Runs the daemon until a termination signal arrives.
pub async fn run(config: Config, socket: &Path) -> anyhow::Result<()> {
    system::require_root()?;
    system::require_btf()?;
    // Every interface is checked before the kernel is touched: a typo must not leave a
    // half-configured node behind.
    let served = interfaces::discover(&config.dataplane.interfaces)?;
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
        tracing::info!(addresses = ?ha_addresses, home_prefixes = %prefixes.join(" "), "home agent");
        if prefixes.is_empty() {
            tracing::warn!(
                "no home prefix: no served interface holds a home agent address, and \
                 home_agent.home_prefixes is empty — every Binding Update gets status 132"
            );
        }
    }
    let dataplane = load_dataplane(&config, &served, &ha_addresses)?;
    let home_routes = match config.role {
        Role::HomeAgent => interfaces::home_routes(&scope, &served),
        Role::MobileNode => vec![],
    };
    let links = served.iter().map(Served::link).collect();
    let mut bindings = Bindings::start(dataplane, &config, links, home_routes).await?;
    let result = serve(&config, socket, served, scope, &mut bindings).await;
    bindings.shutdown().await;
    // Dropping the data plane detaches every program and unloads the maps.
    drop(bindings);
    tracing::info!("data plane detached; bye");
    result
}

/// Loads and attaches the data plane. Nothing is left behind if this fails: it detaches when
/// dropped.
fn load_dataplane(
    config: &Config,
    served: &[Served],
    ha_addresses: &[Ipv6Addr],
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
    })?;
    for s in served {
        dataplane.attach(&s.name, d.xdp_mode)?;
    }
    if config.role == Role::HomeAgent {
        for a in ha_addresses {
            dataplane.add_local_address(*a)?;
            if !served.iter().any(|s| s.has(a)) {
                tracing::warn!(address = %a, "home agent address is not configured on any served interface");
            }
        }
        for s in served {
            if system::sysctl(&["net", "ipv6", "conf", &s.name, "forwarding"])? != "1" {
                tracing::warn!(
                    interface = %s.name,
                    "IPv6 forwarding is off on this interface: the kernel will not forward for \
                     the data plane (set net.ipv6.conf.{}.forwarding=1)",
                    s.name
                );
            }
        }
    }
    Ok(dataplane)
}

/// The event loop, from the bound control socket to the first termination signal.
async fn serve(
    config: &Config,
    socket: &Path,
    mut served: Vec<Served>,
    scope: Scope,
    bindings: &mut Bindings,
) -> anyhow::Result<()> {
    let control = ControlSocket::bind(socket)?;
    let (commands_tx, mut commands) = mpsc::channel::<Command>(64);

    // Slow path: fragmentation of tunnel packets the XDP program hands over.
    let punt_stats: Arc<Mutex<PuntStats>> = Arc::default();
    let ring = bindings.take_punt_ring()?;
    let sender = TunnelSender::new(config.dataplane.outer_hop_limit)?;
    let punt_task = tokio::spawn(punt::serve(ring, sender, punt_stats.clone()));

    // Mobility Headers, read on a task of their own into bounded queues.
    let priority = match config.role {
        Role::HomeAgent => Some(Priority {
            bound: aya::maps::HashMap::try_from(aya::maps::Map::HashMap(
                bindings.dataplane().map_handle(ha_common::maps::BINDINGS)?,
            ))?,
            allowed: config.home_agent.allowed_hoas().collect(),
        }),
        Role::MobileNode => None,
    };
    let (mut inbox, mh_task) = mobility::spawn_reader(MhSocket::new()?, priority);

    let now = Instant::now();
    let mut role = match config.role {
        Role::HomeAgent => RoleState::HomeAgent(Box::new(HomeAgent::new(
            config,
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
    tracing::info!(socket = %socket.display(), "hagent running");

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    // The socket file is removed when the task (which owns `control`) is dropped.
    let mut control_task = tokio::spawn(async move { control.serve(commands_tx).await });
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
                break Ok(());
            }
            _ = sigint.recv() => {
                tracing::info!("SIGINT received, shutting down");
                break Ok(());
            }
            _ = sighup.recv() => {
                tracing::warn!("SIGHUP received: reloading the configuration is not supported yet; ignored");
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
                    other => handle(other, cmd.reply, &mut role, bindings, now).await,
                }
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
                        let addresses = interfaces::home_agent_addresses(config, &served)
                            .unwrap_or_default();
                        ha.set_links(served.clone(), interfaces::scope(config, &served, &addresses));
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
    punt_task.abort();
    watch_task.abort();
    mh_task.abort();
    if let RoleState::MobileNode(mn) = &mut role {
        mn.shutdown().await;
    }
    result
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
        Request::Stats => {}
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
