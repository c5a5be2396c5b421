//! hagent: an eBPF/XDP-accelerated Mobile IPv6 home agent.
//!
//! One module per concern: [`config`] reads what the operator wrote, [`dataplane`] loads and
//! attaches the eBPF programs embedded in this binary and reads their maps, [`control`] is the
//! Unix-socket API the CLI talks to, [`daemon`] ties them together for `hagent run`.

pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod system;
