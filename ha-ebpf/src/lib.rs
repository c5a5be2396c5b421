//! Logic of the hagent data plane, kept apart from the program entry points so that it can be
//! unit-tested on the host: everything here is generic over [`frame::Frame`], implemented by
//! the XDP context in the kernel and by a byte slice in tests.
#![cfg_attr(not(test), no_std)]

pub mod frame;
pub mod parse;
