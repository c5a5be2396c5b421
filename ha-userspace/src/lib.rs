//! hagent: an eBPF/XDP-accelerated Mobile IPv6 home agent.
//!
//! One module per concern: [`config`] reads what the operator wrote, [`binding`] is the
//! binding cache (the source of truth), [`dataplane`] loads the eBPF programs embedded in this
//! binary and keeps their maps in sync, [`homelink`] installs the kernel's side of each
//! binding (proxy ND, routes) over rtnetlink, [`punt`] is the slow path for packets XDP
//! cannot forward, [`control`] is the Unix-socket API the CLI talks to, and [`daemon`] is the
//! event loop tying them together.

pub mod binding;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod homelink;
pub mod ipsec;
pub mod mobile_node;
pub mod mobility;
pub mod ndisc;
pub mod punt;
pub mod registrar;
pub mod sock;
pub mod system;
