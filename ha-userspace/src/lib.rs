//! hagent: an eBPF/XDP-accelerated Mobile IPv6 home agent.
//!
//! One module per concern: [`config`] reads what the operator wrote into one typed model;
//! [`validate`] is the trust boundary every address passes once; [`home_agent`] and
//! [`mobile_node`] own their role's events, the pure state machines in them deciding and a
//! driver carrying out; [`bindings`] is the one writer of the binding cache (the source of
//! truth), the data plane's maps ([`dataplane`], the eBPF programs embedded in this binary)
//! and the kernel state that goes with a binding ([`homelink`], [`ipsec`]); [`punt`] is the
//! slow path for packets XDP cannot forward; [`control`] is the Unix-socket API the CLI talks
//! to; and [`daemon`] is start-up and the event loop that dispatches.

pub mod bindings;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod events;
pub mod fuzzing;
pub mod home_agent;
pub mod homelink;
pub mod instance;
pub mod interfaces;
pub mod ipsec;
pub mod logging;
pub mod metrics;
pub mod mobile_node;
pub mod mobility;
pub mod ndisc;
pub mod notify;
pub mod punt;
pub mod rng;
pub mod sock;
pub mod system;
pub mod validate;
