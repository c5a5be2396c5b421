//! Logic of the hagent data plane, kept apart from the program entry points so that it can be
//! unit-tested on the host: everything here is either pure (header building, checksums,
//! classification, rate limiting) or generic over [`frame::Frame`], implemented by the XDP
//! context in the kernel and by a byte slice in tests.
#![cfg_attr(not(test), no_std)]

pub mod classify;
pub mod csum;
pub mod frame;
pub mod hao;
pub mod headers;
pub mod parse;
pub mod ratelimit;
